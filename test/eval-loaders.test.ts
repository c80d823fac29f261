// Dataset loaders on real benchmark samples (test/data/benchmarks), generated files for the shapes with no sample, and malformed rows.
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, join, resolve } from "node:path";
import sharp from "sharp";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadDataset } from "../src/eval/loaders.js";
import { DatasetError, type ImageInput } from "../src/eval/items.js";
import { resolveConfig } from "../src/core/config.js";
import { runEval } from "../src/eval/run.js";
import { startScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { writeParquet, type Field } from "./fixtures/parquet-writer.js";
import { tempDir } from "./helpers.js";
import { testPicture } from "./scenarios/eval.js";

const DATA = resolve(import.meta.dirname, "data", "benchmarks");

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  tmp = await tempDir("loupe-loaders-");
});
afterEach(async () => {
  await tmp.cleanup();
});

async function readable(image: ImageInput): Promise<{ format: string; width: number }> {
  const bytes = image.kind === "bytes" ? Buffer.from(image.bytes) : image.kind === "path" ? await readFile(image.path) : null;
  if (!bytes) throw new Error(`not a local image: ${JSON.stringify(image)}`);
  const meta = await sharp(bytes).metadata();
  return { format: meta.format!, width: meta.width! };
}

/** Copies a sample next to generated images at the relative paths its rows name. */
async function withImages(sample: string, paths: string[]): Promise<string> {
  const target = join(tmp.dir, sample.split("/").pop()!);
  await copyFile(join(DATA, sample), target);
  const png = await testPicture(64, 48);
  for (const p of paths) {
    await mkdir(dirname(join(tmp.dir, p)), { recursive: true });
    await writeFile(join(tmp.dir, p), png);
  }
  return target;
}

async function jsonl(path: string): Promise<Array<Record<string, unknown>>> {
  return (await readFile(path, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
}

describe("each loader reads its sample", () => {
  it("FVQA / MMSearch-R1 Parquet with embedded JPEGs", async () => {
    const d = await loadDataset(join(DATA, "fvqa_infoseek_mmsearch_r1", "mini_data.pq"));
    expect(d.format).toBe("fvqa");
    expect(d.items).toHaveLength(5);
    const first = d.items[0]!;
    expect(first).toMatchObject({ question: "What is the country of origin of this food?", kind: "open" });
    expect(first.answers[0]).toBe("Spain");
    expect(first.answers).toEqual(expect.arrayContaining(["Kingdom of Spain", "ESP"]));
    for (const item of d.items) expect((await readable(item.images[0]!)).format).toBe("jpeg");
    // With an images folder the bytes go to files as they are read.
    const out = join(tmp.dir, "inputs");
    const onDisk = await loadDataset(join(DATA, "fvqa_infoseek_mmsearch_r1", "mini_data.pq"), { imagesOut: out, limit: 2 });
    expect(onDisk.items).toHaveLength(2);
    expect(onDisk.items[0]!.images[0]).toMatchObject({ kind: "path", path: expect.stringMatching(/inputs\/[0-9a-f]{64}\.jpg$/) });
    // A file cut short by a crash mid-write is not trusted by the next load: it is written again, whole.
    const saved = (onDisk.items[0]!.images[0] as { path: string }).path;
    const whole = await readFile(saved);
    await writeFile(saved, whole.subarray(0, 100));
    await loadDataset(join(DATA, "fvqa_infoseek_mmsearch_r1", "mini_data.pq"), { imagesOut: out, limit: 2 });
    expect((await readFile(saved)).equals(whole)).toBe(true);
    expect((await readdir(out)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("WebWatcher eval JSONL (MMSearch, SimpleVQA, LiveVQA copies): prompt, remote file_path, answers", async () => {
    for (const [sample, n] of [["mmsearch/mmsearch.jsonl", 5], ["simplevqa/simplevqa.jsonl", 5], ["livevqa/livevqa.jsonl", 4]] as const) {
      const d = await loadDataset(join(DATA, sample));
      expect(d.format).toBe("webwatcher");
      expect(d.items).toHaveLength(n);
      for (const item of d.items) {
        expect(item.kind).toBe("open");
        expect(item.images[0]).toMatchObject({ kind: "url", url: expect.stringMatching(/^http:\/\/mitalinlp\.oss/) });
      }
    }
    const mm = await loadDataset(join(DATA, "mmsearch/mmsearch.jsonl"), { format: "mmsearch" });
    expect(mm.items[1]).toMatchObject({ id: "2", question: "Who is the men's marathon champion of the Paris Olympics?", answers: ["Tamirat Tola"] });
    const live = await loadDataset(join(DATA, "livevqa/livevqa.jsonl"));
    expect(live.items[0]!.answers).toEqual(["Augusta National Golf Club", "Augusta National", "Augusta"]);
  });

  it("WebWatcher HLE JSONL (nested answer lists, local images)", async () => {
    const rows = await jsonl(join(DATA, "hle_vl/hle.jsonl"));
    const path = await withImages("hle_vl/hle.jsonl", rows.map((r) => r.file_path as string));
    const d = await loadDataset(path);
    expect(d.format).toBe("webwatcher");
    expect(d.items[0]!.answers).toEqual(["Qa8, then whatever black moves, Kc6# mated"]);
    expect(d.items[0]!.category).toBe("Other");
    expect((await readable(d.items[0]!.images[0]!)).format).toBe("png");
  });

  it("official LiveVQA benchmark.json: two multiple-choice items per news image", async () => {
    const d = await loadDataset(join(DATA, "livevqa/News_imgs/benchmark.json"));
    expect(d.format).toBe("livevqa");
    expect(d.items).toHaveLength(6);
    const first = d.items[0]!;
    expect(first).toMatchObject({ id: "0_00000000000000001094-level1", kind: "choice", answers: ["A"], category: "level1" });
    expect(first.choices.map((c) => c.letter)).toEqual(["A", "B", "C", "D", "E"]);
    expect(first.choices[0]!.text).toBe("Augusta National Golf Club");
    expect(first.question).toMatch(/\nA\. Augusta National Golf Club\n[\s\S]*\nAnswer with the letter of the correct option\.$/);
    expect(d.items[1]).toMatchObject({ id: "0_00000000000000001094-level2", answers: ["B"] });
    for (const item of d.items) expect((await readable(item.images[0]!)).width).toBeGreaterThan(0);
  });

  it("BrowseComp-VL JSONL, images found at their WebWatcher-relative paths", async () => {
    const rows = await jsonl(join(DATA, "browsecomp_vl/bc_vl_level1.jsonl"));
    // The paths are relative to WebWatcher's folder ("browsecomp-vl/images/level1/…"); the images sit beside the file here.
    const path = await withImages("browsecomp_vl/bc_vl_level1.jsonl", rows.map((r) => (r.image_path as string).replace(/^browsecomp-vl\//, "")));
    const d = await loadDataset(path);
    expect(d.format).toBe("browsecomp-vl");
    expect(d.items).toHaveLength(4);
    expect(d.items[0]).toMatchObject({ answers: ["United States"], category: "TV", kind: "open" });
    expect(d.items[0]!.images[0]).toMatchObject({ kind: "path", path: join(tmp.dir, "images/level1/level1_1.jpg") });
    const level2 = await loadDataset(await withImages("browsecomp_vl/bc_vl_level2.jsonl", ["images/level2/level2_1.jpg", "images/level2/level2_2.jpg"]));
    expect(level2.items[0]!.answers).toEqual(["Midnight."]);
  });

  it("V* and HR-Bench annotations: options strings and answer letters", async () => {
    const vstarRows = await jsonl(join(DATA, "vstar/vstar_bench.jsonl"));
    const vstar = await loadDataset(await withImages("vstar/vstar_bench.jsonl", vstarRows.map((r) => r.image as string)));
    expect(vstar.format).toBe("jsonl");
    expect(vstar.items[0]).toMatchObject({ id: "0", kind: "choice", answers: ["A"], category: "direct_attributes" });
    expect(vstar.items[0]!.choices).toEqual([
      { letter: "A", text: "rubber" },
      { letter: "B", text: "cotton" },
      { letter: "C", text: "kevlar" },
      { letter: "D", text: "leather" },
    ]);
    const hrRows = await jsonl(join(DATA, "hrbench/hrbench_4k.jsonl"));
    // HR-Bench's images live in an images_4k/ folder: --images points there.
    const hrPath = await withImages("hrbench/hrbench_4k.jsonl", hrRows.map((r) => `images_4k/${r.image as string}`));
    const hr = await loadDataset(hrPath, { imagesDir: join(tmp.dir, "images_4k") });
    expect(hr.items[1]).toMatchObject({ id: "1", answers: ["B"], category: "single" });
    expect(hr.items[1]!.choices.map((c) => c.text)).toEqual(["27E", "27B", "37B", "27D"]);
  });

  it("EMMA results JSON, images at images/<pid>/image_<k>.png (also in the options)", async () => {
    const raw = JSON.parse(await readFile(join(DATA, "emma/random_choice.json"), "utf8")) as Record<string, { question: string; options: string[] }>;
    const paths = Object.entries(raw).flatMap(([pid, v]) =>
      [1, 2, 3, 4, 5].filter((k) => `${v.question}${v.options.join(" ")}`.includes(`<image_${k}>`)).map((k) => `images/${pid}/image_${k}.png`),
    );
    const d = await loadDataset(await withImages("emma/random_choice.json", paths));
    expect(d.format).toBe("emma");
    expect(d.items).toHaveLength(8);
    const phy = d.items.find((i) => i.id === "phy_1")!;
    expect(phy).toMatchObject({ kind: "choice", answers: ["A"], category: "Physics" });
    expect(phy.images).toHaveLength(5);
    expect(phy.choices[0]!.text).toBe("[image img_1]");
    expect(d.items.find((i) => i.id === "Math_36")!.choices[3]!.text).toBe("$50(5-\\sqrt{5})$");
    expect(d.items.find((i) => i.id === "coding_7")!.question).not.toContain("<image_");
  });

  it("Chinese SimpleVQA through the generic JSONL loader", async () => {
    const d = await loadDataset(join(DATA, "chinese_simplevqa/chinese_simplevqa.jsonl"));
    expect(d.format).toBe("jsonl");
    expect(d.items[0]).toMatchObject({ id: "ff3dbf44b6e056729e7bbff1bc86ab7e", question: "图片中的建筑群始建于哪一年？", answers: ["1380年"], kind: "open" });
    expect(d.items[0]!.images[0]!.kind).toBe("url");
  });

  it("VLMEvalKit TSV: base64 images, an image shared by index, quoted fields", async () => {
    const b64 = (await testPicture(40, 30)).toString("base64");
    const tsv = [
      ["index", "image", "question", "A", "B", "C", "D", "answer", "category"],
      ["0", b64, "What colour is the panel?", "red", "blue", "green", "", "B", "colour"],
      ["1", "0", '"Which shape, with ""quotes""\tand a tab?"', "circle", "square", "", "", "A", "shape"],
    ]
      .map((r) => r.join("\t"))
      .join("\n");
    await writeFile(join(tmp.dir, "hr_bench_4k.tsv"), `${tsv}\n`);
    const d = await loadDataset(join(tmp.dir, "hr_bench_4k.tsv"));
    expect(d.format).toBe("vlmeval-tsv");
    expect(d.items[0]).toMatchObject({ id: "0", kind: "choice", answers: ["B"], category: "colour" });
    expect(d.items[0]!.choices).toHaveLength(3);
    expect(d.items[1]!.question).toMatch(/^Which shape, with "quotes"\tand a tab\?/);
    expect(d.items[1]!.images).toEqual(d.items[0]!.images);
    expect((await readable(d.items[1]!.images[0]!)).width).toBe(40);
  });

  it("CSVQA: the converted JSONL and the raw TSV (multi-answer letters, open questions)", async () => {
    await writeFile(join(tmp.dir, "1.jpg"), await sharp(await testPicture(40, 30)).jpeg().toBuffer());
    const rows = [
      { id: 1, conversations: [{ from: "human", value: "<image>\nWhich are metals?\nA. Fe\nB. O\nC. Cu\nD. N" }, { from: "gpt", value: "" }], image: "1.jpg", answer: "A,C", question_type: "multiple", category: "Chemistry" },
      { id: 2, conversations: [{ from: "human", value: "<image>\nHow many moles?" }, { from: "gpt", value: "" }], image: "1.jpg", answer: "2 mol", question_type: "open", category: "Chemistry" },
    ];
    await writeFile(join(tmp.dir, "csvqa_en.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n"));
    const d = await loadDataset(join(tmp.dir, "csvqa_en.jsonl"));
    expect(d.format).toBe("csvqa");
    expect(d.items[0]).toMatchObject({ kind: "choice", answers: ["A", "C"], category: "Chemistry" });
    expect(d.items[0]!.question.startsWith("Which are metals?")).toBe(true);
    expect(d.items[1]).toMatchObject({ kind: "open", answers: ["2 mol"] });

    const b64 = (await testPicture(40, 30)).toString("base64");
    const header = ["id", "zh_question", "en_question", "zh_A", "zh_B", "zh_C", "zh_D", "en_A", "en_B", "en_C", "en_D", "answer", "question_type", "category", "image", "image_type", "difficulty"];
    const row = ["7", "哪个？<image>", "Which one?<image>", "甲", "乙", "丙", "丁", "one", "two", "three", "four", "B", "single", "Physics", `['${b64}']`, "diagram", "easy"];
    await writeFile(join(tmp.dir, "csvqa_data_new.tsv"), `${header.join("\t")}\n${row.join("\t")}\n`);
    const raw = await loadDataset(join(tmp.dir, "csvqa_data_new.tsv"));
    expect(raw.format).toBe("csvqa");
    expect(raw.items[0]).toMatchObject({ id: "7", kind: "choice", answers: ["B"], category: "Physics" });
    expect(raw.items[0]!.question).toMatch(/Which one\?\nA\. one\nB\. two[\s\S]*\\boxed/);
    expect((await readable(raw.items[0]!.images[0]!)).width).toBe(40);
  });

  it("MMSearch end2end and EMMA as Parquet (HF layout: image structs, option lists)", async () => {
    const jpeg = await sharp(await testPicture(48, 32)).jpeg().toBuffer();
    const mmFields: Field[] = [
      { name: "sample_id", kind: "string" },
      { name: "query", kind: "string" },
      { name: "query_image", kind: "struct", optional: true, fields: [{ name: "bytes", kind: "binary", optional: true }, { name: "path", kind: "string", optional: true }] },
      { name: "gt_answer", kind: "string" },
      { name: "alternative_gt_answers", kind: "list", optional: true, element: { kind: "string", optional: true } },
      { name: "area", kind: "string", optional: true },
      { name: "subfield", kind: "string", optional: true },
    ];
    await writeFile(
      join(tmp.dir, "end2end.parquet"),
      writeParquet(mmFields, [
        { sample_id: "news_0", query: "Who won the race shown?", query_image: { bytes: jpeg, path: null }, gt_answer: "Tamirat Tola", alternative_gt_answers: ["Tola"], area: "news", subfield: "sports" },
        { sample_id: "news_1", query: "When was it released?", query_image: null, gt_answer: "2024", alternative_gt_answers: [], area: "knowledge", subfield: "film" },
      ]),
    );
    const mm = await loadDataset(join(tmp.dir, "end2end.parquet"));
    expect(mm.format).toBe("mmsearch");
    expect(mm.items[0]).toMatchObject({ id: "news_0", answers: ["Tamirat Tola", "Tola"], category: "news", kind: "open" });
    expect((await readable(mm.items[0]!.images[0]!)).format).toBe("jpeg");
    expect(mm.items[1]!.images).toEqual([]);

    const image = { name: "", kind: "struct" as const, optional: true, fields: [{ name: "bytes", kind: "binary" as const, optional: true }, { name: "path", kind: "string" as const, optional: true }] };
    const emmaFields: Field[] = [
      { name: "pid", kind: "string" },
      { name: "question", kind: "string" },
      { name: "options", kind: "list", optional: true, element: { kind: "string", optional: true } },
      { name: "answer", kind: "string" },
      ...[1, 2, 3, 4, 5].map((k) => ({ ...image, name: `image_${k}` })),
      { name: "subject", kind: "string" },
      { name: "type", kind: "string" },
    ];
    await writeFile(
      join(tmp.dir, "Physics.parquet"),
      writeParquet(emmaFields, [
        { pid: "phy_9", question: "Which field is shown? <image_1>", options: ["uniform", "radial", "none"], answer: "B", image_1: { bytes: jpeg, path: null }, subject: "Physics", type: "Multiple Choice" },
      ]),
    );
    const emma = await loadDataset(join(tmp.dir, "Physics.parquet"));
    expect(emma.format).toBe("emma");
    expect(emma.items[0]).toMatchObject({ id: "phy_9", kind: "choice", answers: ["B"], category: "Physics", question: expect.stringContaining("[image img_0]") });
    expect(emma.items[0]!.images).toHaveLength(1);
  });
});

async function failure(promise: Promise<unknown>): Promise<DatasetError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  return err as DatasetError;
}

describe("a malformed row fails with the file, row and field", () => {
  it("JSONL: a missing answer, broken JSON, an answer that is not an option, a missing image, a duplicate id", async () => {
    await writeFile(join(tmp.dir, "pic.png"), await testPicture(32, 24));
    const cases: Array<[string, RegExp]> = [
      ['{"question": "a?", "image": "pic.png", "answer": "x"}\n{"question": "b?", "image": "pic.png", "answer": "y"}\n{"question": "c?", "image": "pic.png"}', /bad\.jsonl: row 3, field "answers": missing \(expected the answer in "answers" or "answer"/],
      ['{"question": "a?", "answer": "x"}\n{"question": "b?", answer: "y"}', /bad\.jsonl: row 2: not valid JSON/],
      ['{"question": "a?", "image": "pic.png", "options": ["red", "blue"], "answer": "purple"}', /bad\.jsonl: row 1, field "answer": the item has options \(A, B\) but the answer "purple" is not one of their letters/],
      ['{"question": "a?", "image": "pic.png", "answer": "x"}\n{"question": "b?", "image": "gone/missing.png", "answer": "y"}', /bad\.jsonl: row 2, field "image": no image file "gone\/missing\.png" \(looked for .*gone\/missing\.png/],
      ['{"id": "q1", "question": "a?", "answer": "x"}\n{"id": "q1", "question": "b?", "answer": "y"}', /bad\.jsonl: row 2, field "id": duplicate id "q1"/],
    ];
    for (const [text, message] of cases) {
      await writeFile(join(tmp.dir, "bad.jsonl"), text);
      const err = await failure(loadDataset(join(tmp.dir, "bad.jsonl")));
      expect(err.message).toMatch(message);
    }
    await writeFile(join(tmp.dir, "bad.jsonl"), '{"question": ["a"], "answer": "x"}');
    const typed = await failure(loadDataset(join(tmp.dir, "bad.jsonl")));
    expect(typed).toMatchObject({ row: 1, field: "question" });
  });

  it("format-specific rows: WebWatcher without file_path, LiveVQA with a bad Ground_Truth, a short TSV row, a Parquet row without a question", async () => {
    await writeFile(join(tmp.dir, "ww.jsonl"), `${JSON.stringify({ prompt: "q?", file_path: "http://x/a.jpg", answers: ["a"] })}\n${JSON.stringify({ prompt: "q2?", answers: ["b"] })}\n`);
    expect((await failure(loadDataset(join(tmp.dir, "ww.jsonl"), { format: "webwatcher" }))).message).toMatch(/ww\.jsonl: row 2, field "file_path": missing/);

    const bench = JSON.parse(await readFile(join(DATA, "livevqa/News_imgs/benchmark.json"), "utf8"));
    bench[1].level2_qa.Ground_Truth = "Z";
    await mkdir(join(tmp.dir, "live"));
    await writeFile(join(tmp.dir, "live", "benchmark.json"), JSON.stringify(bench));
    const live = await failure(loadDataset(join(tmp.dir, "live", "benchmark.json"), { imagesDir: join(DATA, "livevqa/News_imgs") }));
    expect(live.message).toMatch(/benchmark\.json: row 2, field "level2_qa\.Ground_Truth": the item has options \(A, B, C, D(, E)?\) but the answer "Z"/);

    await writeFile(join(tmp.dir, "v.tsv"), "index\timage\tquestion\tA\tB\tanswer\tcategory\n0\tAAAA\tq\tx\ty\tA\tc\n");
    expect((await failure(loadDataset(join(tmp.dir, "v.tsv"), { format: "vlmeval-tsv" }))).message).toMatch(/v\.tsv: row 1, field "image": is not a base64-encoded image/);
    await writeFile(join(tmp.dir, "v.tsv"), `index\timage\tquestion\tA\tB\tanswer\tcategory\n0\t${(await testPicture(16, 16)).toString("base64")}\tq\tx\ty\tA\tc\n1\tq\tx\n`);
    expect((await failure(loadDataset(join(tmp.dir, "v.tsv")))).message).toMatch(/v\.tsv: row 2: has 3 columns but the header has 7/);

    const fields: Field[] = [
      { name: "pid", kind: "string" },
      { name: "question", kind: "string", optional: true },
      { name: "options", kind: "list", optional: true, element: { kind: "string", optional: true } },
      { name: "answer", kind: "string" },
      { name: "subject", kind: "string" },
      { name: "type", kind: "string" },
    ];
    await writeFile(
      join(tmp.dir, "Math.parquet"),
      writeParquet(fields, [
        { pid: "m1", question: "1+1?", options: ["1", "2"], answer: "B", subject: "Math", type: "Multiple Choice" },
        { pid: "m2", question: null, options: ["1", "2"], answer: "A", subject: "Math", type: "Multiple Choice" },
      ]),
    );
    expect((await failure(loadDataset(join(tmp.dir, "Math.parquet")))).message).toMatch(/Math\.parquet: row 2, field "question": missing/);
    // Not a dataset at all.
    await writeFile(join(tmp.dir, "junk.parquet"), "not parquet");
    expect((await failure(loadDataset(join(tmp.dir, "junk.parquet")))).message).toMatch(/junk\.parquet: not a readable Parquet file/);
    expect((await failure(loadDataset(join(tmp.dir, "nope.jsonl")))).message).toMatch(/nope\.jsonl: no such file/);
  });
});

describe("remote images", () => {
  it("are downloaded through the guarded fetch: a private address is refused unless allowed", async () => {
    const png = await testPicture(50, 40);
    const web = createServer((req, res) => {
      if (req.url === "/pic.png") res.writeHead(200, { "content-type": "image/png" }).end(png);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    const host = `127.0.0.1:${(web.address() as { port: number }).port}`;
    const model = await startScriptedModelServer({ script: [{ content: "<think>ok</think><answer>K-7</answer>" }], onExhausted: "repeat-last" });
    try {
      await writeFile(join(tmp.dir, "remote.jsonl"), `${JSON.stringify({ prompt: "What is the code?", file_path: `http://${host}/pic.png`, answers: ["K-7"] })}\n`);
      const base = { dataset: join(tmp.dir, "remote.jsonl"), concurrency: 1, resume: false, secrets: {}, progress: false, report: false, log: () => {} };
      const refused = await runEval({ ...base, out: join(tmp.dir, "r1"), settings: resolveConfig({ modelUrl: model.url, dataDir: join(tmp.dir, "d") }, {}) });
      expect(refused.rows[0]!.error).toMatchObject({ stage: "input", message: expect.stringMatching(/cannot download image http:\/\/127\.0\.0\.1:\d+\/pic\.png: refused .*loopback/) });
      expect(model.chatRequests()).toHaveLength(0);
      const allowed = await runEval({ ...base, out: join(tmp.dir, "r2"), settings: resolveConfig({ modelUrl: model.url, dataDir: join(tmp.dir, "d"), webAllowHosts: host }, {}) });
      expect(allowed.rows[0]).toMatchObject({ correct: true, method: "match" });
      expect(model.chatRequests()).toHaveLength(1);
    } finally {
      await model.close();
      await new Promise<void>((r) => web.close(() => r()));
    }
  });
});
