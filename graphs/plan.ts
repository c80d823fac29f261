// Builds the planner-only graph: question and images → R1V4 plan (one node; nothing is executed).
import { END, START, StateGraph, type BaseCheckpointSaver } from "@langchain/langgraph";
import { LoupeConfigSchema } from "../src/core/config.js";
import type { AgentDeps } from "../src/core/agent-deps.js";
import { AgentInput, PlanOnlyOutput, PlanOnlyState } from "../src/core/state.js";
import { createPlanOnlyNode } from "../nodes/plan-only.js";

export function buildPlanOnlyGraph(deps: AgentDeps) {
  return new StateGraph(PlanOnlyState, { input: AgentInput, output: PlanOnlyOutput, context: LoupeConfigSchema })
    .addNode("make_plan", createPlanOnlyNode(deps))
    .addEdge(START, "make_plan")
    .addEdge("make_plan", END);
}

export function createPlanOnlyGraph({ deps, checkpointer }: { deps: AgentDeps; checkpointer?: BaseCheckpointSaver | boolean }) {
  return buildPlanOnlyGraph(deps).compile({ checkpointer, name: "loupe-planner" });
}
