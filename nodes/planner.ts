// Planner node: sets up the conversation on the first turn (optionally with an up-front plan), then asks the model for its next action.
import { describeIssues } from "../src/core/issues.js";
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { z } from "zod/v4";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import { ImageInputError, type ImageRef } from "../src/core/images.js";
import { readImageSource, sourceForState } from "../src/core/image-sources.js";
import {
  dialectRequestOptions,
  parseReply,
  plannerPrompt,
  questionTurn,
  type ImageRefWithModelView,
} from "../src/core/protocol.js";
import { PlanStepSchema, type AgentStateValue, type PendingCall, type PlanStep, type Turn } from "../src/core/state.js";
import { EMPTY_USAGE } from "../src/core/state.js";
import { createToolbox } from "../tools/index.js";
import { approvalsFor, markCallsForApproval } from "./approval.js";
import { emit } from "../src/core/events.js";

/** Reads, checks and stores the input images; they become img_0, img_1, … */
export async function ingestInputs(deps: AgentDeps, sources: string[], maxPixels: number, signal?: AbortSignal): Promise<ImageRefWithModelView[]> {
  const out: ImageRefWithModelView[] = [];
  for (const [i, source] of sources.entries()) {
    const bytes = await (deps.readImage ?? readImageSource)(source, signal);
    let stored;
    try {
      stored = await deps.images.ingest(bytes);
    } catch (err) {
      if (err instanceof ImageInputError) throw new ImageInputError(`image ${source}: ${err.message}`);
      throw err;
    }
    const ref: ImageRef = { id: `img_${i}`, ...stored, parent: null, op: null };
    const view = await deps.images.modelView(stored, maxPixels, { prefetch: true });
    out.push({ ref, view });
  }
  return out;
}

function extractJsonArray(text: string): unknown {
  const body = text.replace(/<think>[\s\S]*?<\/think>/gi, "");
  const start = body.indexOf("[");
  const end = body.lastIndexOf("]");
  if (start < 0 || end <= start) throw new Error("no JSON array found");
  return JSON.parse(body.slice(start, end + 1));
}

/** The question as the agent sees it after a person reviewed the plan: with the approved or edited plan, or the reviewer's note. */
function reviewedPlanQuestion(question: string, plan: PlanStep[] | null, note: string | undefined): string {
  const parts = [question];
  if (plan?.length) parts.push(`Plan:\n${formatPlan(plan)}`);
  if (note) parts.push(`Note from the person reviewing the plan: ${note}`);
  return parts.join("\n\n");
}

export function formatPlan(plan: PlanStep[]): string {
  return plan
    .map((s, i) => `${i + 1}. ${s.description} [${s.tool_name}${Object.keys(s.parameters).length ? ` ${JSON.stringify(s.parameters)}` : ""}]`)
    .join("\n");
}

export function createPlannerNode(deps: AgentDeps) {
  return async function planner(state: AgentStateValue, config: LangGraphRunnableConfig) {
    const settings = runSettings(deps, config.context);
    const model = deps.model(settings);
    const toolbox = createToolbox(deps.search, settings.coords);
    const update: Record<string, unknown> = {};
    const newTurns: Turn[] = [];
    let conversation = state.conversation ?? [];
    let images = state.images ?? [];
    let usage = { ...(state.usage ?? EMPTY_USAGE) };

    if (conversation.length === 0) {
      if (!state.question?.trim()) throw new Error("the question is empty: pass the question to answer");
      // Back from a plan review, the inputs are in state already: show them again, do not add them twice.
      const inputs = images.length
        ? await Promise.all(images.map(async (ref) => ({ ref, view: await deps.images.modelView(ref, settings.maxPixels) })))
        : await ingestInputs(deps, state.imageSources ?? [], settings.maxPixels, config.signal);
      if (!images.length) {
        update.images = images = inputs.map((i) => i.ref);
        // A data: URL input is image bytes: from here on the state keeps a reference to the stored copy.
        update.imageSources = (state.imageSources ?? []).map((source, i) => sourceForState(source, images[i]!));
      }
      let question = state.question;
      const review = state.planReview;
      if (review && review.status !== "pending") {
        question = reviewedPlanQuestion(state.question, state.plan, review.note);
      } else if (settings.plan || approvalsFor(settings, deps.defaults).plan) {
        const plan = await makePlan(deps, settings, state.question, inputs, toolbox.specs, config.signal);
        usage = { ...usage, turns: usage.turns + plan.turns, promptTokens: usage.promptTokens + plan.promptTokens, completionTokens: usage.completionTokens + plan.completionTokens, modelMs: usage.modelMs + plan.ms };
        if (plan.steps) {
          update.plan = plan.steps;
          // A person reviews the plan (approve_plan) before the first action.
          if (approvalsFor(settings, deps.defaults).plan) return { ...update, usage, planReview: { status: "pending" } };
          question = `${state.question}\n\nPlan:\n${formatPlan(plan.steps)}`;
        }
      }
      newTurns.push({ role: "system", dialect: settings.dialect, tools: toolbox.names, coords: settings.coords });
      newTurns.push(questionTurn(question, inputs));
      usage.imagesInContext = inputs.length;
      conversation = [...conversation, ...newTurns];
    }

    const turnIndex = usage.turns;
    emit(config, { event: "model_start", turn: turnIndex });
    const raw = await model.complete(conversation, {
      ...dialectRequestOptions(settings.dialect, toolbox.specs),
      signal: config.signal,
      onRetry: (info) => emit(config, { event: "model_retry", url: model.url, ...info }),
    });
    const parsed = parseReply(settings.dialect, raw, turnIndex);
    newTurns.push(parsed.turn);
    usage = {
      ...usage,
      turns: usage.turns + 1,
      promptTokens: usage.promptTokens + raw.usage.promptTokens,
      completionTokens: usage.completionTokens + raw.usage.completionTokens,
      modelMs: usage.modelMs + raw.ms,
    };

    const imageIds = new Set(images.map((i) => i.id));
    const remaining = Math.max(0, settings.maxToolCalls - usage.toolCalls);
    const validated: PendingCall[] = parsed.calls.map((call, i) => {
      if (i >= remaining) {
        return { index: i, callId: call.id, name: call.name, args: null, kind: "invalid", error: `not run: the budget of ${settings.maxToolCalls} tool calls is used up.` };
      }
      return toolbox.validate(call, i, imageIds);
    });
    const pending = markCallsForApproval(validated, settings, deps.defaults);
    emit(config, { event: "model_end", turn: turnIndex, ms: Math.round(raw.ms), kind: parsed.reply.kind, calls: pending.map((p) => p.name) });
    return { ...update, conversation: newTurns, reply: parsed.reply, pending, usage };
  };
}

const PlanSchema = z.array(PlanStepSchema).min(1).max(12);

/** R1V4 Plan mode: a separate planner call that returns a JSON list of steps; one retry on a malformed plan. */
export async function makePlan(
  deps: AgentDeps,
  settings: ReturnType<typeof runSettings>,
  question: string,
  inputs: ImageRefWithModelView[],
  specs: { name: string }[],
  signal?: AbortSignal,
) {
  const model = deps.model(settings);
  const turns: Turn[] = [
    { role: "system_text", text: plannerPrompt(specs as never) },
    questionTurn(question, inputs),
  ];
  const totals = { turns: 0, promptTokens: 0, completionTokens: 0, ms: 0 };
  for (let attempt = 0; attempt < 2; attempt++) {
    const raw = await model.complete(turns, { signal });
    totals.turns++;
    totals.promptTokens += raw.usage.promptTokens;
    totals.completionTokens += raw.usage.completionTokens;
    totals.ms += raw.ms;
    let problem: string;
    try {
      const parsed = PlanSchema.safeParse(extractJsonArray(raw.content));
      if (parsed.success) return { ...totals, steps: parsed.data };
      problem = describeIssues(parsed.error.issues, { root: "plan" });
    } catch (err) {
      problem = (err as Error).message;
    }
    turns.push({ role: "assistant", text: raw.content });
    turns.push({ role: "user", parts: [{ type: "text", text: `That plan is not valid (${problem}). Output only the JSON array of steps.` }] });
  }
  return { ...totals, steps: null };
}
