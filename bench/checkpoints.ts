// Benchmark 2: checkpoint growth. Total checkpoint bytes after 4, 8, 16, 32 tool calls (crops of a
// 4000×3000 photo): Loupe (image references in state) against the same graph keeping base64 images
// in its messages, both on the same SqliteSaver.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { createAgent } from "../graphs/agent.js";
import { checkpointPath, createCheckpointer } from "../src/runtime/checkpointer.js";
import { createDeps, imageStoreFor } from "../src/runtime/deps.js";
import { ask } from "../src/run/ask.js";
import { startScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { createBase64Agent } from "./lib/base64-graph.js";
import { benchSettings, fmt, fmtBytes, logLogSlope, pct, photoJpeg, round, tempDir, type Benchmark } from "./lib/common.js";
import { scenarioEntry, SCENARIO_ANSWER } from "./lib/scenarios.js";
import { QUESTION } from "./overhead.js";

interface DbBytes {
  /** Sum of the stored blobs: checkpoints (checkpoint + metadata) and pending writes. */
  rowBytes: number;
  checkpointBytes: number;
  writeBytes: number;
  checkpoints: number;
  /** The database file after a WAL checkpoint (TRUNCATE), i.e. what sits on disk. */
  fileBytes: number;
  /** The newest checkpoint alone: the whole state at the end. */
  lastCheckpointBytes: number;
}

interface Point {
  toolCalls: number;
  loupe: DbBytes;
  base64: DbBytes;
  /** loupe.rowBytes / base64.rowBytes */
  ratio: number;
}

export interface CheckpointsResult {
  image: string;
  points: Point[];
  /** Least-squares slope of log(bytes) on log(tool calls); 1 is linear, 2 quadratic. */
  exponent: { loupe: number; base64: number };
  /** log2 of the growth over the last doubling of the run length. */
  lastDoubling: { loupe: number; base64: number };
}

function measure(db: import("better-sqlite3").Database, dbPath: string): Promise<DbBytes> {
  const c = db.prepare("SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) AS b FROM checkpoints").get() as { n: number; b: number };
  const w = db.prepare("SELECT COALESCE(SUM(LENGTH(value)), 0) AS b FROM writes").get() as { b: number };
  const last = db.prepare("SELECT LENGTH(checkpoint) + LENGTH(metadata) AS b FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1").get() as { b: number };
  db.pragma("wal_checkpoint(TRUNCATE)");
  return stat(dbPath).then((s) => ({
    rowBytes: c.b + w.b,
    checkpointBytes: c.b,
    writeBytes: w.b,
    checkpoints: c.n,
    fileBytes: s.size,
    lastCheckpointBytes: last.b,
  }));
}

function growthReading(r: CheckpointsResult): string[] {
  const first = r.points[0]!;
  const last = r.points.at(-1)!;
  const perCall = (last.loupe.lastCheckpointBytes - first.loupe.lastCheckpointBytes) / (last.toolCalls - first.toolCalls);
  return [
    "",
    `**Linear growth missed** (exponent ${fmt(r.exponent.loupe)}; the ratio target holds). What bounds it: LangGraph's \`SqliteSaver\` writes the whole state into every checkpoint (\`checkpoints.checkpoint\` holds every channel's full value), and there is a checkpoint after every super-step, three per tool call. Loupe's state is small but grows by about ${fmtBytes(perCall)} per tool call (the conversation's turns with their image references, the image list, the tool-call records), so the k-th checkpoint is O(k) bytes (${fmtBytes(first.loupe.lastCheckpointBytes)} after ${first.toolCalls} calls, ${fmtBytes(last.loupe.lastCheckpointBytes)} after ${last.toolCalls}) and the total O(n²): the same quadratic shape as the anchor, with a constant ${fmt(1 / last.ratio, 0)}× smaller. The Send payloads in \`writes\` carry the whole image list to each tool task and grow the same way.`,
    "",
    "What would fix it: store what changed, not the whole state. Either a checkpointer that saves the append-only channels (conversation, images, toolCalls) as deltas against the parent checkpoint and rebuilds them on read, or the conversation kept outside the checkpoint in an append-only table keyed by (thread, turn index) with only its length in state; and send each tool task only the one image it names. Either makes each checkpoint O(1) and the total linear. (The Postgres saver's per-channel blobs do not help by themselves: the conversation channel changes every step, so its full value is written every time.)",
  ];
}

function linearNote(r: CheckpointsResult): string[] {
  const first = r.points[0]!;
  const last = r.points.at(-1)!;
  const perCall = (last.loupe.rowBytes - first.loupe.rowBytes) / (last.toolCalls - first.toolCalls);
  return [
    "",
    `How: the state's append-only lists (the conversation, the image references, the tool-call records) are LangGraph delta channels (\`DeltaValue\` in \`src/core/state.ts\`): a checkpoint stores only what its step wrote, and a thread's state is rebuilt on read by replaying the writes of its ancestors (one query each for the chain and its writes in Loupe's SQLite saver). Each \`Send\` carries only the image its call names. So Loupe's last checkpoint stays at ${fmtBytes(last.loupe.lastCheckpointBytes)} whatever the length (${fmtBytes(first.loupe.lastCheckpointBytes)} after ${first.toolCalls} calls), and each tool call adds about ${fmtBytes(perCall)} in all. The anchor, like most LangGraph agents, stores its whole message list, base64 images included, in every checkpoint.`,
  ];
}

export const checkpoints: Benchmark<CheckpointsResult> = {
  name: "checkpoints",
  title: "2. Checkpoint growth",
  async run(ctx) {
    const lengths = ctx.quick ? [4, 8] : [4, 8, 16, 32];
    const imagePath = await photoJpeg(ctx.cacheDir, 4000, 3000, 2, 10);
    const points: Point[] = [];
    for (const steps of lengths) {
      // Loupe, through ask(), against the scripted model server.
      const loupeDir = await tempDir(ctx.tmp, `ckpt-loupe-${steps}-`);
      const server = await startScriptedModelServer({ script: [scenarioEntry({ steps, dialect: "tools", boxSize: 250 })], onExhausted: "repeat-last" });
      let loupe: DbBytes;
      try {
        // All images shown, as the anchor shows them all; no budget note in the way.
        const settings = benchSettings({ modelUrl: server.url, dataDir: loupeDir.dir, maxToolCalls: 64, maxImagesInContext: 64 });
        const saver = createCheckpointer(settings);
        const deps = createDeps(settings, {});
        const agent = createAgent({ deps, checkpointer: saver });
        const result = await ask(agent, { settings, question: QUESTION, images: [imagePath] });
        deps.close();
        if (result.answer !== SCENARIO_ANSWER || result.toolCalls.length !== steps) throw new Error(`checkpoints: Loupe run of ${steps} went wrong`);
        loupe = await measure(saver.db, checkpointPath(settings));
        saver.db.close();
      } finally {
        await server.close();
        await loupeDir.cleanup();
      }

      // The anchor: base64 data URLs in the messages.
      const anchorDir = await tempDir(ctx.tmp, `ckpt-b64-${steps}-`);
      let base64: DbBytes;
      try {
        const settings = benchSettings({ modelUrl: "http://127.0.0.1:9/v1", dataDir: anchorDir.dir });
        const saver = createCheckpointer(settings);
        const agent = await createBase64Agent({ store: imageStoreFor(settings), imagePath, steps, boxSize: 250, maxPixels: settings.maxPixels, checkpointer: saver, question: QUESTION });
        await agent.run("anchor");
        base64 = await measure(saver.db, checkpointPath(settings));
        saver.db.close();
      } finally {
        await anchorDir.cleanup();
      }
      points.push({ toolCalls: steps, loupe, base64, ratio: round(loupe.rowBytes / base64.rowBytes, 5) });
      ctx.log(`  ${steps} tool calls: Loupe ${fmtBytes(loupe.rowBytes)}, base64 anchor ${fmtBytes(base64.rowBytes)} (${pct(loupe.rowBytes / base64.rowBytes, 2)})`);
    }
    const xs = points.map((p) => p.toolCalls);
    const n = points.length;
    const doubling = (k: "loupe" | "base64") => round(Math.log2(points[n - 1]![k].rowBytes / points[n - 2]![k].rowBytes) / Math.log2(xs[n - 1]! / xs[n - 2]!), 3);
    return {
      image: "4000×3000 photo-like JPEG (1.7 MB); each tool call crops a distinct 25%×25% box of img_0 (1000×750 px, ≈150 KB), all images shown to the model",
      points,
      exponent: {
        loupe: round(logLogSlope(xs, points.map((p) => p.loupe.rowBytes)), 3),
        base64: round(logLogSlope(xs, points.map((p) => p.base64.rowBytes)), 3),
      },
      lastDoubling: { loupe: doubling("loupe"), base64: doubling("base64") },
    };
  },
  markdown(r) {
    const rows = r.points.map(
      (p) =>
        `| ${p.toolCalls} | ${p.loupe.checkpoints} | ${fmtBytes(p.loupe.rowBytes)} | ${fmtBytes(p.loupe.lastCheckpointBytes)} | ${fmtBytes(p.base64.rowBytes)} | ${fmtBytes(p.base64.lastCheckpointBytes)} | ${pct(p.ratio, 2)} | ${fmtBytes(p.loupe.fileBytes)} / ${fmtBytes(p.base64.fileBytes)} |`,
    );
    return [
      `${r.image}. Each run is one question on a fresh SQLite database; bytes are the stored blobs (\`checkpoints.checkpoint\` + \`metadata\`, \`writes.value\`).`,
      "",
      "| tool calls | checkpoints | Loupe total | Loupe last checkpoint | base64 anchor total | anchor last checkpoint | Loupe / anchor | file on disk (Loupe / anchor) |",
      "|---|---|---|---|---|---|---|---|",
      ...rows,
      "",
      `Growth exponent (log-log slope over all lengths): Loupe **${fmt(r.exponent.loupe)}**, base64 anchor **${fmt(r.exponent.base64)}**; over the last doubling: Loupe ${fmt(r.lastDoubling.loupe)}, anchor ${fmt(r.lastDoubling.base64)} (1 = linear, 2 = quadratic).`,
      ...(r.exponent.loupe > 1.1 ? growthReading(r) : linearNote(r)),
    ].join("\n");
  },
  targets(r) {
    const last = r.points.at(-1)!;
    return [
      { target: "Checkpoints grow linearly (growth exponent ≤ 1.1)", measured: `exponent ${fmt(r.exponent.loupe)} (last doubling ${fmt(r.lastDoubling.loupe)})`, holds: r.exponent.loupe <= 1.1 },
      { target: `At ${last.toolCalls} tool calls ≤ 2% of the base64 baseline`, measured: `${pct(last.ratio, 2)} (${fmtBytes(last.loupe.rowBytes)} vs ${fmtBytes(last.base64.rowBytes)})`, holds: last.ratio <= 0.02 },
    ];
  },
};
