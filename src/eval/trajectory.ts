// A checkpointed thread read back as a trajectory: steps of thinking, tool calls with their results and images, observations, the answer.
import type { ImageRef } from "../core/images.js";
import type { AgentStateValue, FinalAnswer, Part, PlanStep, ToolCallRecord, Turn } from "../core/state.js";
import { toPixelBox, type PixelBox } from "../../tools/image-ops.js";
import type { Coords } from "../core/config.js";
import { extractAnswer, extractThink } from "../core/protocol.js";
import { withEmptyChannels } from "../core/state.js";

export interface TrajImage extends ImageRef {
  /** For crops and zooms: the region of the parent it shows, in the parent's pixels. */
  box?: PixelBox;
}

export interface TrajCall {
  id: string;
  name: string;
  /** The arguments exactly as the model wrote them. */
  rawArguments: string;
  /** The tool-call record (ok, error, produced images, urls); missing if the run stopped before the call was reflected. */
  record?: ToolCallRecord;
}

export interface TrajStep {
  /** The assistant turn's full text. */
  text: string;
  think: string;
  kind: "calls" | "answer" | "malformed";
  calls: TrajCall[];
  /** The <answer> text (or the plain reply the agent took as the answer). */
  answer?: string;
  /** What the model was told was wrong with the reply (malformed steps). */
  problem?: string;
  /** Text of the observation that followed (tool messages, notes). */
  observation: string;
  /** Ids of the images the observation showed. */
  shownImages: string[];
}

export interface Trajectory {
  threadId: string;
  question: string;
  dialect: "tools" | "tags";
  coords: Coords;
  tools: string[];
  plan: PlanStep[] | null;
  images: TrajImage[];
  /** Image parts of the question turn (what the model was shown first). */
  questionParts: Part[];
  steps: TrajStep[];
  final: { answer: string; reason: FinalAnswer["reason"] } | null;
  /** The text inside the final reply's <answer> tag (read as the agent reads it), or null when it has none. */
  answerTag: string | null;
  usage: AgentStateValue["usage"] | null;
  toolCalls: ToolCallRecord[];
  conversation: Turn[];
}

/** What reads a thread's state: the compiled agent (its getState rebuilds every channel, however the checkpointer stores it). */
export interface ThreadReader {
  getState(config: { configurable: { thread_id: string } }): Promise<{ values: unknown }>;
}

/** The latest checkpointed state of a thread, or null when the thread does not exist. */
export async function readThreadState(reader: ThreadReader, threadId: string): Promise<AgentStateValue | null> {
  const snapshot = await reader.getState({ configurable: { thread_id: threadId } });
  const values = snapshot.values as Partial<AgentStateValue> | undefined;
  if (!values || values.question === undefined) return null;
  // Channels never written have no value; give them their empty values.
  return withEmptyChannels(values);
}

const FORMAT_ERROR = /^(?:<(?:observation|tool_response)>\s*)?Format error: ([\s\S]*?)(?:\s*<\/(?:observation|tool_response)>)?$/;

function partsText(parts: Part[]): string {
  return parts
    .filter((p): p is Extract<Part, { type: "text" }> => p.type === "text")
    .map((p) => p.text)
    .join("\n");
}

function tagCalls(text: string, turnIndex: number): TrajCall[] {
  return [...text.matchAll(/<tool_call>([\s\S]*?)<\/tool_call>/gi)].map((m, i) => {
    const body = m[1]!.trim();
    let name = "";
    let args = body;
    try {
      const parsed = JSON.parse(body) as { name?: unknown; arguments?: unknown };
      name = typeof parsed.name === "string" ? parsed.name : "";
      args = parsed.arguments === undefined ? "{}" : typeof parsed.arguments === "string" ? parsed.arguments : JSON.stringify(parsed.arguments);
    } catch {
      // kept raw; the step is malformed anyway
    }
    return { id: `call_${turnIndex}_${i}`, name, rawArguments: args };
  });
}


type AssistantTurn = Extract<Turn, { role: "assistant" }>;

/** The step of one assistant turn: its calls (native, or <tool_call> tags), or its answer, or what was wrong with it. */
function assistantStep(turn: AssistantTurn, next: Turn | undefined, dialect: Trajectory["dialect"], assistantIndex: number): TrajStep {
  const nextText = next?.role === "user" ? partsText(next.parts).trim() : "";
  const formatError = FORMAT_ERROR.exec(nextText);
  const calls: TrajCall[] = turn.toolCalls?.length
    ? turn.toolCalls.map((c) => ({ id: c.id, name: c.name, rawArguments: c.arguments }))
    : dialect === "tags"
      ? tagCalls(turn.text, assistantIndex)
      : [];
  let kind: TrajStep["kind"];
  if (formatError) kind = "malformed";
  else if (calls.length) kind = "calls";
  else kind = "answer";
  const step: TrajStep = { text: turn.text, think: extractThink(turn.text), kind, calls: kind === "calls" ? calls : [], observation: "", shownImages: [] };
  if (formatError) step.problem = (formatError[1] ?? "").trim();
  if (kind === "answer") step.answer = extractAnswer(turn.text) ?? turn.text.replace(/<think>[\s\S]*?(<\/think>|$)/gi, "").trim();
  return step;
}

/** Adds a tool or user turn to the observation of the step it follows (a malformed step's correction is its problem, not an observation). */
function observe(step: TrajStep, turn: Turn): void {
  if (turn.role === "tool") {
    const parts = turn.parts ?? [];
    step.observation += `${step.observation ? "\n\n" : ""}${[turn.text, ...(parts.length ? [partsText(parts)] : [])].join("\n")}`;
    for (const p of parts) if (p.type === "image") step.shownImages.push(p.id);
  } else if (turn.role === "user") {
    const text = partsText(turn.parts);
    if (step.kind !== "malformed") step.observation += `${step.observation ? "\n\n" : ""}${text}`;
    for (const p of turn.parts) if (p.type === "image") step.shownImages.push(p.id);
  }
}

/** The conversation as steps, each call joined with its tool-call record in order; and the question turn's parts. */
function conversationSteps(conversation: Turn[], records: ToolCallRecord[], dialect: Trajectory["dialect"]): { steps: TrajStep[]; questionParts: Part[] } {
  const steps: TrajStep[] = [];
  let questionParts: Part[] | undefined;
  let recordAt = 0;
  for (const [i, turn] of conversation.entries()) {
    if (turn.role === "user" && !questionParts) {
      questionParts = turn.parts;
    } else if (turn.role === "assistant") {
      const step = assistantStep(turn, conversation[i + 1], dialect, steps.length);
      for (const call of step.calls) {
        const record = records[recordAt];
        if (record) {
          call.record = record;
          recordAt++;
        }
      }
      steps.push(step);
    } else {
      const step = steps.at(-1);
      if (step) observe(step, turn);
    }
  }
  return { steps, questionParts: questionParts ?? [] };
}

/** Sets the box of each crop and zoom, in the parent's pixels, from the call's arguments. */
function boxCrops(records: ToolCallRecord[], byId: Map<string, TrajImage>, coords: Coords): void {
  for (const record of records) {
    if ((record.name !== "crop" && record.name !== "zoom") || !record.ok || !record.arguments) continue;
    const parent = byId.get(String(record.arguments.image ?? ""));
    const child = record.images[0] ? byId.get(record.images[0]) : undefined;
    if (!parent || !child) continue;
    try {
      child.box = toPixelBox(record.arguments.bbox as number[], (record.arguments.coords as Coords | undefined) ?? coords, parent.width, parent.height, parent.id);
    } catch {
      // the call succeeded, so this does not happen; leave the box out if it does
    }
  }
}

/** Builds the trajectory of a thread's state: steps joined with the tool-call records, boxes worked out for crops and zooms. */
export function toTrajectory(threadId: string, state: AgentStateValue): Trajectory {
  const conversation = state.conversation ?? [];
  const system = conversation.find((t) => t.role === "system") as Extract<Turn, { role: "system" }> | undefined;
  const dialect = system?.dialect ?? "tools";
  const coords = (system?.coords ?? "rel1000") as Coords;
  const images: TrajImage[] = (state.images ?? []).map((i) => ({ ...i }));
  const records = [...(state.toolCalls ?? [])];
  const { steps, questionParts } = conversationSteps(conversation, records, dialect);
  boxCrops(records, new Map(images.map((i) => [i.id, i])), coords);
  const lastAssistant = [...conversation].reverse().find((t) => t.role === "assistant") as AssistantTurn | undefined;
  return {
    threadId,
    question: state.question,
    dialect,
    coords,
    tools: system?.tools ?? [],
    plan: state.plan ?? null,
    images,
    questionParts,
    steps,
    final: state.final ? { answer: state.final.answer, reason: state.final.reason } : null,
    answerTag: state.final && lastAssistant ? extractAnswer(lastAssistant.text) : null,
    usage: state.usage ?? null,
    toolCalls: records,
    conversation,
  };
}

/** The region an image shows in its root (input) image's pixels, following crops and zooms; null after other operations. */
export function regionInRoot(image: TrajImage, byId: Map<string, TrajImage>): { root: string; x: number; y: number; w: number; h: number } | null {
  if (!image.parent) return { root: image.id, x: 0, y: 0, w: image.width, h: image.height };
  const parent = byId.get(image.parent);
  if (!parent) return null;
  const up = regionInRoot(parent, byId);
  if (!up) return null;
  // Enhancing, resizing or drawing on an image keeps what region it shows.
  if (!image.box) return /^(adjust|resize|annotate)\b/.test(image.op ?? "") ? up : null;
  const sx = up.w / parent.width;
  const sy = up.h / parent.height;
  return { root: up.root, x: up.x + image.box.left * sx, y: up.y + image.box.top * sy, w: image.box.width * sx, h: image.box.height * sy };
}

export function iou(a: { x: number; y: number; w: number; h: number }, b: { x: number; y: number; w: number; h: number }): number {
  const x1 = Math.max(a.x, b.x);
  const y1 = Math.max(a.y, b.y);
  const x2 = Math.min(a.x + a.w, b.x + b.w);
  const y2 = Math.min(a.y + a.h, b.y + b.h);
  const inter = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  const union = a.w * a.h + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
}
