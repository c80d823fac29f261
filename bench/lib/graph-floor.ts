// The floor under Loupe's per-step cost: LangGraph alone running Loupe's graph shape (planner →
// Send to a tool node → reflect, three super-steps per tool call) with Loupe's state schema and
// state updates of Loupe's size, but nodes that do no work. What this costs per step, no change
// inside Loupe's nodes can remove.
import { Annotation, END, MemorySaver, Send, START, StateGraph, type BaseCheckpointSaver } from "@langchain/langgraph";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { AgentState, clearedResults, EMPTY_USAGE, type AgentStateValue, type ToolResult, type Turn } from "../../src/state.js";
import { cropBox } from "./scenarios.js";

const SHA = "0".repeat(64);

function plannerUpdate(k: number, steps: number, usage: AgentStateValue["usage"]) {
  const done = k >= steps;
  const call = { id: `call_${k}`, name: "crop", arguments: JSON.stringify({ image: "img_0", bbox: cropBox(k) }) };
  const turn: Turn = done
    ? { role: "assistant", text: "<think>Done.</think>\n<answer>LOUPE-1</answer>" }
    : { role: "assistant", text: `<think>Step ${k + 1}: the detail I need is still too small, so I look closer at the next region.</think>`, toolCalls: [call] };
  return {
    conversation: [turn],
    reply: done ? { kind: "answer" as const, think: "Done.", answer: "LOUPE-1" } : { kind: "calls" as const, think: "..." },
    pending: done ? [] : [{ index: 0, callId: call.id, name: "crop", args: JSON.parse(call.arguments) as Record<string, unknown>, kind: "image" as const }],
    usage: { ...usage, turns: usage.turns + 1 },
  };
}

function toolResult(callId: string): ToolResult {
  return {
    callId,
    ok: true,
    text: "crop of img_0 done: crop [62,48,318,240]",
    images: [{ sha256: SHA, mime: "image/jpeg", width: 256, height: 192, op: "crop [62,48,318,240]", parent: "img_0", box: { left: 62, top: 48, width: 256, height: 192 }, stdev: 30 }],
    urls: [],
    ms: 5,
  };
}

function reflectUpdate(state: AgentStateValue) {
  const n = state.images.length;
  const call = state.pending[0]!;
  return {
    conversation: [
      { role: "tool", toolCallId: call.callId, text: "crop of img_0 done: crop [62,48,318,240]" },
      { role: "user", parts: [{ type: "text", text: `img_${n} (256×192; crop [62,48,318,240]):` }, { type: "image", id: `img_${n}`, sha256: SHA, mime: "image/jpeg" }] },
    ] satisfies Turn[],
    images: [{ id: `img_${n}`, sha256: SHA, mime: "image/jpeg" as const, width: 256, height: 192, parent: "img_0", op: "crop [62,48,318,240]" }],
    toolCalls: [{ step: state.toolCalls.length + 1, turn: state.usage.turns - 1, name: "crop", arguments: call.args, ok: true, ms: 5, images: [`img_${n}`], urls: [] }],
    results: clearedResults(),
    pending: [],
    reply: null,
    usage: { ...state.usage, toolCalls: state.usage.toolCalls + 1 },
  };
}

/** Loupe's graph shape over Loupe's zod state schema (LangGraph validates every node's update against it). */
export function zodFloorGraph(steps: number, checkpointer: BaseCheckpointSaver) {
  return new StateGraph(AgentState)
    .addNode("planner", async (s: AgentStateValue) => plannerUpdate(s.usage?.turns ?? 0, steps, s.usage ?? EMPTY_USAGE))
    .addNode("image_tool", (async (task: { call: { callId: string } }) => ({ results: [toolResult(task.call.callId)] })) as never)
    .addNode("reflect", async (s: AgentStateValue) => reflectUpdate(s))
    .addNode("answer", async () => ({ final: { answer: "LOUPE-1", citations: [], reason: "answered" as const } }))
    .addEdge(START, "planner")
    .addConditionalEdges("planner", (s: AgentStateValue) => (s.reply?.kind === "answer" ? "answer" : s.pending.map((call) => new Send("image_tool", { call, images: s.images }))), ["answer", "image_tool"])
    .addEdge("image_tool", "reflect")
    .addEdge("reflect", "planner")
    .addEdge("answer", END)
    .compile({ checkpointer });
}

const append = <T>() => ({ reducer: (a: T[], b: T[]) => a.concat(b), default: () => [] as T[] });

/** The same graph over a plain Annotation state: the same channels and reducers, no runtime validation. */
export function annotationFloorGraph(steps: number, checkpointer: BaseCheckpointSaver) {
  const State = Annotation.Root({
    question: Annotation<string>,
    imageSources: Annotation<string[]>,
    images: Annotation<AgentStateValue["images"]>(append()),
    conversation: Annotation<Turn[]>(append()),
    plan: Annotation<unknown>,
    pending: Annotation<AgentStateValue["pending"]>,
    results: Annotation<ToolResult[]>(append()),
    toolCalls: Annotation<AgentStateValue["toolCalls"]>(append()),
    usage: Annotation<AgentStateValue["usage"]>,
    reply: Annotation<AgentStateValue["reply"]>,
    exhausted: Annotation<string | null>,
    final: Annotation<unknown>,
  });
  type S = typeof State.State;
  return new StateGraph(State)
    .addNode("planner", async (s: S) => plannerUpdate(s.usage?.turns ?? 0, steps, s.usage ?? EMPTY_USAGE))
    .addNode("image_tool", (async (task: { call: { callId: string } }) => ({ results: [toolResult(task.call.callId)] })) as never)
    .addNode("reflect", async (s: S) => reflectUpdate({ ...s, images: s.images ?? [], toolCalls: s.toolCalls ?? [], usage: s.usage ?? EMPTY_USAGE } as AgentStateValue))
    .addNode("answer", async () => ({ final: { answer: "LOUPE-1", citations: [], reason: "answered" } }))
    .addEdge(START, "planner")
    .addConditionalEdges("planner", (s: S) => (s.reply?.kind === "answer" ? "answer" : (s.pending ?? []).map((call) => new Send("image_tool", { call, images: s.images }))), ["answer", "image_tool"])
    .addEdge("image_tool", "reflect")
    .addEdge("reflect", "planner")
    .addEdge("answer", END)
    .compile({ checkpointer });
}

export type FloorVariant = "zod-memory" | "zod-sqlite" | "annotation-memory";

/** A runner for one floor variant: each call runs a fresh thread of `steps` tool calls, as ask() does. */
export function floorRunner(variant: FloorVariant, steps: number, dir: string): { run: () => Promise<void>; close: () => void } {
  const sqlite = variant.endsWith("sqlite") ? SqliteSaver.fromConnString(join(dir, `floor-${variant}.sqlite`)) : undefined;
  const saver = sqlite ?? new MemorySaver();
  const graph = variant.startsWith("zod") ? zodFloorGraph(steps, saver) : annotationFloorGraph(steps, saver);
  return {
    async run() {
      const config = { configurable: { thread_id: randomUUID() } };
      await graph.getState(config);
      const stream = await graph.stream({ question: "q", imageSources: [] } as never, {
        ...config,
        recursionLimit: 3 * steps + 20,
        durability: "sync",
        streamMode: ["custom"],
      });
      for await (const _ of stream as AsyncIterable<unknown>) void _;
      const state = await graph.getState(config);
      if ((state.values as { toolCalls?: unknown[] }).toolCalls?.length !== steps) throw new Error(`graph floor ${variant}: wrong number of steps`);
    },
    close: () => sqlite?.db.close(),
  };
}
