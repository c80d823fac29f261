// Routing after the planner: a person's review (when asked for), answer, fan the calls out to the tool nodes with Send, or back to the planner to reflect.
import { Send } from "@langchain/langgraph";
import type { ImageRef } from "../src/core/images.js";
import type { AgentStateValue, PendingCall } from "../src/core/state.js";
import type { ToolTask } from "./image-tool.js";

/**
 * After the planner (which reflects on the previous turn first, see nodes/turn.ts): a budget ran
 * out or the model answered → answer; calls to run → the tools (or a person's approval first);
 * nothing to run (a format error, only invalid calls) → the planner again, which shows the model
 * what went wrong.
 */
export function routeAfterPlanner(state: AgentStateValue): "approve_plan" | "approve_calls" | "answer" | "planner" | Send[] {
  if (state.planReview?.status === "pending") return "approve_plan";
  if (state.exhausted || state.reply?.kind === "answer") return "answer";
  const runnable = (state.pending ?? []).filter((c) => c.kind !== "invalid");
  if (state.reply?.kind !== "calls" || runnable.length === 0) return "planner";
  if (runnable.some((c) => c.approval === "required")) return "approve_calls";
  return runnable.map(
    (call) => new Send(call.kind === "image" ? "image_tool" : "search", { call, images: imagesNamedBy(call, state.images ?? []) } satisfies ToolTask),
  );
}

/**
 * The images a call names (`image`, or image_search's `image_paths`): a task carries only those,
 * so what each Send checkpoints stays the same size however many images the run has made.
 */
export function imagesNamedBy(call: PendingCall, images: ImageRef[]): ImageRef[] {
  const args = call.args ?? {};
  const ids = new Set<unknown>([args.image, ...(Array.isArray(args.image_paths) ? args.image_paths : [])]);
  return images.filter((i) => ids.has(i.id));
}
