// Benchmark 1: orchestration overhead per step. A 24-tool-call trajectory against the scripted model
// server with zero latency: Loupe through ask() with the SQLite and the in-memory checkpointer, against
// a bare hand-written loop sending byte-identical requests and running the same image tool.
import { join } from "node:path";
import { MemorySaver } from "@langchain/langgraph";
import { createAgent } from "../graphs/agent.js";
import { createCheckpointer } from "../src/runtime/checkpointer.js";
import { createDeps, imageStoreFor } from "../src/runtime/deps.js";
import { OpenAICompatibleModel } from "../src/core/model.js";
import { toolSpecs } from "../tools/index.js";
import { ask } from "../src/run/ask.js";
import { bareLoop } from "./lib/bare-loop.js";
import { FLOOR_VARIANTS, floorRunner, type FloorVariant } from "./lib/graph-floor.js";
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
import { scriptedClient, SCENARIO_ANSWER, type CropScenario } from "./lib/scenarios.js";

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
    /**
     * Loupe and the bare loop with the model answered in-process (no HTTP, no server): the same
     * graph, nodes, image tool and checkpointers, ms per tool call (wall), and the paired overheads.
     */
    inProcess: Record<VariantName, Summary> & { overhead: Record<"memory" | "sqlite", number> };
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
      const bareModel = new OpenAICompatibleModel({ config: bareSettings, images: bareStore, toolSpecs });

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

      // The same three variants with the model answered in-process (no HTTP): the graph's and the
      // nodes' own cost per step, without the noise of the request path both variants share.
      const inProc = scriptedClient(scenario);
      const ipBareSettings = settingsFor("inproc-bare");
      const ipBareStore = imageStoreFor(ipBareSettings);
      const ipMemSettings = settingsFor("inproc-memory");
      const ipMemDeps = createDeps(ipMemSettings, {}, { model: () => inProc });
      const ipMemAgent = createAgent({ deps: ipMemDeps, checkpointer: new MemorySaver() });
      const ipSqlSettings = settingsFor("inproc-sqlite");
      const ipSqlDeps = createDeps(ipSqlSettings, {}, { model: () => inProc });
      const ipSaver = createCheckpointer(ipSqlSettings);
      const ipSqlAgent = createAgent({ deps: ipSqlDeps, checkpointer: ipSaver });
      const inProcRuns: Record<VariantName, () => Promise<{ answer: string; toolCalls: number }>> = {
        bare: () => bareLoop({ settings: ipBareSettings, images: ipBareStore, model: inProc, question: QUESTION, imagePaths: [imagePath] }),
        memory: async () => {
          const r = await ask(ipMemAgent, { settings: ipMemSettings, question: QUESTION, images: [imagePath] });
          return { answer: r.answer, toolCalls: r.toolCalls.length };
        },
        sqlite: async () => {
          const r = await ask(ipSqlAgent, { settings: ipSqlSettings, question: QUESTION, images: [imagePath] });
          return { answer: r.answer, toolCalls: r.toolCalls.length };
        },
      };
      const inProcOnce = async (name: VariantName): Promise<number> => {
        collectGarbage();
        const { ms, value } = await timed(inProcRuns[name]);
        if (value.answer !== SCENARIO_ANSWER || value.toolCalls !== STEPS) throw new Error(`overhead/in-process ${name}: expected ${STEPS} tool calls and answer ${SCENARIO_ANSWER}, got ${value.toolCalls} and ${JSON.stringify(value.answer)}`);
        return ms / STEPS;
      };

      const floorNames = FLOOR_VARIANTS;
      const floors = Object.fromEntries(floorNames.map((f) => [f, floorRunner(f, STEPS, join(ctx.tmp, "overhead"))])) as Record<FloorVariant, ReturnType<typeof floorRunner>>;
      const floorOnce = async (f: FloorVariant) => {
        collectGarbage();
        return (await timed(() => floors[f].run())).ms / STEPS;
      };

      const names: VariantName[] = ["bare", "memory", "sqlite"];
      if (!ctx.quick) {
        // Warm-up: JIT, sharp, caches, connections.
        for (const name of names) await once(name);
        for (const name of names) await inProcOnce(name);
        for (const f of floorNames) await floorOnce(f);
      }
      const samples: Record<VariantName, number[]> = { bare: [], memory: [], sqlite: [] };
      const inProcSamples: Record<VariantName, number[]> = { bare: [], memory: [], sqlite: [] };
      const floorSamples = Object.fromEntries(floorNames.map((f) => [f, [] as number[]])) as Record<FloorVariant, number[]>;
      for (let r = 0; r < reps; r++) {
        const order = names.map((_, i) => names[(i + r) % names.length]!);
        for (const name of order) samples[name].push((await once(name)) / STEPS);
        for (const name of order) inProcSamples[name].push(await inProcOnce(name));
        for (const f of floorNames) floorSamples[f].push(await floorOnce(f));
        ctx.log(`  rep ${r + 1}/${reps}: ${order.map((n) => `${n} ${fmt(samples[n].at(-1)!)} ms/step`).join(", ")}; in-process ${order.map((n) => `${n} ${fmt(inProcSamples[n].at(-1)!)}`).join(", ")}; graph floor ${floorNames.map((f) => `${f} ${fmt(floorSamples[f].at(-1)!)}`).join(", ")}`);
      }
      for (const f of floorNames) floors[f].close();
      if (!identical) throw new Error("overhead: the bare loop and Loupe did not send byte-identical requests; the comparison is void");
      saver.db.close();
      ipSaver.db.close();
      memDeps.close();
      sqlDeps.close();
      ipMemDeps.close();
      ipSqlDeps.close();

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
          inProcess: {
            bare: roundSummary(summary(inProcSamples.bare)),
            memory: roundSummary(summary(inProcSamples.memory)),
            sqlite: roundSummary(summary(inProcSamples.sqlite)),
            overhead: {
              memory: round(median(inProcSamples.memory.map((x, i) => x - inProcSamples.bare[i]!)), 3),
              sqlite: round(median(inProcSamples.sqlite.map((x, i) => x - inProcSamples.bare[i]!)), 3),
            },
          },
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
      "Where the overhead goes (each piece timed in the same run, interleaved, ms per tool call):",
      "",
      "| piece | ms/step |",
      "|---|---|",
      `| bare loop, model answered in-process (no HTTP): the image tool and the loop's own work | ${fmt(b.inProcess.bare.median)} |`,
      `| Loupe, model answered in-process, MemorySaver | ${fmt(b.inProcess.memory.median)} (+${fmt(b.inProcess.overhead.memory)}) |`,
      `| Loupe, model answered in-process, SQLite checkpointer | ${fmt(b.inProcess.sqlite.median)} (+${fmt(b.inProcess.overhead.sqlite)}) |`,
      `| LangGraph alone: Loupe's graph shape (3 super-steps per tool call: planner, the tool via \`Send\`, reflect), Loupe's channels and update sizes, no-op nodes, no checkpointer | ${fmt(b.floor.none.median)} |`,
      `| the same with MemorySaver (delta channels, no validation of updates) | ${fmt(b.floor["annotation-memory"].median)} |`,
      `| the same with Loupe's state schema (\`AgentState\`: every node update validated with its zod schema), MemorySaver | ${fmt(b.floor["schema-memory"].median)} |`,
      `| the same with Loupe's state schema, SQLite checkpointer | ${fmt(b.floor["schema-sqlite"].median)} |`,
      `| for comparison, the previous shape (reflect folded into the planner node, 2 super-steps per tool call), state schema, MemorySaver | ${fmt(b.floor["schema-memory-2"].median)} |`,
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
  const mem = r.overhead.memory.msPerStep;
  const sql = r.overhead.sqlite.msPerStep;
  const missed = [mem > 2 ? `+${fmt(mem)} ms per step with MemorySaver (target 2)` : "", sql > 5 ? `+${fmt(sql)} ms with SQLite (target 5)` : ""].filter(Boolean);
  const floor = b.floor["schema-memory"].median;
  const perSuperStep = b.floor.none.median / 3;
  const lines = [
    "",
    "What was fixed since the first measurement (+19.4 ms per step with MemorySaver, +21.1 ms with SQLite): the blank-crop check now reads statistics from the pixels the crop was cut from instead of decoding the new JPEG again (9.6 ms); the tool specs and the system prompt are built once instead of on every turn (0.5 ms and more); a run's settings are parsed once, not in every node; the state is a `StateSchema` whose append-only lists are delta channels, so LangGraph no longer rebuilds a partial zod schema for every update and a checkpoint no longer copies the whole conversation; each `Send` carries only the image its call names.",
  ];
  if (missed.length === 0) return lines;
  return [
    ...lines,
    "",
    `**${missed.length === 2 ? "Targets" : "Target"} missed** (${missed.join("; ")}). What bounds it: LangGraph itself. With nodes that do nothing, Loupe's graph shape costs ${fmt(b.floor.none.median)} ms per tool call without a checkpointer (~${fmt(perSuperStep)} ms per super-step: task preparation, a RunnableConfig and LangSmith run tree per runnable, writes, channel updates), ${fmt(b.floor["annotation-memory"].median)} ms with MemorySaver, ${fmt(floor)} ms with the state validated and ${fmt(b.floor["schema-sqlite"].median)} ms with SQLite: the in-memory floor alone is ${floor > 2 ? "already above" : "most of"} the 2 ms target, on this machine. With the model answered in-process, Loupe costs +${fmt(b.inProcess.overhead.memory)} ms (MemorySaver) and +${fmt(b.inProcess.overhead.sqlite)} ms (SQLite) per step over the bare loop: the floor plus what real updates weigh (validating and serialising conversation turns, tool results and records), the progress events, and reflect's checks. Over HTTP (the table above) the overhead with MemorySaver is +${fmt(mem)} ms, ${mem - b.inProcess.overhead.memory >= 0.5 ? `${fmt(mem - b.inProcess.overhead.memory)} ms more than in-process although the request bytes are identical: the same model call costs more inside a LangGraph task than in the bare loop; this part was not broken down further.` : "about the same as in-process: the request path is the same code sending identical bytes in both."}`,
    "",
    `The reflect node's own super-step: reflect was for a while folded into the planner node (two super-steps per tool call); it is a node of its own again, so that the graph shows what it does (the design card's planner → tool → reflect loop, visible in Studio and in the README's graph) and each node can be tested alone. That costs one super-step and one checkpoint more per tool call: LangGraph alone needs ${fmt(b.floor["schema-memory"].median)} ms per tool call in this shape against ${fmt(b.floor["schema-memory-2"].median)} ms in the two-step shape (state schema, MemorySaver), so the extra super-step costs about ${fmt(b.floor["schema-memory"].median - b.floor["schema-memory-2"].median)} ms per tool call here. The previous full run, in the two-step shape (2026-11-21), measured Loupe at +5.48 ms per step with MemorySaver and +5.03 ms with SQLite; its two-step floor row (state schema, MemorySaver) was 3.24 ms against ${fmt(b.floor["schema-memory-2"].median)} ms here, so compare across runs with that drift of the machine in mind (×${fmt(b.floor["schema-memory-2"].median / 3.24)}).`,
    "",
    "What would lower it further, at a price: declaring the state with `Annotation.Root` instead of the zod `StateSchema` saves the validation of node updates (the difference between the two MemorySaver floor rows) but loses the check that nodes write well-formed state; running the image calls inside the planner node when they are a turn's only calls would make a tool call one super-step, at the cost of the per-tool tasks (parallel `Send`s, per-tool retries and resume after a crash mid-turn) that the graph exists for.",
  ];
}

function roundSummary(s: Summary): Summary {
  return { median: round(s.median, 3), min: round(s.min, 3), max: round(s.max, 3), n: s.n };
}
