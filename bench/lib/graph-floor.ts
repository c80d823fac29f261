// The floor under Loupe's per-step cost: LangGraph alone running Loupe's graph shape (planner → a
// Send to a tool node → reflect: three super-steps per tool call) with Loupe's state channels and
// state updates of Loupe's size, but nodes that do no work. What this costs per step, no change
// inside Loupe's nodes can remove. One variant keeps the earlier shape (reflect folded into the
// planner node, two super-steps per call) to show what the reflect node's own super-step costs.
import { Annotation, DeltaChannel, END, MemorySaver, Send, START, StateGraph, type BaseCheckpointSaver } from "@langchain/langgraph";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { LoupeSqliteSaver } from "../../src/runtime/checkpointer.js";
import { AgentState } from "../../src/core/state.js";
import { clearedResults, EMPTY_USAGE, type AgentStateValue, type ToolResult, type Turn } from "../../src/core/state.js";
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

function values(s: Partial<AgentStateValue>): AgentStateValue {
  return { ...s, images: s.images ?? [], toolCalls: s.toolCalls ?? [], pending: s.pending ?? [], usage: s.usage ?? EMPTY_USAGE } as AgentStateValue;
}

/** The planner node as Loupe has it: reflect on the last turn (when there was one), then plan. */
async function reflectThenPlan(s: Partial<AgentStateValue>, steps: number) {
  const state = values(s);
  if (!state.reply) return plannerUpdate(state.usage.turns, steps, state.usage);
  const reflected = reflectUpdate(state);
  const planned = plannerUpdate(reflected.usage.turns, steps, reflected.usage);
  return { ...reflected, ...planned, conversation: [...reflected.conversation, ...planned.conversation] };
}

const sendTools = (s: Partial<AgentStateValue>) =>
  s.reply?.kind === "answer" ? "answer" : values(s).pending.map((call) => new Send("image_tool", { call, images: values(s).images.slice(0, 1) }));

const appendAll = (current: unknown[], writes: unknown[][]) => current.concat(...writes);

/** The same channels as AgentState (delta channels for the lists), with no validation of updates. */
const AnnotationState = Annotation.Root({
  question: Annotation<string>,
  imageSources: Annotation<string[]>,
  images: new DeltaChannel(appendAll) as unknown as ReturnType<typeof Annotation<AgentStateValue["images"]>>,
  conversation: new DeltaChannel(appendAll) as unknown as ReturnType<typeof Annotation<Turn[]>>,
  plan: Annotation<unknown>,
  planReview: Annotation<unknown>,
  pending: Annotation<AgentStateValue["pending"]>,
  results: Annotation<ToolResult[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
  toolCalls: new DeltaChannel(appendAll) as unknown as ReturnType<typeof Annotation<AgentStateValue["toolCalls"]>>,
  usage: Annotation<AgentStateValue["usage"]>,
  reply: Annotation<AgentStateValue["reply"]>,
  exhausted: Annotation<string | null>,
  final: Annotation<unknown>,
});

function graphOf(state: typeof AgentState | typeof AnnotationState, steps: number, checkpointer: BaseCheckpointSaver | false, superSteps: 2 | 3, onTool: () => void) {
  const tool = (async (task: { call: { callId: string } }) => {
    onTool();
    return { results: [toolResult(task.call.callId)] };
  }) as never;
  const answer = async () => ({ final: { answer: "LOUPE-1", citations: [], reason: "answered" as const } });
  if (superSteps === 2) {
    return new StateGraph(state as typeof AgentState)
      .addNode("planner", async (s: Partial<AgentStateValue>) => reflectThenPlan(s, steps))
      .addNode("image_tool", tool)
      .addNode("answer", answer)
      .addEdge(START, "planner")
      .addConditionalEdges("planner", sendTools as never, ["answer", "image_tool"])
      .addEdge("image_tool", "planner")
      .addEdge("answer", END)
      .compile({ checkpointer });
  }
  return new StateGraph(state as typeof AgentState)
    .addNode("planner", async (s: Partial<AgentStateValue>) => plannerUpdate(values(s).usage.turns, steps, values(s).usage))
    .addNode("image_tool", tool)
    .addNode("reflect", async (s: Partial<AgentStateValue>) => reflectUpdate(values(s)))
    .addNode("answer", answer)
    .addEdge(START, "planner")
    .addConditionalEdges("planner", sendTools as never, ["answer", "image_tool"])
    .addEdge("image_tool", "reflect")
    .addEdge("reflect", "planner")
    .addEdge("answer", END)
    .compile({ checkpointer });
}

export type FloorVariant = "none" | "annotation-memory" | "schema-memory" | "schema-sqlite" | "schema-memory-2";

export const FLOOR_VARIANTS: FloorVariant[] = ["none", "annotation-memory", "schema-memory", "schema-sqlite", "schema-memory-2"];

/** A runner for one floor variant: each call runs a fresh thread of `steps` tool calls, as ask() does. */
export function floorRunner(variant: FloorVariant, steps: number, dir: string): { run: () => Promise<void>; close: () => void } {
  const sqlite = variant === "schema-sqlite" ? LoupeSqliteSaver.fromConnString(join(dir, `floor-${variant}.sqlite`)) : undefined;
  const saver: BaseCheckpointSaver | false = variant === "none" ? false : (sqlite ?? new MemorySaver());
  const state = variant === "none" || variant === "annotation-memory" ? AnnotationState : AgentState;
  let toolRuns = 0;
  const graph = graphOf(state, steps, saver, variant === "schema-memory-2" ? 2 : 3, () => toolRuns++);
  return {
    async run() {
      toolRuns = 0;
      const config = { configurable: { thread_id: randomUUID() } };
      if (saver) await graph.getState(config);
      const stream = await graph.stream({ question: "q", imageSources: [] } as never, {
        ...config,
        recursionLimit: 4 * steps + 20,
        durability: "sync",
        streamMode: ["custom"],
      });
      for await (const _ of stream as AsyncIterable<unknown>) void _;
      if (saver) {
        const toolCalls = ((await graph.getState(config)).values as Partial<AgentStateValue>).toolCalls;
        if (toolCalls?.length !== steps) throw new Error(`graph floor ${variant}: ${toolCalls?.length} tool calls in the state instead of ${steps}`);
      }
      if (toolRuns !== steps) throw new Error(`graph floor ${variant}: ${toolRuns} tool runs instead of ${steps}`);
    },
    close: () => sqlite?.db.close(),
  };
}
