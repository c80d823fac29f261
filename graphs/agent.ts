// The agent graph as LangGraph Studio and the graph API serve it (see langgraph.json), plus the builders for composition.
import { BUDGET_LIMITS } from "../src/config.js";
import { servedDeps } from "../src/server-deps.js";
import { createAgent, recursionLimitFor } from "./build.js";

export { buildAgentGraph, createAgent, recursionLimitFor, type CreateAgentOptions, type LoupeAgent } from "./build.js";

/**
 * The compiled graph, configured from the environment; the server supplies its own checkpointer.
 * A run's context may raise its budgets, so the step limit fits the largest budgets a context can
 * set (the budgets, not the step limit, end a run): clients need not pass recursion_limit.
 */
export const graph = (() => {
  const deps = servedDeps();
  return createAgent({ deps }).withConfig({
    recursionLimit: recursionLimitFor({ ...BUDGET_LIMITS, approvePlan: true, approveSearch: true, approveWebVisit: true }),
  });
})();
