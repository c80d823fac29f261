// Planner node: asks the model for its next action (on the first turn, after starting the conversation) and validates the calls it makes.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import type { LoupeConfig } from "../src/core/config.js";
import { emit } from "../src/core/events.js";
import { dialectRequestOptions, parseReply } from "../src/core/protocol.js";
import { addModelUsage, EMPTY_USAGE, type AgentStateUpdate, type AgentStateValue, type ImageRef, type PendingCall, type RawToolCall, type Turn } from "../src/core/state.js";
import { codeAvailability, sandboxOf } from "../tools/code/tool.js";
import { createToolbox, toolboxOfConversation, type Toolbox } from "../tools/index.js";
import { markCallsForApproval } from "./approval.js";
import { startConversation, type ConversationStart } from "./first-turn.js";

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

export function createPlannerNode(deps: AgentDeps) {
  return async function planner(state: AgentStateValue, config: LangGraphRunnableConfig): Promise<AgentStateUpdate> {
    const settings = runSettings(deps, config.context);
    if (state.reply && state.reply.kind !== "answer") {
      // Only a thread checkpointed mid-turn by a Loupe whose planner also reflected can get here.
      throw new Error("this thread was saved mid-turn by an earlier version of Loupe (its last tool results were never shown to the model) and cannot be resumed by this one; start the question again");
    }
    const first = (state.conversation ?? []).length === 0;
    // The first turn decides whether the code tool is offered; later turns offer what the system turn names.
    const toolbox = first
      ? createToolbox(deps.search, settings.coords, { code: (await codeAvailability(sandboxOf(deps), settings.code)).offered })
      : toolboxOfConversation(deps.search, settings.coords, state.conversation ?? []);
    let start: ConversationStart["update"] = {};
    const opening: Turn[] = [];
    let usage = state.usage ?? EMPTY_USAGE;
    let images = state.images ?? [];
    if (first) {
      const started = await startConversation(deps, state, settings, toolbox, config.signal);
      if (!started.turns) return { ...started.update, usage: started.usage };
      ({ update: start, usage } = started);
      opening.push(...started.turns);
      images = [...images, ...(start.images ?? [])];
    }

    const model = deps.model(settings);
    const turn = usage.turns;
    emit(config, { event: "model_start", turn });
    const raw = await model.complete([...(state.conversation ?? []), ...opening], {
      ...dialectRequestOptions(settings.dialect, toolbox.specs),
      signal: config.signal,
      onRetry: (info) => emit(config, { event: "model_retry", url: model.url, ...info }),
    });
    const parsed = parseReply(settings.dialect, raw, turn);
    usage = addModelUsage(usage, raw);
    const validated = validateCalls(parsed.calls, toolbox, settings, usage.toolCalls, images);
    const pending = markCallsForApproval(validated, settings, deps.defaults);
    emit(config, { event: "model_end", turn, ms: Math.round(raw.ms), kind: parsed.reply.kind, calls: pending.map((p) => p.name) });
    return { ...start, conversation: [...opening, parsed.turn], reply: parsed.reply, pending, usage };
  };
}
