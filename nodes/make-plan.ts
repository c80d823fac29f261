// The plan graph's make_plan node: reads the inputs and asks the model for R1V4's up-front plan, without acting on it.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import { EMPTY_USAGE, type PlanOnlyStateValue } from "../src/core/state.js";
import { createToolbox } from "../tools/index.js";
import { ingestInputs, makePlan } from "./first-turn.js";

export function createMakePlanNode(deps: AgentDeps) {
  return async function makePlanOnly(state: PlanOnlyStateValue, config: LangGraphRunnableConfig) {
    if (!state.question?.trim()) throw new Error("the question is empty: pass the question to plan for");
    const settings = runSettings(deps, config.context);
    const inputs = await ingestInputs(deps, state.imageSources ?? [], settings.maxPixels, config.signal);
    const specs = createToolbox(deps.search, settings.coords).specs;
    const made = await makePlan(deps, settings, state.question, inputs, specs, { ...EMPTY_USAGE, imagesInContext: inputs.length }, config.signal);
    return { images: inputs.map((i) => i.ref), plan: made.steps, usage: made.usage };
  };
}
