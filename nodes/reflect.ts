// Reflect node: joins a turn's tool results, shows them to the model, checks each step the way R1V4 filtered its data, and enforces the budgets.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import type { LoupeConfig } from "../src/core/config.js";
import type { ToolMessage } from "@langchain/core/messages";
import { emit } from "../src/core/events.js";
import { toolResultMessage } from "../src/core/messages.js";
import { canonicalJson, formatErrorTurn, observationTurns, type CallObservation } from "../src/core/protocol.js";
import {
  clearedResults,
  EMPTY_USAGE,
  isBudgetRefusal,
  type AgentStateUpdate,
  type AgentStateValue,
  type ImageRef,
  type PendingCall,
  type ToolCallRecord,
  type ToolResult,
  type Turn,
  type Usage,
} from "../src/core/state.js";

/** A crop whose pixels barely vary (std dev below this, 0–255) is probably blank or missed its target. */
export const BLANK_STDEV = 3;
/** A box covering less than this share of its parent, or under 8 px a side, selects almost nothing. */
export const TINY_BOX_SHARE = 0.0005;
export const CONSECUTIVE_ERROR_LIMIT = 3;

type ProducedImage = ToolResult["images"][number];

/** What reflect has gathered so far in this turn: new image ids, records, notes for the model, usage. */
interface Reflection {
  settings: LoupeConfig;
  images: ImageRef[];
  newImages: ImageRef[];
  records: ToolCallRecord[];
  notes: string[];
  usage: Usage;
  /** Each earlier call's canonical [name, arguments], with its step, to notice repeats. */
  previous: Map<string, number>;
}

/** Notes on a new image that probably missed its target: nearly uniform pixels, or a box that selects almost nothing. */
export function imageNotes(ref: ImageRef, produced: ProducedImage, parent: ImageRef | undefined, coords: string): string[] {
  const notes: string[] = [];
  if (produced.stdev !== undefined && produced.stdev < BLANK_STDEV) {
    notes.push(`${ref.id} is nearly uniform (pixel std dev ${produced.stdev.toFixed(1)}): the box probably missed what you were looking for; check the coordinates (${coords} by default).`);
  }
  if (produced.box && parent) {
    const share = (produced.box.width * produced.box.height) / (parent.width * parent.height);
    if (share < TINY_BOX_SHARE || produced.box.width < 8 || produced.box.height < 8) {
      notes.push(`the box for ${ref.id} selects almost nothing (${produced.box.width}×${produced.box.height} px of ${parent.id}'s ${parent.width}×${parent.height}); make sure the box uses the right coordinate convention.`);
    }
  }
  return notes;
}

/** Names the images a call made (img_N in order) and shows them to the model while the context has room. */
async function takeImages(deps: AgentDeps, r: Reflection, produced: ProducedImage[]): Promise<{ ids: string[]; shown: CallObservation["images"] }> {
  const ids: string[] = [];
  const shown: CallObservation["images"] = [];
  for (const image of produced) {
    const ref: ImageRef = {
      id: `img_${r.images.length}`,
      sha256: image.sha256,
      mime: image.mime,
      width: image.width,
      height: image.height,
      parent: image.parent,
      op: image.op,
      ...(image.path ? { path: image.path } : {}),
    };
    r.images.push(ref);
    r.newImages.push(ref);
    ids.push(ref.id);
    const parent = image.parent ? r.images.find((i) => i.id === image.parent) : undefined;
    r.notes.push(...imageNotes(ref, image, parent, r.settings.coords));
    if (r.usage.imagesInContext < r.settings.maxImagesInContext) {
      shown.push({ ref, view: await deps.images.modelView(image, r.settings.maxPixels) });
      r.usage = { ...r.usage, imagesInContext: r.usage.imagesInContext + 1 };
    } else {
      r.notes.push(`${ref.id} was made but is not shown: the conversation already holds ${r.settings.maxImagesInContext} images. Answer from what you have seen, or search.`);
    }
  }
  return { ids, shown };
}

/** One call's observation and record: its result (or why it did not run), the images it made, and notes on empty or repeated calls. */
async function observeCall(deps: AgentDeps, r: Reflection, call: PendingCall, result: ToolResult | undefined, step: number, config: LangGraphRunnableConfig, toolCallId: string | undefined) {
  const ok = call.kind !== "invalid" && !!result?.ok;
  const text = call.kind === "invalid" ? `Error: ${call.error}` : (result?.text ?? "Error: the call produced no result.");
  const { ids, shown } = await takeImages(deps, r, result?.images ?? []);
  if (ok && result?.resultCount === 0) r.notes.push(`${call.name} found nothing; try other wording or another approach.`);
  r.notes.push(...(result?.notes ?? []));
  if (call.edited) r.notes.push(`the person reviewing call ${step} (${call.name}) changed its arguments: it ran with ${JSON.stringify(call.args)}.`);
  if (call.kind === "code" && result && !ok) r.notes.push(`the code of call ${step} failed; read the error above, fix the code and run it again (each call starts fresh).`);
  const key = canonicalJson([call.name, call.args]);
  const earlier = r.previous.get(key);
  if (earlier !== undefined && call.args) {
    r.notes.push(`call ${step} repeats step ${earlier} exactly; its result is above, so change something instead of repeating it.`);
  }
  r.previous.set(key, step);
  r.records.push({
    step,
    turn: r.usage.turns - 1,
    name: call.name,
    arguments: call.args,
    ok,
    ms: Math.round(result?.ms ?? 0),
    images: ids,
    ...(ok ? {} : { error: text.replace(/^Error: /, "").slice(0, 500) }),
    urls: result?.urls ?? [],
  });
  emit(config, { event: "tool_result", callId: call.callId, name: call.name, step, ok, images: r.images.filter((i) => ids.includes(i.id)) });
  return { ok, observation: { call, toolCallId, text, images: shown } satisfies CallObservation };
}

/** Counts the turn's calls against the budget and notes how many are left, or that the model keeps failing. */
function countCalls(r: Reflection, calls: number, failures: number): void {
  const toolCalls = r.usage.toolCalls + r.records.filter((rec) => !isBudgetRefusal(rec)).length;
  const consecutiveErrors = failures === calls && failures > 0 ? r.usage.consecutiveErrors + failures : 0;
  r.usage = { ...r.usage, toolCalls, consecutiveErrors };
  const left = r.settings.maxToolCalls - toolCalls;
  if (left > 0 && left <= 2) r.notes.push(`${left} tool call${left === 1 ? "" : "s"} left before you must answer.`);
  if (consecutiveErrors >= CONSECUTIVE_ERROR_LIMIT) {
    r.notes.push(`${consecutiveErrors} failed steps in a row: re-read the tool descriptions and the error messages, and change your approach.`);
  }
}

/** Why the run must answer now, or null while budget remains. */
export function budgetExhausted(usage: Usage, settings: Pick<LoupeConfig, "maxToolCalls" | "maxTurns">, lastReplyCalledTools: boolean): string | null {
  if (usage.toolCalls >= settings.maxToolCalls && lastReplyCalledTools) return `You have used all ${settings.maxToolCalls} tool calls.`;
  if (usage.turns >= settings.maxTurns) return `You have used all ${settings.maxTurns} turns.`;
  return null;
}

/** The tool-call ids of the last assistant turn as the model sent them, which the tool messages must answer. */
function modelCallIds(conversation: Turn[]): string[] {
  for (let i = conversation.length - 1; i >= 0; i--) {
    const turn = conversation[i]!;
    if (turn.role === "assistant") return (turn.toolCalls ?? []).map((c) => c.id);
  }
  return [];
}

export function createReflectNode(deps: AgentDeps) {
  return async function reflect(state: AgentStateValue, config: LangGraphRunnableConfig): Promise<AgentStateUpdate> {
    const settings = runSettings(deps, config.context);
    const r: Reflection = {
      settings,
      images: [...(state.images ?? [])],
      newImages: [],
      records: [],
      notes: [],
      usage: { ...(state.usage ?? EMPTY_USAGE) },
      previous: new Map((state.toolCalls ?? []).map((c) => [canonicalJson([c.name, c.arguments]), c.step])),
    };
    const conversation = [];
    // Every call's answer for chat front ends: one tool message per call, in call order.
    const messages: ToolMessage[] = [];
    if (state.reply?.kind === "malformed") {
      r.usage.consecutiveErrors += 1;
      conversation.push(formatErrorTurn(settings.dialect, state.reply.problem ?? "your reply could not be used."));
    } else {
      const results = new Map((state.results ?? []).map((res) => [res.callId, res]));
      const pending = state.pending ?? [];
      const asked = modelCallIds(state.conversation ?? []);
      const observations: CallObservation[] = [];
      let failures = 0;
      for (const call of pending) {
        const step = (state.toolCalls ?? []).length + r.records.length + 1;
        const { ok, observation } = await observeCall(deps, r, call, results.get(call.callId), step, config, asked[call.index]);
        if (!ok) failures++;
        observations.push(observation);
        const record = r.records.at(-1);
        messages.push(toolResultMessage(call, record, observation.text, r.images.filter((i) => record?.images.includes(i.id)), deps.imageUrl));
      }
      countCalls(r, pending.length, failures);
      conversation.push(...observationTurns(settings.dialect, observations, r.notes, settings.toolImages));
    }
    return {
      conversation,
      messages,
      images: r.newImages,
      toolCalls: r.records,
      results: clearedResults(),
      pending: [],
      reply: null,
      usage: r.usage,
      exhausted: budgetExhausted(r.usage, settings, state.reply?.kind === "calls"),
    };
  };
}
