// The planner-only graph as the LangGraph server serves it (see langgraph.json): R1V4's plan for a question, nothing executed.
import { servedDeps } from "../src/server-deps.js";
import { createPlanOnlyGraph } from "./plan-only.js";

export const graph = createPlanOnlyGraph({ deps: servedDeps() });
