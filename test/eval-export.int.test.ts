// `loupe export`: a run with planted bad trajectories; the consistency filters remove exactly those, and the JSONL and its images load.
import { toolSpecs } from "../tools/index.js";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startScriptedModelServer, type ScriptedModelServer, type ScriptedTurn } from "../src/cli/demo/scripted-model-server.js";
import type { RecordedRequest } from "../src/cli/demo/http-recording.js";
import { requestText, tempDir } from "./helpers.js";
import { testPicture } from "./scenarios/eval.js";
import { createAgent } from "../graphs/agent.js";
import { openCheckpointer } from "../src/runtime/checkpointer.js";
import { LoupeConfigSchema, resolveConfig } from "../src/core/config.js";
import { createDeps } from "../src/runtime/deps.js";
import { OpenAICompatibleModel } from "../src/core/model.js";
import { runEval } from "../src/eval/run.js";
import { exportTrajectories, type ExportFormat, type ExportReport } from "../src/eval/export.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "loupe.mjs");

const crop = (image: string, bbox: number[], think = "Look closer at that part."): ScriptedTurn => ({
  content: `<think>${think}</think>`,
  toolCalls: [{ name: "crop", arguments: { image, bbox } }],
});
const zoom = (image: string, bbox: number[]): ScriptedTurn => ({
  content: "<think>Zoom into the corner of the crop.</think>",
  toolCalls: [{ name: "zoom", arguments: { image, bbox, factor: 2 } }],
});
const answer = (text: string, think = "The crop shows the code clearly."): ScriptedTurn => ({ content: `<think>${think}</think>\n<answer>${text}</answer>` });

/** One script per case: the good ones, and one planted defect each. */
const CASES: Record<string, ScriptedTurn[]> = {
  good1: [crop("img_0", [0, 0, 500, 500]), zoom("img_1", [0, 0, 500, 500]), answer("ANS-good1")],
  good2: [answer("ANS-good2", "The code is visible in the picture.")],
  wrong: [crop("img_0", [0, 0, 500, 500]), answer("NOPE")],
  toolerr: [crop("img_5", [0, 0, 500, 500]), answer("ANS-toolerr")],
  blank: [crop("img_0", [0, 800, 450, 1000]), answer("ANS-blank")],
  format: [{ content: "" }, answer("ANS-format")],
  recrop: [crop("img_0", [0, 0, 500, 500]), crop("img_0", [0, 0, 500, 500]), answer("ANS-recrop")],
  // Two calls in one turn: the agent runs them, but an R1V4 step is one action.
  twocalls: [
    { content: "<think>Look at both halves.</think>", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } }, { name: "crop", arguments: { image: "img_0", bbox: [500, 500, 1000, 1000] } }] },
    answer("ANS-twocalls"),
  ],
  // Consistent in form; only the optional model check rejects it (its thinking misdescribes the crop).
  mismatch: [crop("img_0", [0, 0, 500, 500]), answer("ANS-mismatch", "MISMATCH: the crop shows a cat.")],
};
const PLANTED = ["wrong", "toolerr", "blank", "format", "recrop", "twocalls"];

function caseModel() {
  return (req: RecordedRequest): ScriptedTurn => {
    const name = /Case (\w+):/.exec(requestText(req.body))?.[1] ?? "";
    const step = (req.body.messages as Array<{ role: string }>).filter((m) => m.role === "assistant").length;
    return CASES[name]?.[step] ?? answer("?");
  };
}

let tmp: Awaited<ReturnType<typeof tempDir>>;
let model: ScriptedModelServer;
let runDir: string;
let dataDir: string;

beforeAll(async () => {
  tmp = await tempDir("loupe-export-");
  await mkdir(join(tmp.dir, "ds"), { recursive: true });
  await writeFile(join(tmp.dir, "ds", "pic.png"), await testPicture());
  const lines = Object.keys(CASES).map((name) => JSON.stringify({ id: name, image: "pic.png", question: `Case ${name}: what is the code?`, answer: `ANS-${name}` }));
  await writeFile(join(tmp.dir, "ds", "cases.jsonl"), `${lines.join("\n")}\n`);
  model = await startScriptedModelServer({ script: [caseModel()], onExhausted: "repeat-last" });
  dataDir = join(tmp.dir, "data");
  runDir = join(tmp.dir, "run");
  const settings = resolveConfig({ modelUrl: model.url, dataDir, retries: 1, retryBaseMs: 10 }, {});
  const outcome = await runEval({ dataset: join(tmp.dir, "ds", "cases.jsonl"), concurrency: 3, out: runDir, resume: false, settings, secrets: {}, progress: false, report: false, log: () => {} });
  expect(outcome.summary.errors.count).toBe(0);
  expect(outcome.rows.filter((r) => r.correct).map((r) => r.id).sort()).toEqual(Object.keys(CASES).filter((c) => c !== "wrong").sort());
});

afterAll(async () => {
  await model?.close();
  await tmp?.cleanup();
});

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", fail);
    child.on("close", (code) => done({ code, stdout, stderr }));
  });
}

/** Every line parses, every referenced image exists beside the JSONL, and <image> placeholders match the image lists. */
function loadJsonl(path: string): Array<Record<string, unknown>> {
  const lines = readFileSync(path, "utf8").trim().split("\n").filter(Boolean);
  return lines.map((line) => {
    const record = JSON.parse(line) as Record<string, unknown>;
    const images = record.images as string[];
    for (const image of images) expect(existsSync(join(dirname(path), image)), image).toBe(true);
    const texts = ((record.messages ?? record.conversations) as Array<{ content?: string; value?: string }>).map((m) => m.content ?? m.value ?? "");
    const placeholders = texts.join("\n").split("<image>").length - 1;
    expect(placeholders).toBe(images.length);
    return record;
  });
}

async function exportWith(format: ExportFormat, filter: "consistent" | "none", extra: { checkUrl?: string; threads?: string[] } = {}): Promise<{ report: ExportReport; records: Array<Record<string, unknown>> }> {
  const settings = resolveConfig({ dataDir, searchCache: "live" }, {});
  const deps = createDeps(settings, {});
  const checkpointer = await openCheckpointer(settings);
  try {
    const out = join(tmp.dir, "out", `${format}-${filter}${extra.checkUrl ? "-checked" : ""}${extra.threads ? "-threads" : ""}.jsonl`);
    const checkModel = extra.checkUrl
      ? new OpenAICompatibleModel({ config: LoupeConfigSchema.parse({ ...settings, modelUrl: extra.checkUrl, stream: false }), images: deps.images, toolSpecs })
      : undefined;
    const reader = createAgent({ deps, checkpointer: checkpointer.saver });
    const source = extra.threads ? { threads: extra.threads } : { runDir };
    const report = await exportTrajectories({ ...source, format, filter, out, reader, images: deps.images, checkModel });
    return { report, records: loadJsonl(out) };
  } finally {
    await checkpointer.close();
    await deps.close();
  }
}

describe("loupe export", () => {
  it("--filter consistent removes exactly the planted trajectories, one per filter, and the JSONL loads with its images", async () => {
    const out = join(tmp.dir, "cli", "sft.jsonl");
    const run = await runCli(["export", runDir, "--format", "r1v4", "--filter", "consistent", "--out", out]);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/exported 3 of 9 trajectories/);
    expect(run.stderr).toMatch(/removed: unfinished 0, format 2, correct 1, tool_error 1, recrop 1, blank 1, model_check 0/);
    expect(run.stderr).toMatch(/not applied: model_check/);
    const records = loadJsonl(out);
    expect(records.map((r) => r.id).sort()).toEqual(["good1", "good2", "mismatch"]);
    const report = JSON.parse(readFileSync(join(tmp.dir, "cli", "sft.filter.json"), "utf8")) as ExportReport;
    const byFilter = Object.fromEntries(report.rejections.map((r) => [r.id, r.filter]));
    expect(byFilter).toEqual({ format: "format", twocalls: "format", wrong: "correct", toolerr: "tool_error", recrop: "recrop", blank: "blank" });
    expect(report.rejections.find((r) => r.id === "twocalls")!.detail).toMatch(/step 1: 2 tool calls in one turn/);
    expect(Object.keys(byFilter).sort()).toEqual([...PLANTED].sort());
    expect(report.rejections.find((r) => r.id === "blank")!.detail).toMatch(/blank: pixel std dev 0\.0/);
    expect(report.rejections.find((r) => r.id === "recrop")!.detail).toMatch(/IoU 1\.00/);

    // R1V4's tag protocol: think + tool_call, observations as user turns carrying the sub-images.
    const good1 = records.find((r) => r.id === "good1")!;
    const messages = good1.messages as Array<{ role: string; content: string }>;
    expect(messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "user", "assistant", "user", "assistant"]);
    expect(messages[0]!.content).toContain("<tool_call>");
    expect(messages[2]!.content).toMatch(/^<think>Look closer at that part\.<\/think>\n<tool_call>\{"name":"crop","arguments":\{"image":"img_0","bbox":\[0,0,500,500\]\}\}<\/tool_call>$/);
    expect(messages[3]!.content).toMatch(/^<observation>\ncrop of img_0 done[\s\S]*<image>[\s\S]*<\/observation>$/);
    expect(messages[6]!.content).toMatch(/<answer>ANS-good1<\/answer>$/);
    expect(good1.images).toHaveLength(3); // input, crop, zoom
    expect(good1).toMatchObject({ answer: "ANS-good1", ground_truth: ["ANS-good1"], correct: true });
  });

  it("the optional model check removes a trajectory whose thinking misdescribes its crop", async () => {
    const checker = await startScriptedModelServer({
      script: [(req) => ({ content: /MISMATCH/.test(requestText(req.body)) ? "no" : "yes" })],
      onExhausted: "repeat-last",
    });
    try {
      const { report, records } = await exportWith("r1v4", "consistent", { checkUrl: checker.url });
      expect(records.map((r) => r.id).sort()).toEqual(["good1", "good2"]);
      expect(report.removed.model_check).toBe(1);
      expect(report.rejections.find((r) => r.filter === "model_check")!.id).toBe("mismatch");
      // good1 has two sub-images, mismatch one (then rejected); good2 none.
      expect(checker.chatRequests()).toHaveLength(3);
      const body = checker.chatRequests()[0]!.body.messages[0].content as Array<{ type: string }>;
      expect(body.some((p) => p.type === "image_url")).toBe(true);
    } finally {
      await checker.close();
    }
  });

  it("messages (ms-swift), sharegpt (LLaMA-Factory) and plan formats", async () => {
    const messages = await exportWith("messages", "none");
    expect(messages.report.exported).toBe(9);
    for (const r of messages.records) {
      const roles = (r.messages as Array<{ role: string }>).map((m) => m.role);
      expect(roles[0]).toBe("system");
      // user and assistant alternate after the system prompt.
      roles.slice(1).forEach((role, i) => expect(role).toBe(i % 2 === 0 ? "user" : "assistant"));
    }
    const sharegpt = await exportWith("sharegpt", "consistent");
    expect(sharegpt.records).toHaveLength(3);
    for (const r of sharegpt.records) {
      expect(typeof r.system).toBe("string");
      (r.conversations as Array<{ from: string }>).forEach((t, i) => expect(t.from).toBe(i % 2 === 0 ? "human" : "gpt"));
    }
    const plan = await exportWith("plan", "none");
    // Plan data only from trajectories that were judged correct and well-formed.
    expect(plan.records.map((r) => r.id).sort()).toEqual(["blank", "good1", "good2", "mismatch", "recrop", "toolerr"]);
    const good1 = plan.records.find((r) => r.id === "good1")!;
    const steps = JSON.parse((good1.messages as Array<{ content: string }>)[2]!.content) as Array<{ tool_name: string; parameters: Record<string, unknown> }>;
    expect(steps.map((s) => s.tool_name)).toEqual(["crop", "zoom", "none"]);
    expect(steps[0]!.parameters.image_path).toBe("img_0");
    expect(steps[1]!.parameters.image_path).toBe("[Image from Step 1]");
    expect(good1.images).toHaveLength(1);
  });

  it("--threads exports bare threads: no verdicts, so the correctness filter is reported as not applied", async () => {
    const rows = readFileSync(join(runDir, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { id: string; threadId: string });
    const threads = rows.filter((r) => ["good1", "wrong", "blank"].includes(r.id)).map((r) => r.threadId);
    const { report, records } = await exportWith("r1v4", "consistent", { threads: [...threads, "no-such-thread"] });
    expect(records.map((r) => r.thread_id)).toEqual(threads.filter((t) => !t.endsWith("-blank")));
    expect(report.removed.blank).toBe(1);
    expect(report.missing).toBe(1);
    expect(report.notApplied.correct).toMatch(/no verdicts for bare threads/);
  });
});
