// The graphs langgraph.json serves (`agent` and `plan`), configured from the environment; the server supplies its own checkpointer.
import { createAgent, recursionLimitFor } from "../../graphs/agent.js";
import { createPlanOnlyGraph } from "../../graphs/plan.js";
import { BUDGET_LIMITS } from "../core/config.js";
import { servedDeps } from "./deps.js";

export { buildAgentGraph, createAgent, recursionLimitFor, type CreateAgentOptions, type LoupeAgent } from "../../graphs/agent.js";

/**
 * The agent. A run's context may raise its budgets, so the step limit fits the largest budgets a
 * context can set (the budgets, not the step limit, end a run): clients need not pass recursion_limit.
 */
export const agent = createAgent({ deps: servedDeps() }).withConfig({
  recursionLimit: recursionLimitFor({ ...BUDGET_LIMITS, approvePlan: true, approveSearch: true, approveWebVisit: true }),
});

/** R1V4's up-front plan for a question, nothing executed. */
export const plan = createPlanOnlyGraph({ deps: servedDeps() });

/** The agent under the name `loupe/graph` has always exported. */
export const graph = agent;
