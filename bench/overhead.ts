// Benchmark 1: orchestration overhead per step. A 24-tool-call trajectory against the scripted model
// server with zero latency: Loupe through ask() with the SQLite and the in-memory checkpointer, against
// a bare hand-written loop sending byte-identical requests and running the same image tool.
import { join } from "node:path";
import { MemorySaver } from "@langchain/langgraph";
import { createAgent } from "../graphs/build.js";
import { createCheckpointer } from "../src/checkpointer.js";
import { createDeps, imageStoreFor } from "../src/deps.js";
import { OpenAICompatibleModel } from "../src/model.js";
import { ask } from "../src/run.js";
import { createToolbox } from "../tools/index.js";
import { imageStats } from "../tools/image-ops.js";
import { bareLoop } from "./lib/bare-loop.js";
import { floorRunner, type FloorVariant } from "./lib/graph-floor.js";
import { startServerProcess } from "./lib/child.js";
import {
  benchSettings,
  collectGarbage,
  fmt,
  median,
  photoJpeg,
  round,
  summary,
  timed,
  type Benchmark,
  type Summary,
  type TargetRow,
} from "./lib/common.js";
import { SCENARIO_ANSWER, type CropScenario } from "./lib/scenarios.js";

export const QUESTION = "What code is written on the blue sign?";
const STEPS = 24;

type VariantName = "bare" | "memory" | "sqlite";

interface VariantResult {
  label: string;
  /** Wall time of each timed repetition divided by the tool calls, ms. */
  msPerStep: number[];
  summary: Summary;
}

export interface OverheadResult {
  steps: number;
  modelCalls: number;
  image: string;
  reps: number;
  variants: Record<VariantName, VariantResult>;
  /** Paired per repetition: (Loupe − bare) / steps, then the median; and median(Loupe) / median(bare). */
  overhead: Record<"memory" | "sqlite", { msPerStep: number; ratio: number }>;
  /** Every variant sent byte-identical requests in every repetition. */
  requestsIdentical: boolean;
  requestsPerRun: number;
  /** Where the overhead goes: pieces of Loupe's per-step work timed apart in the same run. */
  breakdown: {
    /** Loupe's blank-crop check (imageStats re-reads and decodes each crop). */
    imageStatsMs: number;
    /** createToolbox per planner turn (rebuilds the tool JSON schemas with z.toJSONSchema). */
    toolboxMs: number;
    /** LangGraph alone, Loupe's graph shape and update sizes, no-op nodes, ms per tool call. */
    floor: Record<FloorVariant, Summary>;
  };
}

const LABELS: Record<VariantName, string> = {
  bare: "bare loop (no graph, no checkpointer)",
  memory: "Loupe, MemorySaver",
  sqlite: "Loupe, SQLite checkpointer",
};

export const overhead: Benchmark<OverheadResult> = {
  name: "overhead",
  title: "1. Orchestration overhead per step",
  async run(ctx) {
    const reps = ctx.quick ? 1 : 11;
    const imagePath = await photoJpeg(ctx.cacheDir, 640, 480, 1, 10);
    const scenario: CropScenario = { steps: STEPS, dialect: "tools" };
    const server = await startServerProcess(scenario, {}, "hash");
    try {
      const settingsFor = (dir: string) => benchSettings({ modelUrl: server.url, dataDir: join(ctx.tmp, "overhead", dir), maxToolCalls: STEPS });

      const bareSettings = settingsFor("bare");
      const bareStore = imageStoreFor(bareSettings);
      const bareModel = new OpenAICompatibleModel({ config: bareSettings, images: bareStore });

      const memSettings = settingsFor("memory");
      const memDeps = createDeps(memSettings, {});
      const memAgent = createAgent({ deps: memDeps, checkpointer: new MemorySaver() });

      const sqlSettings = settingsFor("sqlite");
      const sqlDeps = createDeps(sqlSettings, {});
      const saver = createCheckpointer(sqlSettings);
      const sqlAgent = createAgent({ deps: sqlDeps, checkpointer: saver });

      const runs: Record<VariantName, () => Promise<{ answer: string; toolCalls: number }>> = {
        bare: () => bareLoop({ settings: bareSettings, images: bareStore, model: bareModel, question: QUESTION, imagePaths: [imagePath] }),
        memory: async () => {
          const r = await ask(memAgent, { settings: memSettings, question: QUESTION, images: [imagePath] });
          return { answer: r.answer, toolCalls: r.toolCalls.length };
        },
        sqlite: async () => {
          const r = await ask(sqlAgent, { settings: sqlSettings, question: QUESTION, images: [imagePath] });
          return { answer: r.answer, toolCalls: r.toolCalls.length };
        },
      };

      let reference: string[] | undefined;
      let identical = true;
      const once = async (name: VariantName): Promise<number> => {
        await server.takeHashes();
        collectGarbage();
        const { ms, value } = await timed(runs[name]);
        const hashes = await server.takeHashes();
        if (value.answer !== SCENARIO_ANSWER || value.toolCalls !== STEPS) {
          throw new Error(`overhead/${name}: expected ${STEPS} tool calls and answer ${SCENARIO_ANSWER}, got ${value.toolCalls} and ${JSON.stringify(value.answer)}`);
        }
        reference ??= hashes;
        if (hashes.join() !== reference.join()) identical = false;
        return ms;
      };

      const floorNames: FloorVariant[] = ["annotation-memory", "zod-memory", "zod-sqlite"];
      const floors = Object.fromEntries(floorNames.map((f) => [f, floorRunner(f, STEPS, join(ctx.tmp, "overhead"))])) as Record<FloorVariant, ReturnType<typeof floorRunner>>;
      const floorOnce = async (f: FloorVariant) => {
        collectGarbage();
        return (await timed(() => floors[f].run())).ms / STEPS;
      };

      const names: VariantName[] = ["bare", "memory", "sqlite"];
      if (!ctx.quick) {
        // Warm-up: JIT, sharp, caches, connections.
        for (const name of names) await once(name);
        for (const f of floorNames) await floorOnce(f);
      }
      const samples: Record<VariantName, number[]> = { bare: [], memory: [], sqlite: [] };
      const floorSamples: Record<FloorVariant, number[]> = { "annotation-memory": [], "zod-memory": [], "zod-sqlite": [] };
      for (let r = 0; r < reps; r++) {
        const order = names.map((_, i) => names[(i + r) % names.length]!);
        for (const name of order) samples[name].push((await once(name)) / STEPS);
        for (const f of floorNames) floorSamples[f].push(await floorOnce(f));
        ctx.log(`  rep ${r + 1}/${reps}: ${order.map((n) => `${n} ${fmt(samples[n].at(-1)!)} ms/step`).join(", ")}; graph floor ${floorNames.map((f) => `${f} ${fmt(floorSamples[f].at(-1)!)}`).join(", ")}`);
      }
      for (const f of floorNames) floors[f].close();
      const toolboxMs: number[] = [];
      for (let i = 0; i < 30; i++) toolboxMs.push((await timed(async () => createToolbox([], "rel1000"))).ms);
      if (!identical) throw new Error("overhead: the bare loop and Loupe did not send byte-identical requests; the comparison is void");

      // Loupe's per-crop blank check, timed apart on the crops the runs made.
      const state = await sqlAgent.getState({ configurable: { thread_id: (await lastThread(saver)) ?? "" } });
      const made = ((state.values as { images?: Array<{ sha256: string; mime: "image/jpeg"; width: number; height: number; parent: string | null }> }).images ?? []).filter((i) => i.parent);
      const statsMs: number[] = [];
      for (const img of made) statsMs.push((await timed(() => imageStats(sqlDeps.images, img))).ms);
      saver.db.close();
      memDeps.close();
      sqlDeps.close();

      const variants = Object.fromEntries(
        names.map((n) => [n, { label: LABELS[n], msPerStep: samples[n].map((x) => round(x, 3)), summary: roundSummary(summary(samples[n])) }]),
      ) as Record<VariantName, VariantResult>;
      const paired = (n: "memory" | "sqlite") => ({
        msPerStep: round(median(samples[n].map((x, i) => x - samples.bare[i]!)), 3),
        ratio: round(median(samples[n]) / median(samples.bare), 3),
      });
      return {
        steps: STEPS,
        modelCalls: reference?.length ?? 0,
        image: "640×480 photo-like JPEG; each step crops a distinct 40%×40% box of img_0 (256×192 px)",
        reps,
        variants,
        overhead: { memory: paired("memory"), sqlite: paired("sqlite") },
        requestsIdentical: identical,
        requestsPerRun: reference?.length ?? 0,
        breakdown: {
          imageStatsMs: round(median(statsMs), 3),
          toolboxMs: round(median(toolboxMs), 3),
          floor: Object.fromEntries(floorNames.map((f) => [f, roundSummary(summary(floorSamples[f]))])) as Record<FloorVariant, Summary>,
        },
      };
    } finally {
      await server.close();
    }
  },
  markdown(r) {
    const b = r.breakdown;
    const rows = (["bare", "memory", "sqlite"] as const).map((n) => {
      const v = r.variants[n];
      const over = n === "bare" ? "—" : `+${fmt(r.overhead[n].msPerStep)} ms (×${fmt(r.overhead[n].ratio)})`;
      return `| ${v.label} | ${fmt(v.summary.median)} | ${fmt(v.summary.min)}–${fmt(v.summary.max)} | ${over} |`;
    });
    return [
      `${r.steps} tool calls (${r.modelCalls} model calls: one per tool call plus the answer) against the scripted model server with zero latency, in its own process. ${r.image}. Median of ${r.reps} repetitions per variant, variants interleaved; the overhead is the median of the per-repetition differences to the bare loop, divided by ${r.steps}.`,
      "",
      "| variant | ms per step (median) | range | overhead vs bare loop |",
      "|---|---|---|---|",
      ...rows,
      "",
      `Requests byte-identical across the three variants in every repetition: **${r.requestsIdentical ? "yes" : "no"}** (${r.requestsPerRun} requests per run, compared by sha256).`,
      "",
      "Where the overhead goes (each piece timed apart in the same run, ms per tool call):",
      "",
      "| piece | ms/step |",
      "|---|---|",
      `| LangGraph alone: Loupe's graph shape (3 super-steps per tool call) and update sizes, no-op nodes, plain \`Annotation\` state, MemorySaver | ${fmt(b.floor["annotation-memory"].median)} |`,
      `| the same with Loupe's zod state schema (LangGraph validates every node update against it), MemorySaver | ${fmt(b.floor["zod-memory"].median)} |`,
      `| the same with Loupe's zod state schema, SQLite checkpointer | ${fmt(b.floor["zod-sqlite"].median)} |`,
      `| Loupe's blank-crop check (\`imageStats\` reads and decodes each crop again) | ${fmt(b.imageStatsMs)} |`,
      `| tool specs rebuilt on every planner turn (\`createToolbox\` → \`z.toJSONSchema\`) | ${fmt(b.toolboxMs)} |`,
      `| sum of the pieces (zod floor with SQLite + check + specs) | ${fmt(b.floor["zod-sqlite"].median + b.imageStatsMs + b.toolboxMs)} |`,
      `| measured Loupe overhead (SQLite) | ${fmt(r.overhead.sqlite.msPerStep)} |`,
      ...reading(r),
    ].join("\n");
  },
  targets(r) {
    return [
      { target: "Overhead ≤ 2 ms/step above the bare loop, in-memory checkpointer", measured: `+${fmt(r.overhead.memory.msPerStep)} ms/step`, holds: r.overhead.memory.msPerStep <= 2 },
      { target: "Overhead ≤ 5 ms/step above the bare loop, SQLite checkpointer", measured: `+${fmt(r.overhead.sqlite.msPerStep)} ms/step`, holds: r.overhead.sqlite.msPerStep <= 5 },
    ] satisfies TargetRow[];
  },
};

function reading(r: OverheadResult): string[] {
  const b = r.breakdown;
  if (r.overhead.memory.msPerStep <= 2 && r.overhead.sqlite.msPerStep <= 5) return [];
  const zodCost = b.floor["zod-memory"].median - b.floor["annotation-memory"].median;
  const sqliteCost = b.floor["zod-sqlite"].median - b.floor["zod-memory"].median;
  const rest = r.overhead.sqlite.msPerStep - (b.floor["zod-sqlite"].median + b.imageStatsMs + b.toolboxMs);
  return [
    "",
    `**Targets missed** (+${fmt(r.overhead.memory.msPerStep)} ms per step with MemorySaver, +${fmt(r.overhead.sqlite.msPerStep)} ms with SQLite). What bounds it, from the breakdown: ` +
      `(1) the blank-crop check reads every crop back from the store and decodes it again, ${fmt(b.imageStatsMs)} ms; ` +
      `(2) LangGraph itself, running Loupe's three super-steps per tool call (planner → image_tool via Send → reflect, a checkpoint after each), costs ${fmt(b.floor["annotation-memory"].median)} ms per tool call with no-op nodes and a plain \`Annotation\` state, already above 2 ms on this machine; ` +
      `(3) Loupe's zod state schema adds ${fmt(zodCost)} ms (LangGraph parses every node's update against a partial zod schema that it builds again on every write), and the SQLite saver ${fmt(sqliteCost)} ms more than the in-memory one; ` +
      `(4) the tool specs are rebuilt with \`z.toJSONSchema\` on every planner turn, ${fmt(b.toolboxMs)} ms` +
      (rest > 0 ? `; the remaining ${fmt(rest)} ms is the nodes' own bookkeeping (settings, events, the image list carried in every Send, reflect's checks).` : "."),
    "",
    "What would fix it, largest saving first:",
    "",
    ...[
      { ms: b.imageStatsMs, text: `compute a crop's pixel statistics inside \`runImageOp\` from the pixels it has just extracted (a mean/variance pass over the raw region) instead of reading and decoding the encoded crop again in the image-tool node (removes most of the ${fmt(b.imageStatsMs)} ms per step it costs here)` },
      {
        ms: b.floor["annotation-memory"].median / 3,
        text: `fewer super-steps per tool call, e.g. reflect's bookkeeping done in the tool step, or image calls run inside the planner node when they are a turn's only calls: LangGraph's cost is per super-step, ~${fmt(b.floor["annotation-memory"].median / 3)} ms each here, and three per call already exceed the 2 ms target with no-op nodes`,
      },
      { ms: zodCost, text: `declare the graph state with \`Annotation.Root\` (keeping zod for the context, input and output schemas that Studio shows), so LangGraph stops re-validating every node update (~${fmt(zodCost)} ms)` },
      { ms: b.toolboxMs, text: `build the tool specs once per (providers, coords): memoise \`createToolbox\`/\`toolSpecs\` (~${fmt(b.toolboxMs)} ms)` },
    ]
      .sort((x, y) => y.ms - x.ms)
      .map((f) => `- ${f.text};`),
    `- the SQLite saver's extra ${fmt(sqliteCost)} ms is serialising and writing the whole state at every super-step, which the fix of benchmark 2 (write only what changed) also shrinks.`,
  ];
}

function roundSummary(s: Summary): Summary {
  return { median: round(s.median, 3), min: round(s.min, 3), max: round(s.max, 3), n: s.n };
}

async function lastThread(saver: ReturnType<typeof createCheckpointer>): Promise<string | undefined> {
  const row = saver.db.prepare("SELECT thread_id FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1").get() as { thread_id: string } | undefined;
  return row?.thread_id;
}
