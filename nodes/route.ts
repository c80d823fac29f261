// Routing, as pure functions of state: after the planner (review, answer, fan the calls out with Send, or reflect), after a person's review of calls, and after reflect.
import { Send } from "@langchain/langgraph";
import type { AgentStateValue, ImageRef, PendingCall } from "../src/core/state.js";
import type { ToolTask } from "./image-tool.js";

/** Where a turn's calls go: each runnable call to its tool node with Send (image tools and code to image_tool), or to reflect when none can run. */
function dispatch(state: AgentStateValue): "reflect" | Send[] {
  const runnable = (state.pending ?? []).filter((c) => c.kind !== "invalid");
  if (state.reply?.kind !== "calls" || runnable.length === 0) return "reflect";
  return runnable.map(
    (call) => new Send(call.kind === "search" ? "search" : "image_tool", { call, images: imagesNamedBy(call, state.images ?? []) } satisfies ToolTask),
  );
}

/**
 * After the planner: the plan waits for a person → approve_plan; the model answered → answer;
 * calls wait for a person → approve_calls; calls to run → the tools; nothing to run (a format
 * error, only invalid calls) → reflect, which shows the model what went wrong.
 */
export function routeAfterPlanner(state: AgentStateValue): "approve_plan" | "approve_calls" | "answer" | "reflect" | Send[] {
  if (state.planReview?.status === "pending") return "approve_plan";
  if (state.reply?.kind === "answer") return "answer";
  if ((state.pending ?? []).some((c) => c.kind !== "invalid" && c.approval === "required")) return "approve_calls";
  return dispatch(state);
}

/** After a person reviewed the waiting calls: the approved ones run; when all were denied, reflect shows the model why. */
export function routeAfterApproval(state: AgentStateValue): "reflect" | Send[] {
  return dispatch(state);
}

/** After reflect: a budget ran out → answer (the model is asked once more); else the planner's next turn. */
export function routeAfterReflect(state: AgentStateValue): "answer" | "planner" {
  return state.exhausted ? "answer" : "planner";
}

/**
 * The images a call names (`image`, or image_search's `image_paths`): a task carries only those,
 * so what each Send checkpoints stays the same size however many images the run has made. A code
 * cell may open any image of the run, so its task carries them all (references, not bytes).
 */
export function imagesNamedBy(call: PendingCall, images: ImageRef[]): ImageRef[] {
  if (call.kind === "code") return images;
  const args = call.args ?? {};
  const ids = new Set<unknown>([args.image, ...(Array.isArray(args.image_paths) ? args.image_paths : [])]);
  return images.filter((i) => ids.has(i.id));
}
