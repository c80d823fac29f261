// Routing after the planner: answer, fan the calls out to the tool nodes with Send, or go to reflect.
import { Send } from "@langchain/langgraph";
import type { AgentStateValue } from "../src/state.js";
import type { ToolTask } from "./image-tool.js";

export function routeAfterPlanner(state: AgentStateValue): "answer" | "reflect" | Send[] {
  if (state.reply?.kind === "answer") return "answer";
  const runnable = (state.pending ?? []).filter((c) => c.kind !== "invalid");
  if (state.reply?.kind !== "calls" || runnable.length === 0) return "reflect";
  return runnable.map(
    (call) => new Send(call.kind === "image" ? "image_tool" : "search", { call, images: state.images } satisfies ToolTask),
  );
}
