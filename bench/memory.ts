// Benchmark 7: memory stays bounded. Peak RSS growth of a fresh process while it refuses an image URL
// sending an endless chunked body, an API-style request of several huge-dimension PNGs, and a rotation
// whose canvas would be huge; each against an anchor that accepts (reads the body whole, decodes one
// such image). And the time to receive a streamed reply against the size of its tool call's arguments,
// Loupe's model client against a minimal client reading the same stream.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { MemorySaver } from "@langchain/langgraph";
import sharp from "sharp";
import { createAgent } from "../graphs/agent.js";
import { ingestInputs } from "../nodes/first-turn.js";
import { startScriptedModelServer, type ScriptedTurn } from "../src/cli/demo/scripted-model-server.js";
import { IMAGE_DOWNLOAD_LIMITS, readImageSource, urlImageReader } from "../src/core/image-sources.js";
import { ImageStore } from "../src/core/images.js";
import { OpenAICompatibleModel } from "../src/core/model.js";
import type { Turn } from "../src/core/state.js";
import { createDeps } from "../src/runtime/deps.js";
import { runImageOp } from "../tools/image-ops.js";
import { toolSpecs } from "../tools/index.js";
import { forkTs, nextMessage, runInChild } from "./lib/child.js";
import { benchSettings, collectGarbage, fmt, fmtBytes, logLogSlope, median, round, tempDir, type Benchmark } from "./lib/common.js";

const MiB = 1024 * 1024;
/** What each refusal's peak RSS growth is held to. */
const RSS_LIMIT = 256 * MiB;
const EXPONENT_LIMIT = 1.2;
/** An endless body stops here anyway, so that a reader that ignores its limit cannot take the machine's memory. */
const ENDLESS_CAP = 1024 * MiB;
const HUGE_SIDE = 14_000;

// ---------------------------------------------------------------------------------------------
// Peak RSS of a step, in the child process that runs it
// ---------------------------------------------------------------------------------------------

function statusBytes(key: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
  if (!m) throw new Error(`no ${key} in /proc/self/status (the memory benchmark needs Linux)`);
  return Number(m[1]) * 1024;
}

/** Runs `step` and returns its result with how far RSS rose above where it was before (the peak is reset first). */
async function rssGrowth<T>(step: () => Promise<T>): Promise<{ value: T; ms: number; growthBytes: number }> {
  collectGarbage();
  const before = statusBytes("VmRSS");
  // Writing 5 to clear_refs resets VmHWM to the current RSS, so the peak is this step's own.
  writeFileSync("/proc/self/clear_refs", "5");
  const t0 = performance.now();
  const value = await step();
  const ms = performance.now() - t0;
  return { value, ms: round(ms, 1), growthBytes: Math.max(0, statusBytes("VmHWM") - before) };
}

async function failure(work: () => Promise<unknown>): Promise<string> {
  try {
    await work();
    return "no error";
  } catch (err) {
    return (err as Error).message;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. A download with an endless chunked body
// ---------------------------------------------------------------------------------------------

type DownloadReader = "cli" | "server" | "buffer-whole";

export interface DownloadTaskResult {
  message: string;
  ms: number;
  growthBytes: number;
}

/** Runs in a child process: reads `url` with one reader. */
export async function downloadTask({ url, host, reader }: { url: string; host: string; reader: DownloadReader }): Promise<DownloadTaskResult> {
  const read =
    reader === "cli"
      ? () => readImageSource(url)
      : reader === "server"
        ? () => urlImageReader({ allowHosts: [host] })(url)
        : // What the CLI's reader did before: fetch, then the whole body at once.
          async () => {
            const body = Buffer.from(await (await fetch(url)).arrayBuffer());
            throw new Error(`read ${body.length} bytes whole`);
          };
  const { value, ms, growthBytes } = await rssGrowth(() => failure(read));
  return { message: value, ms, growthBytes };
}

/** /endless: a chunked body with no declared length that never ends (stopped at ENDLESS_CAP); /finite?bytes=N: N bytes, chunked. */
async function startBodyServer(): Promise<{ server: Server; base: string; host: string }> {
  const chunk = Buffer.alloc(256 * 1024, 0x89);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const total = url.pathname === "/finite" ? Number(url.searchParams.get("bytes")) : ENDLESS_CAP;
    res.writeHead(200, { "content-type": "image/png" });
    let sent = 0;
    let closed = false;
    res.on("close", () => (closed = true));
    const pump = () => {
      while (!closed && sent < total) {
        const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
        sent += piece.length;
        if (!res.write(piece)) return void res.once("drain", pump);
      }
      if (!closed && url.pathname === "/finite") res.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return { server, base: `http://${host}`, host };
}

// ---------------------------------------------------------------------------------------------
// 2. An API-style request of huge-dimension PNGs
// ---------------------------------------------------------------------------------------------

export interface RequestTaskResult {
  message: string;
  ms: number;
  growthBytes: number;
  modelRequests: number;
}

/**
 * Runs in a child process. "refuse": the agent graph as the server builds it (URLs and data: URLs
 * only, MemorySaver for the input checkpoint), invoked with `count` data: URLs of the PNG.
 * "accept-one": the anchor, one such image taken in and decoded for its crops, as every image of a
 * request was before the total budget.
 */
export async function requestTask({ png, count, dir, mode }: { png: string; count: number; dir: string; mode: "refuse" | "accept-one" }): Promise<RequestTaskResult> {
  const dataUrl = `data:image/png;base64,${(await readFile(png)).toString("base64")}`;
  const model = await startScriptedModelServer({ script: [{ content: "<answer>never asked</answer>" }], onExhausted: "repeat-last" });
  try {
    const settings = benchSettings({ modelUrl: model.url, dataDir: dir });
    const deps = createDeps(settings, {}, { readImage: urlImageReader() });
    const work =
      mode === "refuse"
        ? async () => {
            const agent = createAgent({ deps, checkpointer: new MemorySaver() });
            const sources = Array.from({ length: count }, () => dataUrl);
            return failure(() => agent.invoke({ question: "What is on these images?", imageSources: sources }, { configurable: { thread_id: "memory" } }));
          }
        : async () => {
            const [input] = await ingestInputs(deps, [dataUrl], settings.maxPixels);
            const decoded = await deps.images.decoded(input!.ref);
            return `accepted: ${input!.ref.width}×${input!.ref.height}, ${fmtBytes(decoded.data.length)} decoded`;
          };
    const { value, ms, growthBytes } = await rssGrowth(work);
    await deps.close();
    return { message: value, ms, growthBytes, modelRequests: model.chatRequests().length };
  } finally {
    await model.close();
  }
}

/** A HUGE_SIDE² solid PNG: tiny as a file, HUGE_SIDE² pixels once decoded. Cached. */
async function hugePng(cacheDir: string): Promise<string> {
  const path = join(cacheDir, `solid-${HUGE_SIDE}x${HUGE_SIDE}.png`);
  if (existsSync(path)) return path;
  const png = await sharp({ create: { width: HUGE_SIDE, height: HUGE_SIDE, channels: 3, background: "#7f7f7f" } }).png({ compressionLevel: 9 }).toBuffer();
  await mkdir(cacheDir, { recursive: true });
  await writeFile(`${path}.${process.pid}.tmp`, png);
  await rename(`${path}.${process.pid}.tmp`, path);
  return path;
}

// ---------------------------------------------------------------------------------------------
// 3. A rotation whose canvas would be huge
// ---------------------------------------------------------------------------------------------

export interface RotateTaskResult {
  op: string;
  width: number;
  height: number;
  ms: number;
  growthBytes: number;
}

/** Runs in a child process: rotates a 30000×200 strip by 45° (a 456 MP canvas at full size). */
export async function rotateTask({ dir }: { dir: string }): Promise<RotateTaskResult> {
  const store = new ImageStore(join(dir, "images"));
  const strip = await sharp({ create: { width: 30_000, height: 200, channels: 3, background: "#404040" } }).png().toBuffer();
  const source = await store.ingest(strip);
  await store.decoded(source);
  const { value, ms, growthBytes } = await rssGrowth(() => runImageOp(store, "rotate", { image: "img_0", degrees: 45 }, source, { imageId: "img_0" }));
  return { op: value.op, width: value.image.width, height: value.image.height, ms, growthBytes };
}

// ---------------------------------------------------------------------------------------------
// 4. A streamed reply with long tool-call arguments
// ---------------------------------------------------------------------------------------------

/** The scripted turn for a request asking for `size N`: one crop call whose arguments are exactly N characters of JSON. */
function longCall(req: { rawBody: string }): ScriptedTurn {
  const size = Number(/size (\d+)/.exec(req.rawBody)?.[1] ?? 1024);
  const empty = JSON.stringify({ image: "img_0", bbox: [0, 0, 500, 500], note: "" });
  const args = JSON.stringify({ image: "img_0", bbox: [0, 0, 500, 500], note: "x".repeat(Math.max(0, size - empty.length)) });
  return { content: "<think>a long note</think>", toolCalls: [{ name: "crop", arguments: args }] };
}

/** The minimal client: the same request, the stream read and each event parsed, the argument pieces joined once. */
async function minimalClient(url: string, size: number): Promise<number> {
  const res = await fetch(`${url}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "scripted-vl", stream: true, messages: [{ role: "user", content: `size ${size}` }] }),
  });
  const decoder = new TextDecoder();
  const pieces: string[] = [];
  let partial = "";
  for await (const bytes of res.body!) {
    const lines = (partial + decoder.decode(bytes as Uint8Array, { stream: true })).split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const event = JSON.parse(line.slice(6)) as { choices?: Array<{ delta?: { tool_calls?: Array<{ function?: { arguments?: string } }> } }> };
      const piece = event.choices?.[0]?.delta?.tool_calls?.[0]?.function?.arguments;
      if (piece) pieces.push(piece);
    }
  }
  return pieces.join("").length;
}

export interface StreamRow {
  size: number;
  /** Loupe's model client, ms per repetition; null when it was not measured (see loupeStopped). */
  loupeMs: number[] | null;
  /** A request of this size did not finish within the time allowed (else, with loupeMs null, a smaller one did not and this size was not asked). */
  loupeStopped?: boolean;
  minimalMs: number[];
}

/** Runs in a child process: one warm-up request, then one reply of `size` characters of arguments received by `client`, timed. */
export async function streamTask({ url, size, client, dir }: { url: string; size: number; client: "loupe" | "minimal"; dir: string }): Promise<{ ms: number }> {
  const config = benchSettings({ modelUrl: url, dataDir: dir });
  const model = new OpenAICompatibleModel({ config, images: new ImageStore(join(dir, "images")), toolSpecs });
  const turns = (n: number): Turn[] => [
    { role: "system_text", text: "You are a benchmark." },
    { role: "user", parts: [{ type: "text", text: `size ${n}` }] },
  ];
  const receive = async (n: number) => (client === "loupe" ? ((await model.complete(turns(n))).toolCalls[0]?.arguments.length ?? 0) : minimalClient(url, n));
  // Warm-up: the connection, LangChain and the JIT.
  await receive(1024);
  collectGarbage();
  const t0 = performance.now();
  const got = await receive(size);
  const ms = performance.now() - t0;
  if (got !== size) throw new Error(`memory/stream: the ${client} client read ${got} characters of arguments, expected ${size}`);
  return { ms: round(ms, 1) };
}

/**
 * runInChild with a time limit: the child is killed when it has not answered within `ms` (a request
 * stuck in CPU-bound work does not see its own abort signal), and the answer is null.
 */
async function runInChildWithin<T>(ms: number, module: string, fn: string, args: unknown): Promise<T | null> {
  const child = forkTs("bench/workers/task.ts");
  const result = nextMessage<{ result: T }>(child, "result");
  child.send({ type: "run", module, fn, args });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  try {
    return await Promise.race([result.then((r) => r.result), late]);
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) {
      result.catch(() => undefined);
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
  }
}

/** Each size's replies, Loupe's client and the minimal one alternating, each request in a fresh process; once Loupe's runs out of time, larger sizes are not asked of it. */
async function streamRows(url: string, sizes: number[], reps: number, timeoutMs: number, dir: string): Promise<StreamRow[]> {
  const rows: StreamRow[] = [];
  let outOfTime = false;
  for (const size of sizes) {
    const row: StreamRow = { size, loupeMs: outOfTime ? null : [], minimalMs: [] };
    for (let r = 0; r < reps; r++) {
      row.minimalMs.push((await runInChild<{ ms: number }>("bench/memory.ts", "streamTask", { url, size, client: "minimal", dir })).ms);
      if (!row.loupeMs) continue;
      // The child's start and warm-up come on top of the request's own time.
      const timed = await runInChildWithin<{ ms: number }>(timeoutMs + 30_000, "bench/memory.ts", "streamTask", { url, size, client: "loupe", dir });
      if (!timed || timed.ms > timeoutMs) {
        row.loupeMs = null;
        row.loupeStopped = true;
        outOfTime = true;
      } else row.loupeMs.push(timed.ms);
    }
    rows.push(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------

interface Refusal {
  what: string;
  message: string;
  ms: number;
  growthBytes: number;
}

export interface MemoryResult {
  rssLimitBytes: number;
  exponentLimit: number;
  downloadLimitBytes: number;
  download: { loupe: Refusal[]; anchor: Refusal | null; anchorBytes: number };
  request: { loupe: Refusal & { modelRequests: number; count: number }; anchor: Refusal | null; side: number; pngBytes: number; maxInputPixels: number };
  rotate: RotateTaskResult;
  stream: { rows: StreamRow[]; sizes: number[]; reps: number; timeoutMs: number };
}

/** The growth exponent of Loupe's client over the sizes it finished, and a lower bound when a larger one ran out of time. */
function streamExponents(r: MemoryResult["stream"]): { loupe: number; loupeAtLeast?: number; minimal: number } {
  const done = r.rows.filter((row) => row.loupeMs?.length);
  const loupe = done.length >= 2 ? logLogSlope(done.map((row) => row.size), done.map((row) => median(row.loupeMs!))) : NaN;
  const minimal = logLogSlope(r.rows.map((row) => row.size), r.rows.map((row) => median(row.minimalMs)));
  const timedOut = r.rows.find((row) => row.loupeStopped);
  const last = done.at(-1);
  if (!timedOut || !last) return { loupe, minimal };
  // It took more than timeoutMs at timedOut.size: at least this steep from the last size it finished.
  const loupeAtLeast = Math.log(r.timeoutMs / median(last.loupeMs!)) / Math.log(timedOut.size / last.size);
  return { loupe, loupeAtLeast, minimal };
}

function loupeCell(row: StreamRow, timeoutMs: number): string {
  if (row.loupeMs) return `${fmt(median(row.loupeMs))} ms`;
  return row.loupeStopped ? `> ${timeoutMs / 1000} s (stopped)` : "not asked (a smaller size was stopped)";
}

const kib = (n: number) => (n >= MiB ? `${n / MiB} MiB` : `${n / 1024} KiB`);

export const memory: Benchmark<MemoryResult> = {
  name: "memory",
  title: "7. Memory and limits",
  async run(ctx) {
    const { server, base, host } = await startBodyServer();
    let download: MemoryResult["download"];
    const anchorBytes = (ctx.quick ? 64 : 256) * MiB;
    try {
      const loupe: Refusal[] = [];
      for (const reader of ["cli", "server"] as const) {
        const r = await runInChild<DownloadTaskResult>("bench/memory.ts", "downloadTask", { url: `${base}/endless`, host, reader });
        loupe.push({ what: reader === "cli" ? "CLI reader (`readImageSource`)" : "server reader (`urlImageReader`, SSRF guard)", message: r.message, ms: r.ms, growthBytes: r.growthBytes });
        ctx.log(`  download, ${reader}: refused in ${fmt(r.ms / 1000)} s, RSS +${fmtBytes(r.growthBytes)}: ${r.message}`);
      }
      const a = await runInChild<DownloadTaskResult>("bench/memory.ts", "downloadTask", { url: `${base}/finite?bytes=${anchorBytes}`, host, reader: "buffer-whole" });
      const anchor = { what: `anchor: fetch + arrayBuffer of a ${fmtBytes(anchorBytes)} body`, message: a.message, ms: a.ms, growthBytes: a.growthBytes };
      ctx.log(`  download, anchor: ${a.message} in ${fmt(a.ms / 1000)} s, RSS +${fmtBytes(a.growthBytes)}`);
      download = { loupe, anchor, anchorBytes };
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }

    const png = await hugePng(ctx.cacheDir);
    const count = ctx.quick ? 3 : 8;
    const dir = await tempDir(ctx.tmp, "memory-");
    let request: MemoryResult["request"];
    let rotate: RotateTaskResult;
    try {
      const r = await runInChild<RequestTaskResult>("bench/memory.ts", "requestTask", { png, count, dir: join(dir.dir, "refuse"), mode: "refuse" });
      if (r.modelRequests !== 0 || !/over the limit/.test(r.message)) throw new Error(`memory/request: expected a refusal before any model call, got ${r.modelRequests} requests and "${r.message}"`);
      ctx.log(`  request of ${count} × ${HUGE_SIDE}×${HUGE_SIDE}: refused in ${fmt(r.ms)} ms, RSS +${fmtBytes(r.growthBytes)}: ${r.message}`);
      const a = await runInChild<RequestTaskResult>("bench/memory.ts", "requestTask", { png, count: 1, dir: join(dir.dir, "accept"), mode: "accept-one" });
      ctx.log(`  request anchor: ${a.message} in ${fmt(a.ms)} ms, RSS +${fmtBytes(a.growthBytes)}`);
      request = {
        loupe: { what: `${count} data: URLs of a ${HUGE_SIDE}×${HUGE_SIDE} PNG`, message: r.message, ms: r.ms, growthBytes: r.growthBytes, modelRequests: r.modelRequests, count },
        anchor: { what: "anchor: one such image taken in and decoded for its crops", message: a.message, ms: a.ms, growthBytes: a.growthBytes },
        side: HUGE_SIDE,
        pngBytes: (await readFile(png)).length,
        maxInputPixels: benchSettings({ modelUrl: "http://127.0.0.1:1/v1", dataDir: dir.dir }).maxInputPixels,
      };
      rotate = await runInChild<RotateTaskResult>("bench/memory.ts", "rotateTask", { dir: join(dir.dir, "rotate") });
      ctx.log(`  rotate 45° of 30000×200: ${rotate.width}×${rotate.height} in ${fmt(rotate.ms)} ms, RSS +${fmtBytes(rotate.growthBytes)}: ${rotate.op}`);
    } finally {
      await dir.cleanup();
    }

    const sizes = ctx.quick ? [16 * 1024, 64 * 1024] : [16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024];
    const reps = ctx.quick ? 1 : 3;
    const timeoutMs = ctx.quick ? 30_000 : 60_000;
    const model = await startScriptedModelServer({ script: [longCall], onExhausted: "repeat-last" });
    const drain = setInterval(() => model.requests.splice(0), 50);
    let stream: MemoryResult["stream"];
    const streamDir = await tempDir(ctx.tmp, "memory-stream-");
    try {
      const rows = await streamRows(model.url, sizes, reps, timeoutMs, streamDir.dir);
      for (const row of rows) {
        ctx.log(`  stream ${kib(row.size)}: Loupe ${loupeCell(row, timeoutMs)}, minimal client ${fmt(median(row.minimalMs))} ms`);
      }
      stream = { rows, sizes, reps, timeoutMs };
    } finally {
      clearInterval(drain);
      await model.close();
      await streamDir.cleanup();
    }
    return { rssLimitBytes: RSS_LIMIT, exponentLimit: EXPONENT_LIMIT, downloadLimitBytes: IMAGE_DOWNLOAD_LIMITS.maxBytes, download, request, rotate, stream };
  },

  markdown(r) {
    const e = streamExponents(r.stream);
    const refusalRows = [...r.download.loupe, ...(r.download.anchor ? [r.download.anchor] : [])].map(
      (x) => `| ${x.what} | ${fmt(x.ms / 1000, 2)} s | ${fmtBytes(x.growthBytes)} | ${x.message.replace(/\|/g, "\\|")} |`,
    );
    const requestRows = [r.request.loupe, ...(r.request.anchor ? [r.request.anchor] : [])].map(
      (x) => `| ${x.what} | ${fmt(x.ms)} ms | ${fmtBytes(x.growthBytes)} | ${x.message.replace(/\|/g, "\\|")} |`,
    );
    const streamRows = r.stream.rows.map(
      (row) =>
        `| ${kib(row.size)} | ${loupeCell(row, r.stream.timeoutMs)} | ${fmt(median(row.minimalMs))} ms | ${row.loupeMs ? `${fmt(median(row.loupeMs) / median(row.minimalMs), 1)}×` : "—"} |`,
    );
    const stopped = r.stream.rows.filter((row) => row.loupeStopped).map((row) => kib(row.size));
    const pixels = r.request.side * r.request.side;
    const out = [
      `Each refusal runs in a fresh process; its figure is how far the process's RSS rose above where it was just before (VmHWM, reset through /proc/self/clear_refs, minus VmRSS), held to **${fmtBytes(r.rssLimitBytes)}**. The anchors accept what Loupe refuses, to show what the limit saves.`,
      "",
      `**An image URL sending an endless chunked body** (no Content-Length, loopback, sent as fast as it is read). The limit: ${fmtBytes(r.downloadLimitBytes)} of body per image (and 30 s per download); the body is read as a stream and the download stopped once past it.`,
      "",
      "| reader | time to refusal | peak RSS growth | message |",
      "|---|---|---|---|",
      ...refusalRows,
      "",
      `**An API-style request of ${r.request.loupe.count} huge images**: ${r.request.loupe.count} data: URLs of a ${r.request.side}×${r.request.side} solid PNG (${fmtBytes(r.request.pngBytes)} as a file, ${fmt(pixels / 1e6, 0)} MP decoded, under the per-image limit of ${fmt(r.request.maxInputPixels / 1e6, 0)} MP), given to the agent graph as the server builds it (URLs and data: URLs only, MemorySaver). The limit: ${fmt((2 * r.request.maxInputPixels) / 1e6, 0)} MP for all of a question's images together (twice LOUPE_MAX_INPUT_PIXELS), read from the images' headers before any is decoded. Model requests sent: ${r.request.loupe.modelRequests}.`,
      "",
      "| request | time to refusal | peak RSS growth | message |",
      "|---|---|---|---|",
      ...requestRows,
      "",
      `**A rotation with a huge canvas**: 45° of a 30000×200 strip needs a ~21355×21355 canvas (456 MP) at full size. The limit: the output's pixels, like zoom's and resize's (16 MP, or the source's own size when larger); the source is downscaled first, so the full canvas is never allocated. Result ${r.rotate.width}×${r.rotate.height} in ${fmt(r.rotate.ms)} ms, peak RSS growth ${fmtBytes(r.rotate.growthBytes)}; the model reads: "${r.rotate.op}".`,
      "",
      `**A streamed reply with long tool-call arguments**: the scripted model server (in the benchmark runner's process) streams one crop call whose arguments are the given size, in 16-character deltas; Loupe's model client (\`OpenAICompatibleModel.complete\`, through ChatOpenAI) in a child process against a minimal client reading the same stream (fetch, each event parsed, the pieces joined once). Each request in a fresh process after a warm-up request; median of ${r.stream.reps}. A Loupe request taking over ${r.stream.timeoutMs / 1000} s is stopped (its process killed) and larger sizes are not asked of it. The limit: time growing at most as size^${r.exponentLimit}.`,
      "",
      "| arguments | Loupe's client | minimal client | ratio |",
      "|---|---|---|---|",
      ...streamRows,
      "",
      `Growth exponent: Loupe ${fmt(e.loupe)}${e.loupeAtLeast !== undefined ? ` over the sizes it finished, and at least ${fmt(e.loupeAtLeast)} up to the first it did not` : ""}; minimal client ${fmt(e.minimal)}.`,
    ];
    if (stopped.length || (e.loupeAtLeast ?? e.loupe) > r.exponentLimit) {
      out.push(
        "",
        `**Target missed**: receiving the reply is super-linear in the arguments' size${stopped.length ? ` (${stopped.join(", ")} not finished within ${r.stream.timeoutMs / 1000} s)` : ""}. Not in Loupe's own gathering (\`streamOnce\` in \`src/core/model.ts\` joins the chunks' fields once), but under it: \`ChatOpenAI.stream()\` goes through @langchain/core's \`BaseChatModel._streamIterator\`, which merges every chunk into the one before (\`generationChunk.concat(chunk)\`, for its callbacks), and each merge rebuilds the \`AIMessageChunk\`, whose constructor re-parses the whole partial tool-call JSON (\`collapseToolCallChunks\` → \`parsePartialJson\`); @langchain/openai's delta converter does the same per delta. In a CPU profile at 64 KiB those parses and the garbage they leave are most of the time. A fix belongs in the model client: read the stream without that merge (the OpenAI SDK's stream, or \`_streamResponseChunks\`), as the minimal client does.`,
      );
    }
    return out.join("\n");
  },

  targets(r) {
    const e = streamExponents(r.stream);
    const worstDownload = Math.max(...r.download.loupe.map((x) => x.growthBytes));
    const exponent = e.loupeAtLeast ?? e.loupe;
    const stopped = r.stream.rows.some((row) => row.loupeStopped === true);
    return [
      {
        target: `Refusing an endless chunked image download: peak RSS growth ≤ ${fmtBytes(r.rssLimitBytes)}`,
        measured: `${fmtBytes(worstDownload)} at most (limit ${fmtBytes(r.downloadLimitBytes)}${r.download.anchor ? `; reading ${fmtBytes(r.download.anchorBytes)} whole: ${fmtBytes(r.download.anchor.growthBytes)}` : ""})`,
        holds: worstDownload <= r.rssLimitBytes && r.download.loupe.every((x) => /over the \d+-byte limit/.test(x.message)),
      },
      {
        target: `Refusing ${r.request.loupe.count} data: URLs of ${r.request.side}×${r.request.side} PNGs: peak RSS growth ≤ ${fmtBytes(r.rssLimitBytes)}, no model call`,
        measured: `${fmtBytes(r.request.loupe.growthBytes)}, ${r.request.loupe.modelRequests} model calls${r.request.anchor ? ` (one such image accepted: ${fmtBytes(r.request.anchor.growthBytes)})` : ""}`,
        holds: r.request.loupe.growthBytes <= r.rssLimitBytes && r.request.loupe.modelRequests === 0,
      },
      {
        target: `Rotating 30000×200 by 45°: output ≤ 16 MP, peak RSS growth ≤ ${fmtBytes(r.rssLimitBytes)}`,
        measured: `${r.rotate.width}×${r.rotate.height}, ${fmtBytes(r.rotate.growthBytes)}`,
        holds: r.rotate.width * r.rotate.height <= 16_000_000 && r.rotate.growthBytes <= r.rssLimitBytes,
      },
      {
        target: `Streamed reply: time exponent ≤ ${r.exponentLimit} against tool-call argument size`,
        measured: `${e.loupeAtLeast !== undefined ? `≥ ${fmt(exponent)}` : fmt(exponent)}${stopped ? ` (${r.stream.rows.filter((row) => row.loupeStopped).map((row) => kib(row.size)).join(", ")} stopped after ${r.stream.timeoutMs / 1000} s, larger sizes not asked)` : ""}; minimal client ${fmt(e.minimal)}`,
        holds: !stopped && exponent <= r.exponentLimit,
      },
    ];
  },
};
