// Builds the plan graph: question and images → R1V4's up-front plan (one node, make_plan; nothing is executed).
import { END, START, StateGraph, type BaseCheckpointSaver } from "@langchain/langgraph";
import { AnyRunContext, type AgentDeps } from "../src/core/agent-deps.js";
import { PlanInput, PlanOnlyOutput, PlanOnlyState } from "../src/core/state.js";
import { createMakePlanNode } from "../nodes/make-plan.js";

export function buildPlanOnlyGraph(deps: AgentDeps) {
  return new StateGraph(PlanOnlyState, { input: PlanInput, output: PlanOnlyOutput, context: AnyRunContext })
    .addNode("make_plan", createMakePlanNode(deps))
    .addEdge(START, "make_plan")
    .addEdge("make_plan", END);
}

export function createPlanOnlyGraph({ deps, checkpointer }: { deps: AgentDeps; checkpointer?: BaseCheckpointSaver | boolean }) {
  return buildPlanOnlyGraph(deps).compile({ checkpointer, name: "loupe-plan" });
}
