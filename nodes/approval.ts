// Human in the loop (off by default): interrupt() so a person approves, edits or rejects the plan, and approves or denies search and web_visit calls.
import { describeIssues } from "../src/core/issues.js";
import { interrupt } from "@langchain/langgraph";
import { z } from "zod/v4";
import type { LoupeConfig } from "../src/core/config.js";
import { PlanStepSchema, type AgentStateValue, type PendingCall, type PlanStep } from "../src/core/state.js";

/** What the graph asks a person; it is the value of the interrupt a client sees. */
export type ApprovalRequest =
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
    };

const CallDecisionSchema = z.object({ action: z.enum(["approve", "deny"]), reason: z.string().optional() });

/** The resume value: `Command({ resume: decision })`. */
export const ApprovalDecisionSchema = z.object({
  action: z.enum(["approve", "deny", "edit"]),
  /** Passed on to the model: why a call was denied, or what the reviewer wants instead of the plan. */
  reason: z.string().optional(),
  /** The plan to use instead (action "edit", plan review only). */
  plan: z.array(PlanStepSchema).min(1).max(12).optional(),
  /** Per-call decisions by callId (call review only); calls not listed get `action`. */
  calls: z.record(z.string(), CallDecisionSchema).optional(),
});
export type ApprovalDecision = z.infer<typeof ApprovalDecisionSchema>;

export const PLAN_REVIEW_HOW =
  'Resume with { action: "approve" }, { action: "edit", plan: [{ description, tool_name, parameters }, …] } or { action: "deny", reason? } (the agent then works without a plan).';
export const CALL_REVIEW_HOW =
  'Resume with { action: "approve" } or { action: "deny", reason? } for every call, or per call: { action: "approve", calls: { <callId>: { action: "deny", reason? } } }. A denied call becomes an error the model reads.';

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

/**
 * Pauses until the resume value is a usable decision. An unusable one pauses again with the
 * problem stated, so a client's mistake never fails the run.
 */
function waitForDecision(request: ApprovalRequest, check: (d: ApprovalDecision) => string | null): ApprovalDecision {
  let problem: string | undefined;
  for (;;) {
    const value = interrupt(problem ? { ...request, problem } : request);
    const parsed = ApprovalDecisionSchema.safeParse(value);
    if (parsed.success) {
      problem = check(parsed.data) ?? undefined;
      if (!problem) return parsed.data;
    } else {
      problem = `the resume value is not a decision (${describeIssues(parsed.error.issues)})`;
    }
  }
}

/** Node: shows the plan to a person; its decision becomes the plan the agent follows (or none). */
export function createApprovePlanNode() {
  return async function approvePlan(state: AgentStateValue) {
    const decision = waitForDecision(
      { type: "plan_review", question: state.question, plan: state.plan ?? [], how: PLAN_REVIEW_HOW },
      (d) => (d.action === "edit" && !d.plan ? 'action "edit" needs the new plan in `plan`' : d.calls ? "`calls` is for call review, not plan review" : null),
    );
    const note = decision.reason ? { note: decision.reason } : {};
    if (decision.action === "approve") return { planReview: { status: "approved" as const, ...note } };
    if (decision.action === "edit") return { plan: decision.plan!, planReview: { status: "edited" as const, ...note } };
    return { plan: null, planReview: { status: "rejected" as const, ...note } };
  };
}

/** Node: shows the waiting calls to a person; denied calls become errors the model reads, approved ones run. */
export function createApproveCallsNode() {
  return async function approveCalls(state: AgentStateValue) {
    const pending = state.pending ?? [];
    const waiting = pending.filter((c) => c.approval === "required");
    const ids = new Set(waiting.map((c) => c.callId));
    const decision = waitForDecision(
      { type: "call_review", calls: waiting.map((c) => ({ callId: c.callId, name: c.name, arguments: c.args })), how: CALL_REVIEW_HOW },
      (d) => {
        if (d.action === "edit" || d.plan) return 'calls can only be approved or denied; "edit" is for the plan';
        const unknown = Object.keys(d.calls ?? {}).filter((id) => !ids.has(id));
        return unknown.length ? `no waiting call with id ${unknown.join(", ")} (waiting: ${[...ids].join(", ")})` : null;
      },
    );
    return {
      pending: pending.map((call): PendingCall => {
        if (call.approval !== "required") return call;
        const own = decision.calls?.[call.callId] ?? { action: decision.action as "approve" | "deny", reason: decision.reason };
        if (own.action === "approve") return { ...call, approval: "approved" };
        const { approval: _waiting, ...rest } = call;
        return {
          ...rest,
          kind: "invalid",
          error: `the person supervising this agent did not allow this ${call.name} call${own.reason ? `: ${own.reason}` : ""}. Do not repeat it; answer from what you have or take another approach.`,
        };
      }),
    };
  };
}
