// The first turn's set-up, a step of the planner node (and, for ingestInputs and makePlan, of the plan graph's make_plan node): input images into the store, R1V4's Plan mode, the opening turns.
import { z } from "zod/v4";
import type { AgentDeps } from "../src/core/agent-deps.js";
import { inputImageCountProblem, type LoupeConfig } from "../src/core/config.js";
import { ImageInputError, type ProbedImage } from "../src/core/images.js";
import { describeSource, filePathOf, readImageSource, sourceForState } from "../src/core/image-sources.js";
import { describeIssues } from "../src/core/issues.js";
import { planModePrompt, questionTurn, type ImageRefWithModelView, type ToolSpec } from "../src/core/protocol.js";
import { addModelUsage, EMPTY_USAGE, PlanStepSchema, type AgentStateValue, type ImageRef, type PlanReview, type PlanStep, type Turn, type Usage } from "../src/core/state.js";
import { CODE_TOOL_NAME, promptLimits, questionPaths } from "../tools/code/tool.js";
import { approvalsFor } from "./approval.js";

/** Runs a step on one input image, naming the image in an ImageInputError (a data: URL by its type and size). */
async function forSource<T>(source: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof ImageInputError) throw new ImageInputError(`image ${describeSource(source)}: ${err.message}`);
    throw err;
  }
}

/**
 * Reads, checks and stores the input images; they become img_0, img_1, … (from img_<firstIndex> for a follow-up's). Refused before any is
 * decoded or the model is asked: more images than a conversation may show (maxImages), and images
 * whose headers add up to more pixels than the store takes for one question.
 */
export async function ingestInputs(
  deps: AgentDeps,
  sources: string[],
  maxPixels: number,
  signal?: AbortSignal,
  maxImages = deps.defaults.maxImagesInContext,
  firstIndex = 0,
): Promise<ImageRefWithModelView[]> {
  const tooMany = inputImageCountProblem(sources.length, maxImages);
  if (tooMany) throw new ImageInputError(tooMany);
  const inputs: Array<{ source: string; bytes: Buffer; probed: ProbedImage }> = [];
  for (const source of sources) {
    const bytes = await (deps.readImage ?? readImageSource)(source, signal);
    inputs.push({ source, bytes, probed: await forSource(source, () => deps.images.probe(bytes)) });
  }
  deps.images.checkTotalInputPixels(inputs.map((input) => input.probed));
  const out: ImageRefWithModelView[] = [];
  for (const [i, { source, bytes, probed }] of inputs.entries()) {
    const stored = await forSource(source, () => deps.images.ingest(bytes, probed));
    const path = filePathOf(source);
    const ref: ImageRef = { id: `img_${firstIndex + i}`, ...stored, parent: null, op: null, ...(path ? { path } : {}) };
    const view = await deps.images.modelView(stored, maxPixels, { prefetch: true });
    out.push({ ref, view });
  }
  return out;
}

export function formatPlan(plan: PlanStep[]): string {
  return plan
    .map((s, i) => `${i + 1}. ${s.description} [${s.tool_name}${Object.keys(s.parameters).length ? ` ${JSON.stringify(s.parameters)}` : ""}]`)
    .join("\n");
}

function extractJsonArray(text: string): unknown {
  const body = text.replace(/<think>[\s\S]*?<\/think>/gi, "");
  const start = body.indexOf("[");
  const end = body.lastIndexOf("]");
  if (start < 0 || end <= start) throw new Error("no JSON array found");
  return JSON.parse(body.slice(start, end + 1));
}

const PlanSchema = z.array(PlanStepSchema).min(1).max(12);

/** The plan's steps when the reply holds a valid list of them, else what is wrong with it. */
function planProblem(content: string): { steps: PlanStep[] } | { problem: string } {
  try {
    const parsed = PlanSchema.safeParse(extractJsonArray(content));
    return parsed.success ? { steps: parsed.data } : { problem: describeIssues(parsed.error.issues, { root: "plan" }) };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

/** R1V4 Plan mode: a separate model call that returns a JSON list of steps; one retry on a malformed plan. */
export async function makePlan(
  deps: AgentDeps,
  settings: LoupeConfig,
  question: string,
  inputs: ImageRefWithModelView[],
  specs: Pick<ToolSpec, "name">[],
  usage: Usage,
  signal?: AbortSignal,
): Promise<{ steps: PlanStep[] | null; usage: Usage }> {
  const model = deps.model(settings);
  const turns: Turn[] = [{ role: "system_text", text: planModePrompt(specs as ToolSpec[]) }, questionTurn(question, inputs)];
  for (let attempt = 0; attempt < 2; attempt++) {
    const raw = await model.complete(turns, { signal });
    usage = addModelUsage(usage, raw);
    const plan = planProblem(raw.content);
    if ("steps" in plan) return { steps: plan.steps, usage };
    turns.push({ role: "assistant", text: raw.content });
    turns.push({ role: "user", parts: [{ type: "text", text: `That plan is not valid (${plan.problem}). Output only the JSON array of steps.` }] });
  }
  return { steps: null, usage };
}

/** The question as the agent sees it once a plan is settled: with the plan, and a reviewer's note when a person reviewed it. */
function questionWithPlan(question: string, plan: PlanStep[] | null, note?: string): string {
  const parts = [question];
  if (plan?.length) parts.push(`Plan:\n${formatPlan(plan)}`);
  if (note) parts.push(`Note from the person reviewing the plan: ${note}`);
  return parts.join("\n\n");
}

/** The first turn's outcome: the state update so far and, unless a person must review the plan first, the opening turns. */
export interface ConversationStart {
  update: { images?: ImageRef[]; imageSources?: string[]; plan?: PlanStep[]; planReview?: PlanReview };
  usage: Usage;
  /** The system turn and the question with the input images; absent while the plan waits for review. */
  turns?: Turn[];
}

/**
 * Starts the conversation: stores the input images (once: back from a plan review they are in
 * state already), makes the up-front plan in Plan mode (pausing for review when asked), and writes
 * the system turn and the question.
 */
export async function startConversation(
  deps: AgentDeps,
  state: AgentStateValue,
  settings: LoupeConfig,
  tools: { names: string[]; specs: ToolSpec[] },
  signal?: AbortSignal,
): Promise<ConversationStart> {
  if (!state.question?.trim()) throw new Error("the question is empty: pass the question to answer");
  const update: ConversationStart["update"] = {};
  let usage = state.usage ?? EMPTY_USAGE;
  const known = state.images ?? [];
  const inputs = known.length
    ? await Promise.all(known.map(async (ref) => ({ ref, view: await deps.images.modelView(ref, settings.maxPixels) })))
    : await ingestInputs(deps, state.imageSources ?? [], settings.maxPixels, signal, settings.maxImagesInContext);
  if (!known.length) {
    const refs = inputs.map((i) => i.ref);
    update.images = refs;
    // A data: URL input is image bytes: from here on the state keeps a reference to the stored copy.
    update.imageSources = (state.imageSources ?? []).map((source, i) => (refs[i] ? sourceForState(source, refs[i]) : source));
  }
  let question = state.question;
  const review = state.planReview;
  if (review && review.status !== "pending") {
    question = questionWithPlan(state.question, state.plan, review.note);
  } else if (settings.plan || approvalsFor(settings, deps.defaults).plan) {
    const made = await makePlan(deps, settings, state.question, inputs, tools.specs, usage, signal);
    usage = made.usage;
    if (made.steps) {
      update.plan = made.steps;
      // A person reviews the plan (approve_plan) before the first action.
      if (approvalsFor(settings, deps.defaults).plan) return { update: { ...update, planReview: { status: "pending" } }, usage };
      question = questionWithPlan(state.question, made.steps);
    }
  }
  usage = { ...usage, imagesInContext: inputs.length };
  const code = tools.names.includes(CODE_TOOL_NAME);
  const system: Turn = { role: "system", dialect: settings.dialect, tools: tools.names, coords: settings.coords, ...(code ? { code: promptLimits(settings) } : {}) };
  const turns: Turn[] = [system, questionTurn(question, inputs, questionPaths(tools.names, inputs.map((i) => i.ref)))];
  return { update, usage, turns };
}
