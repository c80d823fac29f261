// Plan-only node: reads the inputs and asks the model for R1V4's up-front plan, without acting on it (the `planner` graph).
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import { EMPTY_USAGE, type PlanOnlyStateValue } from "../src/core/state.js";
import { createToolbox } from "../tools/index.js";
import { ingestInputs, makePlan } from "./planner.js";

export function createPlanOnlyNode(deps: AgentDeps) {
  return async function plan(state: PlanOnlyStateValue, config: LangGraphRunnableConfig) {
    if (!state.question?.trim()) throw new Error("the question is empty: pass the question to plan for");
    const settings = runSettings(deps, config.context);
    const inputs = await ingestInputs(deps, state.imageSources ?? [], settings.maxPixels, config.signal);
    const specs = createToolbox(deps.search, settings.coords).specs;
    const made = await makePlan(deps, settings, state.question, inputs, specs, config.signal);
    const usage = { ...EMPTY_USAGE, turns: made.turns, promptTokens: made.promptTokens, completionTokens: made.completionTokens, modelMs: made.ms, imagesInContext: inputs.length };
    return { images: inputs.map((i) => i.ref), plan: made.steps, usage };
  };
}
