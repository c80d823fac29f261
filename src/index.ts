// Loupe as a library: the agent graph's builder, a factory for a compiled agent on your model, search providers, stores and checkpointer, and the typed input, output and events.
import type { BaseCheckpointSaver, BaseStore } from "@langchain/langgraph";
import { createAgent } from "../graphs/agent.js";
import type { AgentDeps } from "./core/agent-deps.js";
import { createDeps } from "./runtime/deps.js";

export { buildAgentGraph, createAgent, recursionLimitFor, type CreateAgentOptions, type LoupeAgent } from "../graphs/agent.js";
export { buildPlanOnlyGraph, createPlanOnlyGraph } from "../graphs/plan.js";
export {
  ConfigError,
  ENV_VARS,
  LoupeConfigSchema,
  resolveConfig,
  resolveSecrets,
  RUN_CONTEXT_KEYS,
  RunContextSchema,
  runContextOf,
  type LoupeConfig,
  type LoupeConfigInput,
  type LoupeSecrets,
  type RunContext,
} from "./core/config.js";
export { AnyRunContext, runSettings, type AgentDeps } from "./core/agent-deps.js";
export { createDeps, type RuntimeDeps } from "./runtime/deps.js";
export { ImageStore, ImageInputError, type ImageRef } from "./core/images.js";
export { OpenAICompatibleModel, ModelServerError, type ModelClient } from "./core/model.js";
export type { SearchProvider } from "../tools/search/provider.js";
export {
  AgentInput,
  AgentOutput,
  AgentState,
  type AgentInputValue,
  type AgentOutputValue,
  type AgentStateValue,
  type Citation,
  type FinalAnswer,
  type PlanStep,
} from "./core/state.js";
export { ask, RunError, RunPaused, type AskOptions, type AskResult } from "./run/ask.js";
import { loupeParts, type LoupeSubagentOptions } from "./run/loupe-tool.js";
export { createLoupeNode, createLoupeTool, DEFAULT_LOUPE_TOOL_DESCRIPTION, loupeAnswerText, loupeInputFromMessages, LoupeToolError, type LoupeNodeOptions, type LoupeSubagentOptions, type LoupeToolOptions } from "./run/loupe-tool.js";
export type { AgentEvent } from "./core/events.js";
export { ApprovalDecisionSchema, type ApprovalDecision, type ApprovalRequest } from "../nodes/approval.js";

/** createLoupeAgent's options: the settings and parts of createLoupeTool's (minus where images may come from), and the checkpointer and store. */
export interface LoupeAgentOptions extends Omit<LoupeSubagentOptions, "imageAllowHosts" | "imageDownload"> {
  /** Checkpointer; default none, so a parent graph's checkpointer is used when this is its subgraph. */
  checkpointer?: BaseCheckpointSaver | boolean;
  store?: BaseStore;
}

/**
 * A compiled Loupe agent. Close `deps` when done (it holds the search cache and any database pool).
 *
 * @example
 * const { agent, deps } = createLoupeAgent({ config: { modelUrl: "http://gpu:8000/v1" }, checkpointer: new MemorySaver() });
 * const out = await agent.invoke({ question: "What does the sign say?", imageSources: ["https://…/photo.jpg"] },
 *   { configurable: { thread_id: "t1" } });
 * console.log(out.final?.answer);
 * await deps.close();
 */
export function createLoupeAgent(options: LoupeAgentOptions = {}) {
  const { config, secrets, overrides } = loupeParts(options);
  const deps: AgentDeps = createDeps(config, secrets, overrides);
  const agent = createAgent({ deps, checkpointer: options.checkpointer, store: options.store });
  return { agent, deps, config };
}
