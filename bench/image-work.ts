// Benchmark 3: image work. 10 successive crops/zooms of an 8K (7680×4320) JPEG: Loupe's image tool
// (runImageOp over the ImageStore's decode-once cache) against a naive sharp(input).extract().resize()
// per call, with one full decode of the image for reference. Every variant runs alone in a fresh
// process, so its peak RSS is its own.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";
import { ImageStore } from "../src/core/images.js";
import { runImageOp, toPixelBox } from "../tools/image-ops.js";
import { runInChild } from "./lib/child.js";
import { fmt, fmtBytes, median, photoJpeg, round, tempDir, type Benchmark } from "./lib/common.js";

type Variant = "idle" | "decode" | "loupe" | "loupe-node" | "naive";

interface Op {
  name: "crop" | "zoom";
  bbox: [number, number, number, number];
}

/** Five crops of 20%×20% (1536×864 px) and five zooms of 6%×6% (461×260 px, enlarged to 1024 px wide), all over the image. */
export const OPS: Op[] = [
  { name: "crop", bbox: [50, 50, 250, 250] },
  { name: "zoom", bbox: [300, 320, 360, 380] },
  { name: "crop", bbox: [700, 100, 900, 300] },
  { name: "zoom", bbox: [850, 200, 910, 260] },
  { name: "crop", bbox: [400, 400, 600, 600] },
  { name: "zoom", bbox: [150, 520, 210, 580] },
  { name: "crop", bbox: [100, 760, 300, 960] },
  { name: "zoom", bbox: [600, 900, 660, 960] },
  { name: "crop", bbox: [780, 780, 980, 980] },
  { name: "zoom", bbox: [470, 60, 530, 120] },
];

const NAIVE_JPEG = { quality: 92, chromaSubsampling: "4:4:4" } as const;
const MAX_PIXELS = 1_048_576;

interface TaskArgs {
  variant: Variant;
  imagePath: string;
  dir: string;
}

export interface TaskResult {
  /** ms of each of the 10 operations (empty for idle and decode). */
  opMs: number[];
  totalMs: number;
  /** decode: the one full decode, ms. */
  decodeMs?: number;
  /** loupe: storing the input in the image store first (probe, hash, write), ms; not part of totalMs. */
  ingestMs?: number;
}

/** Runs in a child process (see runInChild): one variant, timed. */
export async function imageTask({ variant, imagePath, dir }: TaskArgs): Promise<TaskResult> {
  const bytes = await readFile(imagePath);
  // Start libvips and its thread pool the same way in every variant.
  await sharp({ create: { width: 64, height: 64, channels: 3, background: "#808080" } }).jpeg().toBuffer().then((b) => sharp(b).raw().toBuffer());
  const opMs: number[] = [];
  if (variant === "idle") return { opMs, totalMs: 0 };
  if (variant === "decode") {
    const t0 = performance.now();
    await sharp(bytes, { limitInputPixels: 200_000_000 }).raw().toBuffer();
    const decodeMs = performance.now() - t0;
    return { opMs, totalMs: decodeMs, decodeMs };
  }
  if (variant === "naive") {
    const meta = await sharp(bytes).metadata();
    const t0 = performance.now();
    for (const op of OPS) {
      const t = performance.now();
      const box = toPixelBox(op.bbox, "rel1000", meta.width!, meta.height!, "img_0");
      let p = sharp(bytes).extract(box);
      if (op.name === "zoom") {
        const factor = Math.min(8, Math.max(2, 1024 / Math.max(box.width, box.height)));
        p = p.resize(Math.round(box.width * factor), Math.round(box.height * factor), { fit: "fill", kernel: "lanczos3" });
      }
      await p.jpeg(NAIVE_JPEG).toBuffer();
      opMs.push(performance.now() - t);
    }
    return { opMs, totalMs: performance.now() - t0 };
  }
  const store = new ImageStore(join(dir, "images"));
  const ti = performance.now();
  const stored = await store.ingest(bytes);
  const ingestMs = performance.now() - ti;
  const source = { id: "img_0", ...stored, parent: null, op: null };
  const t0 = performance.now();
  for (const op of OPS) {
    const t = performance.now();
    const out = await runImageOp(store, op.name, { image: "img_0", bbox: op.bbox }, source, { imageId: "img_0" });
    if (variant === "loupe-node") {
      // What reflect adds per call: the model's view (a downscale for a result over 1 MP).
      await store.modelView(out.image, MAX_PIXELS);
    }
    opMs.push(performance.now() - t);
  }
  return { opMs, totalMs: performance.now() - t0, ingestMs };
}

interface VariantSummary {
  label: string;
  totalMs: number[];
  medianTotalMs: number;
  medianFirstOpMs: number;
  medianLaterOpMs: number;
  maxRssBytes: number[];
  medianMaxRssBytes: number;
  medianIngestMs?: number;
}

export interface ImageWorkResult {
  image: { width: number; height: number; bytes: number };
  reps: number;
  variants: Record<Variant, VariantSummary>;
  decodeMs: number;
  /** Loupe's 10 operations / one decode. */
  loupeOverDecode: number;
  naiveOverDecode: number;
  /** naive / Loupe, total of the 10 operations. */
  speedup: number;
}

const LABELS: Record<Variant, string> = {
  idle: "baseline process (imports, libvips started, no image work)",
  decode: "one full decode of the image (reference)",
  loupe: "Loupe: runImageOp + ImageStore (decode once, then crop from pixels)",
  "loupe-node": "Loupe, whole tool step: runImageOp (blank-crop statistics included) + the model's view",
  naive: "naive: sharp(input).extract().resize() per call",
};

function imageReading(r: ImageWorkResult): string[] {
  const l = r.variants.loupe;
  return [
    "",
    `**Target missed** (${fmt(r.loupeOverDecode, 2)}×). What bounds it: the decode happens once, in the first call (${fmt(l.medianFirstOpMs, 0)} ms, one decode is ${fmt(r.decodeMs, 0)} ms); each later call still costs ${fmt(l.medianLaterOpMs, 1)} ms: for a crop, copying the 1536×864 region out of the decoded pixels and encoding it (JPEG quality 92, 4:4:4 so small coloured text stays sharp); for a zoom, the Lanczos enlargement to 1024 px wide and its encode. Nine of them cost more than a second decode on this machine; a cheaper encode (lower quality, 4:2:0 chroma) or enlargement kernel would trade away what the model sees.`,
  ];
}

function imageNotes(r: ImageWorkResult): string[] {
  const n = r.variants["loupe-node"];
  return [
    "",
    `Fixed since the first measurement (2.62× one decode): JPEG Huffman-table optimisation is off in \`JPEG_OPTIONS\` (an extra pass over the coefficients that doubled the encode of a 1536×864 crop, for files about a quarter smaller; the encode is still deterministic, so content addresses and prefix stability are unaffected), and the blank-crop statistics come from the decoded pixels of the box inside \`runImageOp\` instead of a decode of the new JPEG in the image-tool node. In a real step reflect adds the model's view of results over the 1 MP budget (row "whole tool step", ${fmt(n.medianLaterOpMs, 1)} ms per later call): the 1536×864 crops are downscaled for the model from their encoded bytes.`,
  ];
}

export const imageWork: Benchmark<ImageWorkResult> = {
  name: "image-work",
  title: "3. Image work on an 8K photo",
  async run(ctx) {
    const [width, height] = ctx.quick ? [3840, 2160] : [7680, 4320];
    const reps = ctx.quick ? 1 : 7;
    const imagePath = await photoJpeg(ctx.cacheDir, width, height, 3, 10);
    const bytes = (await readFile(imagePath)).length;
    const variants: Variant[] = ["idle", "decode", "loupe", "loupe-node", "naive"];
    const runs: Record<Variant, Array<TaskResult & { maxRssBytes: number }>> = { idle: [], decode: [], loupe: [], "loupe-node": [], naive: [] };
    for (let r = 0; r < reps; r++) {
      const order = variants.map((_, i) => variants[(i + r) % variants.length]!);
      for (const variant of order) {
        const dir = await tempDir(ctx.tmp, `img-${variant}-`);
        try {
          runs[variant].push(await runInChild<TaskResult>("bench/image-work.ts", "imageTask", { variant, imagePath, dir: dir.dir }));
        } finally {
          await dir.cleanup();
        }
      }
      ctx.log(`  rep ${r + 1}/${reps}: ${variants.map((v) => `${v} ${fmt(runs[v].at(-1)!.totalMs, 0)} ms / ${fmtBytes(runs[v].at(-1)!.maxRssBytes)}`).join(", ")}`);
    }
    const summarise = (v: Variant): VariantSummary => {
      const rs = runs[v];
      const ingest = rs.map((x) => x.ingestMs).filter((x): x is number => x !== undefined);
      return {
        label: LABELS[v],
        totalMs: rs.map((x) => round(x.totalMs, 1)),
        medianTotalMs: round(median(rs.map((x) => x.totalMs)), 1),
        medianFirstOpMs: round(median(rs.map((x) => x.opMs[0] ?? 0)), 1),
        medianLaterOpMs: round(median(rs.flatMap((x) => x.opMs.slice(1))), 1),
        maxRssBytes: rs.map((x) => x.maxRssBytes),
        medianMaxRssBytes: median(rs.map((x) => x.maxRssBytes)),
        ...(ingest.length ? { medianIngestMs: round(median(ingest), 1) } : {}),
      };
    };
    const summaries = Object.fromEntries(variants.map((v) => [v, summarise(v)])) as Record<Variant, VariantSummary>;
    const decodeMs = summaries.decode.medianTotalMs;
    return {
      image: { width, height, bytes },
      reps,
      variants: summaries,
      decodeMs,
      loupeOverDecode: round(summaries.loupe.medianTotalMs / decodeMs, 3),
      naiveOverDecode: round(summaries.naive.medianTotalMs / decodeMs, 3),
      speedup: round(summaries.naive.medianTotalMs / summaries.loupe.medianTotalMs, 3),
    };
  },
  markdown(r) {
    const rows = (["loupe", "naive", "decode", "loupe-node", "idle"] as const).map((v) => {
      const s = r.variants[v];
      const ops = v === "decode" || v === "idle";
      const total = v === "idle" ? "—" : fmt(s.medianTotalMs, 0);
      const vsDecode = v === "idle" ? "—" : `${fmt(s.medianTotalMs / r.decodeMs, 2)}×`;
      return `| ${s.label} | ${total} | ${ops ? "—" : fmt(s.medianTotalMs / 10, 1)} | ${ops ? "—" : `${fmt(s.medianFirstOpMs, 0)} / ${fmt(s.medianLaterOpMs, 1)}`} | ${vsDecode} | ${fmtBytes(s.medianMaxRssBytes)} |`;
    });
    return [
      `A ${r.image.width}×${r.image.height} photo-like JPEG (${fmtBytes(r.image.bytes)}); 10 operations alternating crops of 20%×20% (1536×864 px) and zooms of 6%×6% enlarged to 1024 px wide, spread over the image. Each variant runs in a fresh process; medians over ${r.reps} processes per variant, variants interleaved. Loupe's ingest of the input (probe, hash, store), done once per question before any tool call, took ${fmt(r.variants.loupe.medianIngestMs ?? NaN, 0)} ms and is not counted.`,
      "",
      "| variant | 10 operations, ms | ms per operation | first / later operations, ms | vs one decode | peak RSS |",
      "|---|---|---|---|---|---|",
      ...rows,
      "",
      `Loupe's 10 operations cost **${fmt(r.loupeOverDecode, 2)}×** one decode of the image; the naive way costs ${fmt(r.naiveOverDecode, 2)}× (Loupe is ${fmt(r.speedup, 2)}× faster). Peak RSS includes the baseline process shown in the last row; Loupe's is higher than the naive way's because it keeps the decoded pixels (${fmtBytes(r.image.width * r.image.height * 3)}) for the next call.`,
      ...imageNotes(r),
      ...(r.loupeOverDecode > 2 ? imageReading(r) : []),
      ...(r.loupeOverDecode <= 2 && r.loupeOverDecode > 1.8
        ? [
            "",
            `The margin is thin: the first operation (the decode and a crop) takes ${fmt(r.variants.loupe.medianFirstOpMs, 0)} ms, and the nine later ones ${fmt(r.variants.loupe.medianLaterOpMs, 1)} ms each (a crop's encode, or a zoom's Lanczos enlargement and encode), ${fmt((9 * r.variants.loupe.medianLaterOpMs) / r.decodeMs, 2)}× a decode together; a couple of milliseconds of noise per operation moves the ratio across 2× on this shared machine.`,
          ]
        : []),
    ].join("\n");
  },
  targets(r) {
    return [
      { target: "10 crops/zooms of an 8K image ≤ 2× one decode", measured: `${fmt(r.loupeOverDecode, 2)}× (${fmt(r.variants.loupe.medianTotalMs, 0)} ms vs ${fmt(r.decodeMs, 0)} ms; naive ${fmt(r.naiveOverDecode, 2)}×)`, holds: r.loupeOverDecode <= 2 },
    ];
  },
};
