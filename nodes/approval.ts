// Human in the loop (off by default): interrupt() so a person approves, edits or rejects the plan, and approves, edits or denies search and web_visit calls; the request also speaks agent-chat-ui's (LangChain's HITL middleware's) shape.
import { describeIssues } from "../src/core/issues.js";
import { AIMessage, type BaseMessage } from "@langchain/core/messages";
import { interrupt } from "@langchain/langgraph";
import { z } from "zod/v4";
import type { LoupeConfig } from "../src/core/config.js";
import { PlanStepSchema, type AgentStateValue, type ImageRef, type PendingCall, type PlanStep } from "../src/core/state.js";
import { searchToolSchemas, searchToolSpecs, SEARCH_TOOL_NAMES, type SearchToolName } from "../tools/search/provider.js";

/** What a reviewer may do with an action (LangChain's HITL decision types). */
export type DecisionType = "approve" | "edit" | "reject";

/** One action waiting for review, as agent-chat-ui shows it: a tool call, or the plan. */
export interface ActionRequest {
  name: string;
  args: Record<string, unknown>;
  description?: string;
}

/** How an action may be reviewed: the decisions allowed and, for edits, the JSON schema of its args. */
export interface ReviewConfig {
  action_name: string;
  allowed_decisions: DecisionType[];
  args_schema?: Record<string, unknown>;
}

/**
 * agent-chat-ui's interrupt shape (LangChain's `HITLRequest`, as the Python middleware and
 * agent-chat-ui spell it): `action_requests[i]` is reviewed under `review_configs[i]`, and the
 * resume is `{ decisions: [...] }`, one decision per action request, in order.
 */
export interface ReviewActions {
  action_requests: ActionRequest[];
  review_configs: ReviewConfig[];
}

/** What the graph asks a person; it is the value of the interrupt a client sees. */
export type ApprovalRequest = ReviewActions &
  (
    | {
        type: "plan_review";
        question: string;
        plan: PlanStep[];
        /** Why the previous answer to this request could not be used. */
        problem?: string;
        how: string;
      }
    | {
        type: "call_review";
        calls: Array<{ callId: string; name: string; arguments: Record<string, unknown> | null }>;
        problem?: string;
        how: string;
      }
  );

const CallDecisionSchema = z.object({ action: z.enum(["approve", "deny"]), reason: z.string().optional() });

/** The plan as a reviewer gives it: one to twelve steps. */
const PlanListSchema = z.array(PlanStepSchema).min(1).max(12);

/** The resume value: `Command({ resume: decision })`. */
export const ApprovalDecisionSchema = z.object({
  action: z.enum(["approve", "deny", "edit"]),
  /** Passed on to the model: why a call was denied, or what the reviewer wants instead of the plan. */
  reason: z.string().optional(),
  /** The plan to use instead (action "edit", plan review only). */
  plan: PlanListSchema.optional(),
  /** Per-call decisions by callId (call review only); calls not listed get `action`. */
  calls: z.record(z.string(), CallDecisionSchema).optional(),
});
export type ApprovalDecision = z.infer<typeof ApprovalDecisionSchema>;

const ActionSchema = z.object({ name: z.string(), args: z.record(z.string(), z.unknown()) });

/** One reviewer decision in agent-chat-ui's shape (`editedAction`, the LangChain.js spelling, is read too). */
export const ReviewDecisionSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("approve") }),
  z.object({ type: z.literal("edit"), edited_action: ActionSchema.optional(), editedAction: ActionSchema.optional() }),
  z.object({ type: z.literal("reject"), message: z.string().optional() }),
]);
export type ReviewDecision = z.infer<typeof ReviewDecisionSchema>;

/** The resume value agent-chat-ui sends: `Command({ resume: { decisions } })`, one per action request. */
export const ReviewResponseSchema = z.object({ decisions: z.array(ReviewDecisionSchema) });
export type ReviewResponse = z.infer<typeof ReviewResponseSchema>;

/** Every resume value the approve nodes take: Loupe's decision, or agent-chat-ui's decisions. */
export type ApprovalResume = ApprovalDecision | ReviewResponse;

export const PLAN_REVIEW_HOW =
  'Resume with { action: "approve" }, { action: "edit", plan: [{ description, tool_name, parameters }, …] } or { action: "deny", reason? } (the agent then works without a plan); or with { decisions: [{ type: "approve" } | { type: "edit", edited_action: { name: "plan", args: { plan } } } | { type: "reject", message? }] }.';
export const CALL_REVIEW_HOW =
  'Resume with { action: "approve" } or { action: "deny", reason? } for every call, or per call: { action: "approve", calls: { <callId>: { action: "deny", reason? } } }; or with { decisions: [...] }, one per action request in order: { type: "approve" }, { type: "edit", edited_action: { name, args } } (the same tool, new arguments) or { type: "reject", message? }. A denied call becomes an error the model reads.';

/** The action name the plan is reviewed under. */
export const PLAN_ACTION = "plan";
const ALL_DECISIONS: DecisionType[] = ["approve", "edit", "reject"];

/** Which approvals a run needs. A run's context may ask for more than the server's defaults, never fewer. */
export function approvalsFor(settings: LoupeConfig, defaults: LoupeConfig) {
  return {
    plan: settings.approvePlan || defaults.approvePlan,
    search: settings.approveSearch || defaults.approveSearch,
    webVisit: settings.approveWebVisit || defaults.approveWebVisit,
  };
}

/** Planner hook: marks the calls that must wait for a person before they run. */
export function markCallsForApproval(pending: PendingCall[], settings: LoupeConfig, defaults: LoupeConfig): PendingCall[] {
  const needed = approvalsFor(settings, defaults);
  return pending.map((call) => {
    if (call.kind !== "search") return call;
    const required = call.name === "web_visit" ? needed.webVisit : needed.search;
    return required ? { ...call, approval: "required" as const } : call;
  });
}

let planArgsSchema: Record<string, unknown> | undefined;
/** The JSON schema of the plan action's args ({ plan }), built on first use. */
function planArgsJsonSchema(): Record<string, unknown> {
  if (!planArgsSchema) {
    const { $schema: _ignored, ...schema } = z.toJSONSchema(z.object({ plan: PlanListSchema })) as Record<string, unknown>;
    planArgsSchema = schema;
  }
  return planArgsSchema;
}

const isSearchTool = (name: string): name is SearchToolName => (SEARCH_TOOL_NAMES as readonly string[]).includes(name);

/** The plan as one action to review. */
export function planActions(question: string, plan: PlanStep[]): ReviewActions {
  const steps = plan.map((s, i) => `${i + 1}. ${s.description} (${s.tool_name})`).join("\n");
  return {
    action_requests: [{ name: PLAN_ACTION, args: { plan }, description: `Review the plan before the agent acts on it.\n\nQuestion: ${question}\nPlan:\n${steps}` }],
    review_configs: [{ action_name: PLAN_ACTION, allowed_decisions: ALL_DECISIONS, args_schema: planArgsJsonSchema() }],
  };
}

/** The waiting calls as actions to review, one review config each (in the same order). */
export function callActions(waiting: PendingCall[]): ReviewActions {
  return {
    action_requests: waiting.map((c) => ({
      name: c.name,
      args: c.args ?? {},
      description: `Tool execution requires approval\n\nTool: ${c.name}\nArgs: ${JSON.stringify(c.args ?? {}, null, 2)}`,
    })),
    review_configs: waiting.map((c) => ({
      action_name: c.name,
      allowed_decisions: ALL_DECISIONS,
      ...(isSearchTool(c.name) ? { args_schema: searchToolSpecs([c.name])[0]!.parameters } : {}),
    })),
  };
}

/** The resume value read: Loupe's decision, agent-chat-ui's decisions, or what is wrong with it. */
function readResume(value: unknown): { native: ApprovalDecision } | { decisions: ReviewDecision[] } | string {
  if (value && typeof value === "object" && "decisions" in value) {
    const parsed = ReviewResponseSchema.safeParse(value);
    return parsed.success ? { decisions: parsed.data.decisions } : `the resume value is not a list of decisions (${describeIssues(parsed.error.issues)})`;
  }
  const parsed = ApprovalDecisionSchema.safeParse(value);
  return parsed.success ? { native: parsed.data } : `the resume value is not a decision (${describeIssues(parsed.error.issues)})`;
}

function countProblem(decisions: ReviewDecision[], actions: number): string | null {
  return decisions.length === actions
    ? null
    : `${decisions.length} decision${decisions.length === 1 ? "" : "s"} for ${actions} action request${actions === 1 ? "" : "s"}: give one decision per action request, in order`;
}

const editedAction = (d: Extract<ReviewDecision, { type: "edit" }>) => d.edited_action ?? d.editedAction;

/**
 * Pauses until the resume value is a usable decision. An unusable one pauses again with the
 * problem stated, so a client's mistake never fails the run.
 */
function waitFor<T extends object>(request: ApprovalRequest, interpret: (value: unknown) => T | string): T {
  let problem: string | undefined;
  for (;;) {
    const value = interrupt(problem ? { ...request, problem } : request);
    const result = interpret(value);
    if (typeof result !== "string") return result;
    problem = result;
  }
}

type PlanVerdict = { status: "approved" | "rejected"; note?: string } | { status: "edited"; plan: PlanStep[]; note?: string };

function planVerdict(value: unknown): PlanVerdict | string {
  const read = readResume(value);
  if (typeof read === "string") return read;
  if ("native" in read) {
    const d = read.native;
    if (d.action === "edit" && !d.plan) return 'action "edit" needs the new plan in `plan`';
    if (d.calls) return "`calls` is for call review, not plan review";
    const note = d.reason ? { note: d.reason } : {};
    if (d.action === "edit") return { status: "edited", plan: d.plan!, ...note };
    return { status: d.action === "approve" ? "approved" : "rejected", ...note };
  }
  const problem = countProblem(read.decisions, 1);
  if (problem) return problem;
  const d = read.decisions[0]!;
  if (d.type === "approve") return { status: "approved" };
  if (d.type === "reject") return { status: "rejected", ...(d.message ? { note: d.message } : {}) };
  const action = editedAction(d);
  if (!action) return '"edit" needs the edited plan in `edited_action: { name: "plan", args: { plan } }`';
  if (action.name !== PLAN_ACTION) return `the plan is edited as the action "${PLAN_ACTION}", not "${action.name}"`;
  const plan = PlanListSchema.safeParse(action.args.plan);
  if (!plan.success) return `the edited plan is not usable (${describeIssues(plan.error.issues, { path: (p) => `edited_action.args.plan${p.length ? `.${p.map(String).join(".")}` : ""}` })})`;
  return { status: "edited", plan: plan.data };
}

/** Node: shows the plan to a person; its decision becomes the plan the agent follows (or none). */
export function createApprovePlanNode() {
  return async function approvePlan(state: AgentStateValue) {
    const plan = state.plan ?? [];
    const verdict = waitFor({ type: "plan_review", question: state.question, plan, how: PLAN_REVIEW_HOW, ...planActions(state.question, plan) }, planVerdict);
    const note = verdict.note ? { note: verdict.note } : {};
    if (verdict.status === "approved") return { planReview: { status: "approved" as const, ...note } };
    if (verdict.status === "edited") return { plan: verdict.plan, planReview: { status: "edited" as const, ...note } };
    return { plan: null, planReview: { status: "rejected" as const, ...note } };
  };
}

type CallVerdict = { action: "approve" } | { action: "deny"; reason?: string } | { action: "edit"; args: Record<string, unknown> };

/** An edited call's arguments checked as the toolbox checks the model's: the same tool, its schema, images that exist. */
function editedArgs(call: PendingCall, action: z.infer<typeof ActionSchema>, images: ImageRef[]): Record<string, unknown> | string {
  if (action.name !== call.name) return `a call's tool cannot be changed (edited_action.name is "${action.name}", the call is ${call.name}): edit its args, or reject it`;
  if (!isSearchTool(call.name)) return `${call.name} calls cannot be edited`;
  const parsed = searchToolSchemas[call.name].safeParse(action.args);
  if (!parsed.success) return `wrong edited args for ${call.name} (${describeIssues(parsed.error.issues, { root: "args" })})`;
  const args = parsed.data as Record<string, unknown>;
  const missing = (Array.isArray(args.image_paths) ? (args.image_paths as string[]) : []).filter((id) => !images.some((i) => i.id === id));
  if (missing.length) return `no image named ${missing.join(", ")} (images: ${images.map((i) => i.id).join(", ") || "none"})`;
  return args;
}

function callVerdicts(value: unknown, waiting: PendingCall[], images: ImageRef[]): Map<string, CallVerdict> | string {
  const read = readResume(value);
  if (typeof read === "string") return read;
  const verdicts = new Map<string, CallVerdict>();
  if ("native" in read) {
    const d = read.native;
    if (d.action === "edit" || d.plan) return 'calls can only be approved or denied; "edit" is for the plan';
    const ids = new Set(waiting.map((c) => c.callId));
    const unknown = Object.keys(d.calls ?? {}).filter((id) => !ids.has(id));
    if (unknown.length) return `no waiting call with id ${unknown.join(", ")} (waiting: ${[...ids].join(", ")})`;
    for (const call of waiting) {
      const own = d.calls?.[call.callId] ?? { action: d.action, reason: d.reason };
      verdicts.set(call.callId, own.action === "approve" ? { action: "approve" } : { action: "deny", reason: own.reason });
    }
    return verdicts;
  }
  const problem = countProblem(read.decisions, waiting.length);
  if (problem) return problem;
  for (const [i, call] of waiting.entries()) {
    const d = read.decisions[i]!;
    if (d.type === "approve") verdicts.set(call.callId, { action: "approve" });
    else if (d.type === "reject") verdicts.set(call.callId, { action: "deny", reason: d.message });
    else {
      const action = editedAction(d);
      if (!action) return `decision ${i + 1} (${call.name}): "edit" needs \`edited_action: { name, args }\``;
      const args = editedArgs(call, action, images);
      if (typeof args === "string") return `decision ${i + 1}: ${args}`;
      verdicts.set(call.callId, { action: "edit", args });
    }
  }
  return verdicts;
}

/**
 * The model turn's AI message with edited calls' new args, under its own id (so it replaces the
 * one in `messages`), as LangChain's HITL middleware rewrites the calls; none when nothing was edited.
 */
function withEditedCalls(messages: readonly BaseMessage[], edits: Map<string, Record<string, unknown>>): BaseMessage[] {
  if (!edits.size) return [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]!;
    if (!AIMessage.isInstance(message) || !message.id) continue;
    const calls = message.tool_calls ?? [];
    if (!calls.some((c) => c.id && edits.has(c.id))) continue;
    return [
      new AIMessage({
        id: message.id,
        content: message.content,
        ...(message.name ? { name: message.name } : {}),
        tool_calls: calls.map((c) => (c.id && edits.has(c.id) ? { ...c, args: edits.get(c.id)! } : c)),
        response_metadata: message.response_metadata,
      }),
    ];
  }
  return [];
}

/** Node: shows the waiting calls to a person; denied calls become errors the model reads, approved (or edited) ones run. */
export function createApproveCallsNode() {
  return async function approveCalls(state: AgentStateValue) {
    const pending = state.pending ?? [];
    const waiting = pending.filter((c) => c.approval === "required");
    const verdicts = waitFor(
      {
        type: "call_review",
        calls: waiting.map((c) => ({ callId: c.callId, name: c.name, arguments: c.args })),
        how: CALL_REVIEW_HOW,
        ...callActions(waiting),
      },
      (value) => callVerdicts(value, waiting, state.images ?? []),
    );
    const edits = new Map<string, Record<string, unknown>>();
    const decided = pending.map((call): PendingCall => {
      const verdict = call.approval === "required" ? verdicts.get(call.callId) : undefined;
      if (!verdict) return call;
      if (verdict.action === "approve") return { ...call, approval: "approved" };
      if (verdict.action === "edit") {
        edits.set(call.callId, verdict.args);
        return { ...call, args: verdict.args, approval: "approved", edited: true };
      }
      const { approval: _waiting, ...rest } = call;
      return {
        ...rest,
        kind: "invalid",
        error: `the person supervising this agent did not allow this ${call.name} call${verdict.reason ? `: ${verdict.reason}` : ""}. Do not repeat it; answer from what you have or take another approach.`,
      };
    });
    const messages = withEditedCalls(state.messages ?? [], edits);
    return { pending: decided, ...(messages.length ? { messages } : {}) };
  };
}
