// The agent graph as LangGraph Studio and the graph API serve it (see langgraph.json), plus the builders for composition.
import { loadDotEnv, resolveConfig, resolveSecrets } from "../src/config.js";
import { createDeps } from "../src/deps.js";
import { createAgent } from "./build.js";

export { buildAgentGraph, createAgent, recursionLimitFor, type CreateAgentOptions, type LoupeAgent } from "./build.js";

/** The compiled graph, configured from the environment; the server supplies its own checkpointer. */
export const graph = (() => {
  loadDotEnv();
  return createAgent({ deps: createDeps(resolveConfig(), resolveSecrets()) });
})();
