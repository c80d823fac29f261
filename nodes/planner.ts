// Planner node: asks the model for its next action (on the first turn, after starting the conversation) and validates the calls it makes.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import type { LoupeConfig } from "../src/core/config.js";
import { emit } from "../src/core/events.js";
import { dialectRequestOptions, parseReply } from "../src/core/protocol.js";
import { addModelUsage, EMPTY_USAGE, type AgentStateUpdate, type AgentStateValue, type ImageRef, type PendingCall, type RawToolCall, type Turn, type Usage } from "../src/core/state.js";
import { modelTurnMessage } from "../src/core/messages.js";
import type { BaseMessage } from "@langchain/core/messages";
import { randomUUID } from "node:crypto";
import { codeAvailability, sandboxOf } from "../tools/code/tool.js";
import { createToolbox, toolboxOfConversation, type Toolbox } from "../tools/index.js";
import { markCallsForApproval } from "./approval.js";
import { startConversation } from "./first-turn.js";
import { askedUpdate, followUp, newAsk } from "./intake.js";

/**
 * The model's calls, validated against the tools and the images there are; calls past the
 * tool-call budget are refused (recorded, never run).
 */
export function validateCalls(calls: RawToolCall[], toolbox: Toolbox, settings: LoupeConfig, toolCallsSoFar: number, images: ImageRef[]): PendingCall[] {
  const remaining = Math.max(0, settings.maxToolCalls - toolCallsSoFar);
  return calls.map((call, i) =>
    i >= remaining
      ? { index: i, callId: call.id, name: call.name, args: null, kind: "invalid", error: `not run: the budget of ${settings.maxToolCalls} tool calls is used up.` }
      : toolbox.validate(call, i, images),
  );
}

/** What comes before the model is asked: the opening turns of a question (first or follow-up), with the state they add. */
interface Opening {
  update: AgentStateUpdate;
  turns: Turn[];
  usage: Usage;
  images: ImageRef[];
  /** The plan waits for a person: the model is not asked yet. */
  paused?: boolean;
}

/** The thread's first question: inputs stored, Plan mode, the system turn and the question (see startConversation). */
async function firstQuestion(deps: AgentDeps, state: AgentStateValue, settings: LoupeConfig, toolbox: Toolbox, signal?: AbortSignal): Promise<Opening> {
  const ask = newAsk(state);
  // Back from a plan review the question was asked already: it is in the question channel.
  const question = ask?.question ?? (state.asked ? state.question : undefined);
  if (!question) throw new Error("the question is empty: pass the question to answer (`question`, or a human message in `messages`)");
  const sources = ask ? ask.sources : (state.imageSources ?? []);
  const started = await startConversation(deps, { ...state, question, imageSources: sources }, settings, toolbox, signal);
  const images = [...(state.images ?? []), ...(started.update.images ?? [])];
  const update: AgentStateUpdate = { ...started.update };
  if (ask) Object.assign(update, ask.message ? { question } : {}, askedUpdate(state, ask, images, sources, deps, started.update.imageSources));
  return { update, turns: started.turns ?? [], usage: started.usage, images, paused: !started.turns };
}

/** The turns to add before asking the model: a first question's, a follow-up's, or none mid-question. */
async function opening(deps: AgentDeps, state: AgentStateValue, settings: LoupeConfig, toolbox: Toolbox, signal?: AbortSignal): Promise<Opening> {
  if ((state.conversation ?? []).length === 0) return firstQuestion(deps, state, settings, toolbox, signal);
  const usage = state.usage ?? EMPTY_USAGE;
  const ask = newAsk(state);
  if (ask) {
    const next = await followUp(deps, state, ask, settings, usage, signal);
    return { update: next.update, turns: [next.turn], usage: next.usage, images: next.images };
  }
  if (state.final) {
    throw new Error("this thread has answered its question and no new one was given: send a new human message (or a new question) to ask again");
  }
  return { update: {}, turns: [], usage, images: state.images ?? [] };
}

export function createPlannerNode(deps: AgentDeps) {
  return async function planner(state: AgentStateValue, config: LangGraphRunnableConfig): Promise<AgentStateUpdate> {
    const settings = runSettings(deps, config.context);
    if (state.reply && state.reply.kind !== "answer") {
      // Only a thread checkpointed mid-turn by a Loupe whose planner also reflected can get here.
      throw new Error("this thread was saved mid-turn by an earlier version of Loupe (its last tool results were never shown to the model) and cannot be resumed by this one; start the question again");
    }
    // The first turn decides whether the code tool is offered; later turns offer what the system turn names.
    const toolbox = (state.conversation ?? []).length === 0
      ? createToolbox(deps.search, settings.coords, { code: (await codeAvailability(sandboxOf(deps), settings.code)).offered })
      : toolboxOfConversation(deps.search, settings.coords, state.conversation ?? []);
    const open = await opening(deps, state, settings, toolbox, config.signal);
    if (open.paused) return { ...open.update, usage: open.usage };

    const model = deps.model(settings);
    const turn = open.usage.turns;
    emit(config, { event: "model_start", turn });
    const raw = await model.complete([...(state.conversation ?? []), ...open.turns], {
      ...dialectRequestOptions(settings.dialect, toolbox.specs),
      signal: config.signal,
      onRetry: (info) => emit(config, { event: "model_retry", url: model.url, ...info }),
    });
    const parsed = parseReply(settings.dialect, raw, turn);
    const usage = addModelUsage(open.usage, raw);
    const validated = validateCalls(parsed.calls, toolbox, settings, usage.toolCalls, open.images);
    const pending = markCallsForApproval(validated, settings, deps.defaults);
    emit(config, { event: "model_end", turn, ms: Math.round(raw.ms), kind: parsed.reply.kind, calls: pending.map((p) => p.name) });
    // The answer's own message is the answer node's; a turn with calls (or an unusable one) is one AI message.
    const said = parsed.reply.kind === "answer" ? [] : [modelTurnMessage(raw.id ?? randomUUID(), parsed.turn.text, raw.reasoning, pending, await model.modelName().catch(() => undefined))];
    const messages = [...((open.update.messages as BaseMessage[] | undefined) ?? []), ...said];
    const reply = raw.id ? { ...parsed.reply, id: raw.id } : parsed.reply;
    return { ...open.update, conversation: [...open.turns, parsed.turn], reply, pending, usage, messages };
  };
}
