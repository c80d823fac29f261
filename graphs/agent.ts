// The agent graph as LangGraph Studio and the graph API serve it (see langgraph.json), plus the builders for composition.
import { servedDeps } from "../src/server-deps.js";
import { createAgent, recursionLimitFor } from "./build.js";

export { buildAgentGraph, createAgent, recursionLimitFor, type CreateAgentOptions, type LoupeAgent } from "./build.js";

/**
 * The compiled graph, configured from the environment; the server supplies its own checkpointer.
 * Its step limit fits the configured budgets, so clients need not pass recursion_limit.
 */
export const graph = (() => {
  const deps = servedDeps();
  return createAgent({ deps }).withConfig({ recursionLimit: recursionLimitFor(deps.defaults) });
})();
