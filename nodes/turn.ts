// The graph's "planner" node: reflect on the last model turn's results (when there was one), then ask the model for its next action.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import type { AgentDeps } from "../src/core/agent-deps.js";
import type { AgentStateValue } from "../src/core/state.js";
import { createPlannerNode } from "./planner.js";
import { createReflectNode } from "./reflect.js";

/** A model turn whose calls (or format error) have not been shown to the model yet. */
export function needsReflection(state: Pick<AgentStateValue, "reply">): boolean {
  return state.reply !== null && state.reply !== undefined && state.reply.kind !== "answer";
}

/**
 * Reflect and plan in one node, so a tool call costs two LangGraph super-steps (this node, then the
 * tool tasks) instead of three: each super-step is a checkpoint and ~1 ms of LangGraph's own work,
 * which benchmark 1 measured as most of Loupe's overhead per step. Reflect's update (observations,
 * notes, new image ids, tool-call records, budgets) is applied first; when a budget has run out the
 * node stops there and routing goes to the answer node, else the planner sees the state with the
 * update applied and its own update is appended to it. Both halves are the unchanged reflect and
 * planner functions, and a resumed run re-runs both (reflect is deterministic and writes nothing
 * outside the state).
 */
export function createTurnNode(deps: AgentDeps) {
  const reflect = createReflectNode(deps);
  const plan = createPlannerNode(deps);
  return async function planner(state: AgentStateValue, config: LangGraphRunnableConfig) {
    if (!needsReflection(state)) return plan(state, config);
    const reflected = await reflect(state, config);
    if (reflected.exhausted) return reflected;
    const after: AgentStateValue = {
      ...state,
      conversation: [...(state.conversation ?? []), ...reflected.conversation],
      images: [...(state.images ?? []), ...reflected.images],
      toolCalls: [...(state.toolCalls ?? []), ...reflected.toolCalls],
      results: [],
      pending: reflected.pending,
      reply: reflected.reply,
      usage: reflected.usage,
      exhausted: reflected.exhausted,
    };
    const planned = (await plan(after, config)) as Record<string, unknown> & { conversation?: AgentStateValue["conversation"]; images?: AgentStateValue["images"] };
    return {
      ...reflected,
      ...planned,
      conversation: [...reflected.conversation, ...(planned.conversation ?? [])],
      images: [...reflected.images, ...(planned.images ?? [])],
    };
  };
}
