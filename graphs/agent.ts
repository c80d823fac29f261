// Builds the agent graph, wiring only: planner → image_tool / search (fanned out with Send) → reflect → planner | answer.
import { END, START, StateGraph, type BaseCheckpointSaver, type BaseStore } from "@langchain/langgraph";
import { AnyRunContext, type AgentDeps } from "../src/core/agent-deps.js";
import type { LoupeConfig } from "../src/core/config.js";
import { AgentInput, AgentOutput, AgentState } from "../src/core/state.js";
import { createAnswerNode } from "../nodes/answer.js";
import { createApproveCallsNode, createApprovePlanNode } from "../nodes/approval.js";
import { createImageToolNode } from "../nodes/image-tool.js";
import { createPlannerNode } from "../nodes/planner.js";
import { createReflectNode } from "../nodes/reflect.js";
import { routeAfterApproval, routeAfterPlanner, routeAfterReflect } from "../nodes/route.js";
import { createSearchNode } from "../nodes/search.js";

/** The uncompiled graph, for parents that compile it with their own checkpointer and store. */
export function buildAgentGraph(deps: AgentDeps) {
  return new StateGraph(AgentState, { input: AgentInput, output: AgentOutput, context: AnyRunContext })
    .addNode("planner", createPlannerNode(deps))
    .addNode("image_tool", createImageToolNode(deps) as never)
    .addNode("search", createSearchNode(deps) as never)
    .addNode("reflect", createReflectNode(deps))
    .addNode("answer", createAnswerNode(deps))
    .addNode("approve_plan", createApprovePlanNode())
    .addNode("approve_calls", createApproveCallsNode())
    .addEdge(START, "planner")
    .addConditionalEdges("planner", routeAfterPlanner, ["approve_plan", "approve_calls", "answer", "reflect", "image_tool", "search"])
    .addEdge("approve_plan", "planner")
    .addConditionalEdges("approve_calls", routeAfterApproval, ["reflect", "image_tool", "search"])
    .addEdge("image_tool", "reflect")
    .addEdge("search", "reflect")
    .addConditionalEdges("reflect", routeAfterReflect, ["planner", "answer"])
    .addEdge("answer", END);
}

export interface CreateAgentOptions {
  deps: AgentDeps;
  checkpointer?: BaseCheckpointSaver | boolean;
  /** LangGraph's long-term store, for parents and nodes that use one (Loupe's own nodes do not). */
  store?: BaseStore;
}

/** A compiled agent with the given dependencies, checkpointer and store. */
export function createAgent({ deps, checkpointer, store }: CreateAgentOptions) {
  return buildAgentGraph(deps).compile({ checkpointer, store, name: "loupe" });
}

export type LoupeAgent = ReturnType<typeof createAgent>;

/**
 * LangGraph's step limit for a run: each tool turn is three super-steps (planner, tools, reflect),
 * four when calls wait for approval; the limit allows one more per turn, so 20+ tool calls never
 * overrun it (the budgets, not this limit, end a run).
 */
export function recursionLimitFor(
  settings: Pick<LoupeConfig, "maxTurns" | "maxToolCalls"> & Partial<Pick<LoupeConfig, "approvePlan" | "approveSearch" | "approveWebVisit">>,
): number {
  const perTurn = settings.approveSearch || settings.approveWebVisit ? 5 : 4;
  return perTurn * Math.max(settings.maxTurns, settings.maxToolCalls) + perTurn * (settings.maxToolCalls > 0 ? 1 : 0) + (settings.approvePlan ? 2 : 0) + 10;
}

