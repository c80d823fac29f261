// Custom stream events the nodes emit (tool calls starting and finishing, model turns) for the CLI and API clients.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";

export type AgentEvent =
  | { event: "model_start"; turn: number }
  | { event: "model_end"; turn: number; ms: number; kind: string; calls: string[] }
  | { event: "model_retry"; url: string; attempt: number; delayMs: number; error: string }
  | { event: "tool_start"; callId: string; name: string; arguments: Record<string, unknown> | null }
  | { event: "tool_end"; callId: string; name: string; arguments: Record<string, unknown> | null; ok: boolean; ms: number; summary: string; images?: Array<{ sha256: string; width: number; height: number }> }
  /** A tool call as recorded, once reflect has named the images it made (img_N, the ids the model and citations use). */
  | { event: "tool_result"; callId: string; name: string; step: number; ok: boolean; images: Array<{ id: string; sha256: string; mime: string; width: number; height: number; parent: string | null; op: string | null }> }
  | { event: "answer"; answer: string };

export function emit(config: LangGraphRunnableConfig, event: AgentEvent): void {
  config.writer?.(event);
}
