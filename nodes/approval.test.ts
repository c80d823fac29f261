// Human in the loop on its own: which approvals a run needs, marking calls, and the approve nodes paused and resumed in a one-node graph.
import { AIMessage } from "@langchain/core/messages";
import { Command, END, INTERRUPT, MemorySaver, START, StateGraph, isInterrupted } from "@langchain/langgraph";
import { describe, expect, it } from "vitest";
import { runSettings } from "../src/core/agent-deps.js";
import { resolveConfig } from "../src/core/config.js";
import { AgentState, type AgentStateValue, type PendingCall } from "../src/core/state.js";
import {
  approvalsFor,
  CALL_REVIEW_HOW,
  callActions,
  createApproveCallsNode,
  createApprovePlanNode,
  markCallsForApproval,
  planActions,
  PLAN_REVIEW_HOW,
  type ApprovalRequest,
  type ReviewResponse,
} from "./approval.js";
import { nodeFixture, pendingCall } from "../test/node-fakes.js";

const PLAN = [
  { description: "Crop the sign", tool_name: "crop", parameters: { image: "img_0" } },
  { description: "Verify", tool_name: "none", parameters: {} },
];
const EDITED = [{ description: "Zoom into the lettering", tool_name: "zoom", parameters: { image: "img_0" } }];
const config = (overrides: Parameters<typeof resolveConfig>[0] = {}) => resolveConfig(overrides, {});

describe("approvalsFor", () => {
  it("a run's settings add approvals to the server's defaults, never remove them", () => {
    expect(approvalsFor(config({ approveSearch: true }), config())).toEqual({ plan: false, search: true, webVisit: false });
    expect(approvalsFor(config(), config({ approvePlan: true, approveWebVisit: true }))).toEqual({ plan: true, search: false, webVisit: true });
  });

  it("a run context that turns an approval off still needs it when the defaults ask for it", async () => {
    const f = await nodeFixture({ settings: { approveSearch: true }, context: { approveSearch: false } });
    const settings = runSettings(f.deps, f.config.context);
    expect(settings.approveSearch).toBe(false);
    expect(approvalsFor(settings, f.deps.defaults).search).toBe(true);
  });
});

describe("markCallsForApproval", () => {
  const pending = [
    pendingCall("i", "crop", { image: "img_0" }, "image"),
    pendingCall("t", "text_search", { queries: ["q"] }, "search"),
    pendingCall("r", "image_search", { image_paths: ["img_0"] }, "search"),
    pendingCall("w", "web_visit", { urls: ["https://a.example/"] }, "search"),
    pendingCall("x", "text_search", null, "invalid", { error: "bad" }),
  ];
  const marked = (settings: Parameters<typeof resolveConfig>[0], defaults: Parameters<typeof resolveConfig>[0] = {}) =>
    markCallsForApproval(pending, config(settings), config(defaults)).map((c) => [c.callId, c.approval ?? null]);

  it("approveSearch marks text_search and image_search; approveWebVisit marks web_visit; image and invalid calls never wait", () => {
    expect(marked({ approveSearch: true })).toEqual([["i", null], ["t", "required"], ["r", "required"], ["w", null], ["x", null]]);
    expect(marked({}, { approveWebVisit: true })).toEqual([["i", null], ["t", null], ["r", null], ["w", "required"], ["x", null]]);
    expect(marked({})).toEqual(pending.map((c) => [c.callId, null]));
  });
});

/** One approve node in a graph with a checkpointer, so interrupt() can pause it and a Command resume it. */
function reviewGraph(name: "approve_plan" | "approve_calls") {
  const node = name === "approve_plan" ? createApprovePlanNode() : createApproveCallsNode();
  const graph = new StateGraph(AgentState).addNode(name, node).addEdge(START, name).addEdge(name, END).compile({ checkpointer: new MemorySaver() });
  const thread = { configurable: { thread_id: `t-${name}` } };
  /** Runs (or resumes) the graph: what it asks a person when it pauses, else the state it ends with. */
  const step = async (input: Partial<AgentStateValue> | Command): Promise<{ asked: ApprovalRequest } | { state: AgentStateValue }> => {
    const out = await graph.invoke(input as never, thread);
    if (isInterrupted<ApprovalRequest>(out)) {
      expect(out[INTERRUPT]).toHaveLength(1);
      return { asked: out[INTERRUPT][0]!.value! };
    }
    return { state: out as AgentStateValue };
  };
  return { step };
}

const asked = (r: Awaited<ReturnType<ReturnType<typeof reviewGraph>["step"]>>) => ("asked" in r ? r.asked : expect.fail(`expected a pause, got ${JSON.stringify(r)}`));
const ended = (r: Awaited<ReturnType<ReturnType<typeof reviewGraph>["step"]>>) => ("state" in r ? r.state : expect.fail(`expected the run to go on, got ${JSON.stringify(r)}`));

describe("approve_plan", () => {
  async function pausedOnPlan() {
    const g = reviewGraph("approve_plan");
    const first = asked(await g.step({ question: "What is on the sign?", plan: PLAN, planReview: { status: "pending" } }));
    expect(first).toEqual({ type: "plan_review", question: "What is on the sign?", plan: PLAN, how: PLAN_REVIEW_HOW, ...planActions("What is on the sign?", PLAN) });
    // agent-chat-ui's shape: the plan is one action, editable under its args schema.
    expect(first.action_requests).toEqual([{ name: "plan", args: { plan: PLAN }, description: expect.stringContaining("1. Crop the sign (crop)\n2. Verify (none)") }]);
    expect(first.review_configs).toEqual([{ action_name: "plan", allowed_decisions: ["approve", "edit", "reject"], args_schema: expect.objectContaining({ type: "object", required: ["plan"] }) }]);
    return g;
  }

  it("approve: the plan stands, with the reviewer's note", async () => {
    const g = await pausedOnPlan();
    const state = ended(await g.step(new Command({ resume: { action: "approve", reason: "looks right" } })));
    expect(state.planReview).toEqual({ status: "approved", note: "looks right" });
    expect(state.plan).toEqual(PLAN);
  });

  it("edit: the reviewer's plan replaces the model's", async () => {
    const g = await pausedOnPlan();
    const state = ended(await g.step(new Command({ resume: { action: "edit", plan: EDITED } })));
    expect(state.planReview).toEqual({ status: "edited" });
    expect(state.plan).toEqual(EDITED);
  });

  it("deny: no plan, and the reason passed on", async () => {
    const g = await pausedOnPlan();
    const state = ended(await g.step(new Command({ resume: { action: "deny", reason: "just look" } })));
    expect(state.planReview).toEqual({ status: "rejected", note: "just look" });
    expect(state.plan).toBeNull();
  });

  it("an unusable decision asks again, stating the problem; a usable one then goes through", async () => {
    const g = await pausedOnPlan();
    const noPlan = asked(await g.step(new Command({ resume: { action: "edit" } })));
    expect(noPlan).toMatchObject({ type: "plan_review", plan: PLAN, problem: 'action "edit" needs the new plan in `plan`' });
    const notADecision = asked(await g.step(new Command({ resume: "yes please" })));
    expect(notADecision.problem).toMatch(/^the resume value is not a decision \(/);
    const calls = asked(await g.step(new Command({ resume: { action: "approve", calls: { c1: { action: "approve" } } } })));
    expect(calls.problem).toBe("`calls` is for call review, not plan review");
    expect(ended(await g.step(new Command({ resume: { action: "approve" } }))).planReview).toEqual({ status: "approved" });
  });

  describe("agent-chat-ui's decisions", () => {
    const resume = (decisions: unknown[]) => new Command({ resume: { decisions } satisfies { decisions: unknown[] } });

    it("approve: the plan stands", async () => {
      const g = await pausedOnPlan();
      const state = ended(await g.step(resume([{ type: "approve" }])));
      expect(state.planReview).toEqual({ status: "approved" });
      expect(state.plan).toEqual(PLAN);
    });

    it("edit: edited_action.args.plan replaces the model's (editedAction, LangChain.js's spelling, too)", async () => {
      const g = await pausedOnPlan();
      const state = ended(await g.step(resume([{ type: "edit", edited_action: { name: "plan", args: { plan: EDITED } } }])));
      expect(state.planReview).toEqual({ status: "edited" });
      expect(state.plan).toEqual(EDITED);
      const h = await pausedOnPlan();
      expect(ended(await h.step(resume([{ type: "edit", editedAction: { name: "plan", args: { plan: EDITED } } }]))).plan).toEqual(EDITED);
    });

    it("reject: no plan, the message passed on as the reviewer's note", async () => {
      const g = await pausedOnPlan();
      const state = ended(await g.step(resume([{ type: "reject", message: "just look" }])));
      expect(state.planReview).toEqual({ status: "rejected", note: "just look" });
      expect(state.plan).toBeNull();
    });

    it("unusable decisions ask again, stating the problem", async () => {
      const g = await pausedOnPlan();
      expect(asked(await g.step(resume([]))).problem).toBe("0 decisions for 1 action request: give one decision per action request, in order");
      expect(asked(await g.step(resume([{ type: "approve" }, { type: "approve" }]))).problem).toMatch(/^2 decisions for 1 action request/);
      expect(asked(await g.step(resume([{ type: "maybe" }]))).problem).toMatch(/^the resume value is not a list of decisions \(decisions\.0/);
      expect(asked(await g.step(resume([{ type: "edit" }]))).problem).toMatch(/"edit" needs the edited plan in `edited_action/);
      expect(asked(await g.step(resume([{ type: "edit", edited_action: { name: "crop", args: { plan: EDITED } } }]))).problem).toBe('the plan is edited as the action "plan", not "crop"');
      const broken = asked(await g.step(resume([{ type: "edit", edited_action: { name: "plan", args: { plan: [{ description: "no tool" }] } } }])));
      expect(broken.problem).toMatch(/^the edited plan is not usable \(edited_action\.args\.plan\.0\.tool_name: /);
      expect(broken).toMatchObject({ type: "plan_review", plan: PLAN, action_requests: [{ name: "plan" }] });
      expect(ended(await g.step(resume([{ type: "approve" }]))).planReview).toEqual({ status: "approved" });
    });
  });
});

describe("approve_calls", () => {
  const crop = pendingCall("c0", "crop", { image: "img_0", bbox: [0, 0, 1, 1] }, "image");
  const first = pendingCall("c1", "text_search", { queries: ["harbour"] }, "search", { approval: "required" });
  const second = pendingCall("c2", "web_visit", { urls: ["https://a.example/"] }, "search", { approval: "required" });
  const PENDING: PendingCall[] = [crop, first, second];

  async function pausedOnCalls() {
    const g = reviewGraph("approve_calls");
    const request = asked(await g.step({ question: "q?", pending: PENDING }));
    expect(request).toEqual({
      type: "call_review",
      calls: [
        { callId: "c1", name: "text_search", arguments: { queries: ["harbour"] } },
        { callId: "c2", name: "web_visit", arguments: { urls: ["https://a.example/"] } },
      ],
      how: CALL_REVIEW_HOW,
      ...callActions([first, second]),
    });
    // agent-chat-ui's shape: one action request per waiting call, each with its review config, in the same order.
    expect(request.action_requests).toEqual([
      { name: "text_search", args: { queries: ["harbour"] }, description: 'Tool execution requires approval\n\nTool: text_search\nArgs: {\n  "queries": [\n    "harbour"\n  ]\n}' },
      { name: "web_visit", args: { urls: ["https://a.example/"] }, description: expect.stringContaining("Tool: web_visit") },
    ]);
    expect(request.review_configs.map((c) => [c.action_name, c.allowed_decisions])).toEqual([
      ["text_search", ["approve", "edit", "reject"]],
      ["web_visit", ["approve", "edit", "reject"]],
    ]);
    expect(request.review_configs[0]!.args_schema).toMatchObject({ type: "object", properties: { queries: { type: "array" } }, required: ["queries"] });
    return g;
  }

  it("approve: every waiting call is approved; the others are untouched", async () => {
    const g = await pausedOnCalls();
    const state = ended(await g.step(new Command({ resume: { action: "approve" } })));
    expect(state.pending).toEqual([crop, { ...first, approval: "approved" }, { ...second, approval: "approved" }]);
  });

  it("deny with a reason: each waiting call becomes invalid, its error carrying the reason", async () => {
    const g = await pausedOnCalls();
    const state = ended(await g.step(new Command({ resume: { action: "deny", reason: "no browsing today" } })));
    const { approval: _a, ...firstRest } = first;
    expect(state.pending[0]).toEqual(crop);
    expect(state.pending[1]).toEqual({
      ...firstRest,
      kind: "invalid",
      error: "the person supervising this agent did not allow this text_search call: no browsing today. Do not repeat it; answer from what you have or take another approach.",
    });
    expect(state.pending[2]).toMatchObject({ callId: "c2", kind: "invalid" });
    expect(state.pending[2]!.approval).toBeUndefined();
  });

  it("per-call decisions: a listed call gets its own, the rest the overall action", async () => {
    const g = await pausedOnCalls();
    const state = ended(await g.step(new Command({ resume: { action: "approve", calls: { c2: { action: "deny" } } } })));
    expect(state.pending.map((c) => [c.callId, c.kind, c.approval ?? null])).toEqual([
      ["c0", "image", null],
      ["c1", "search", "approved"],
      ["c2", "invalid", null],
    ]);
    expect(state.pending[2]!.error).toBe("the person supervising this agent did not allow this web_visit call. Do not repeat it; answer from what you have or take another approach.");
  });

  it("an unusable decision asks again, stating the problem", async () => {
    const g = await pausedOnCalls();
    const unknown = asked(await g.step(new Command({ resume: { action: "approve", calls: { c9: { action: "deny" } } } })));
    expect(unknown).toMatchObject({ type: "call_review", problem: "no waiting call with id c9 (waiting: c1, c2)" });
    const edit = asked(await g.step(new Command({ resume: { action: "edit" } })));
    expect(edit.problem).toBe('calls can only be approved or denied; "edit" is for the plan');
    const withPlan = asked(await g.step(new Command({ resume: { action: "approve", plan: EDITED } })));
    expect(withPlan.problem).toBe('calls can only be approved or denied; "edit" is for the plan');
    const state = ended(await g.step(new Command({ resume: { action: "deny" } })));
    expect(state.pending.filter((c) => c.kind === "invalid").map((c) => c.callId)).toEqual(["c1", "c2"]);
  });

  describe("agent-chat-ui's decisions, one per action request in order", () => {
    const resume = (decisions: ReviewResponse["decisions"] | unknown[]) => new Command({ resume: { decisions } });

    it("approve and reject: the approved call runs, the rejected one becomes an error carrying the message", async () => {
      const g = await pausedOnCalls();
      const state = ended(await g.step(resume([{ type: "approve" }, { type: "reject", message: "no page reads today" }])));
      expect(state.pending.map((c) => [c.callId, c.kind, c.approval ?? null])).toEqual([
        ["c0", "image", null],
        ["c1", "search", "approved"],
        ["c2", "invalid", null],
      ]);
      expect(state.pending[2]!.error).toBe("the person supervising this agent did not allow this web_visit call: no page reads today. Do not repeat it; answer from what you have or take another approach.");
    });

    it("edit: the call runs with the edited args, and the model turn's AI message shows them (same id)", async () => {
      const g = reviewGraph("approve_calls");
      const turn = new AIMessage({
        id: "chatcmpl-1",
        content: "search, then read",
        name: "scripted-vl",
        tool_calls: [
          { id: "c0", name: "crop", args: crop.args!, type: "tool_call" },
          { id: "c1", name: "text_search", args: first.args!, type: "tool_call" },
          { id: "c2", name: "web_visit", args: second.args!, type: "tool_call" },
        ],
      });
      asked(await g.step({ question: "q?", pending: PENDING, messages: [turn] } as never));
      const edited = { queries: ["harbour sign code format"] };
      const state = ended(await g.step(resume([{ type: "edit", edited_action: { name: "text_search", args: edited } }, { type: "approve" }])));
      expect(state.pending[1]).toEqual({ ...first, args: edited, approval: "approved", edited: true });
      expect(state.pending[2]).toEqual({ ...second, approval: "approved" });
      expect(state.messages).toHaveLength(1);
      const rewritten = state.messages[0]!;
      expect(rewritten).toBeInstanceOf(AIMessage);
      expect(rewritten).toMatchObject({ id: "chatcmpl-1", content: "search, then read", name: "scripted-vl" });
      expect((rewritten as AIMessage).tool_calls!.map((c) => [c.id, c.args])).toEqual([
        ["c0", crop.args],
        ["c1", edited],
        ["c2", second.args],
      ]);
    });

    it("unusable decisions ask again, stating the problem; the native decision still works after them", async () => {
      const g = await pausedOnCalls();
      expect(asked(await g.step(resume([{ type: "approve" }]))).problem).toBe("1 decision for 2 action requests: give one decision per action request, in order");
      const renamed = asked(await g.step(resume([{ type: "edit", edited_action: { name: "web_visit", args: { urls: ["https://b.example/"] } } }, { type: "approve" }])));
      expect(renamed.problem).toBe('decision 1: a call\'s tool cannot be changed (edited_action.name is "web_visit", the call is text_search): edit its args, or reject it');
      const wrong = asked(await g.step(resume([{ type: "approve" }, { type: "edit", edited_action: { name: "web_visit", args: { urls: ["not a url"] } } }])));
      expect(wrong.problem).toMatch(/^decision 2: wrong edited args for web_visit \(urls\.0: /);
      expect(asked(await g.step(resume([{ type: "edit" }, { type: "approve" }]))).problem).toBe('decision 1 (text_search): "edit" needs `edited_action: { name, args }`');
      expect(wrong).toMatchObject({ type: "call_review", action_requests: [{ name: "text_search" }, { name: "web_visit" }] });
      const state = ended(await g.step(new Command({ resume: { action: "deny", reason: "enough" } })));
      expect(state.pending.filter((c) => c.kind === "invalid").map((c) => c.callId)).toEqual(["c1", "c2"]);
    });

    it("an edited image_search names images that exist", async () => {
      const g = reviewGraph("approve_calls");
      const reverse = pendingCall("r1", "image_search", { image_paths: ["img_0"] }, "search", { approval: "required" });
      const img0 = { id: "img_0", sha256: "a".repeat(64), mime: "image/png" as const, width: 10, height: 10, parent: null, op: null };
      asked(await g.step({ question: "q?", pending: [reverse], images: [img0] }));
      const missing = asked(await g.step(resume([{ type: "edit", edited_action: { name: "image_search", args: { image_paths: ["img_7"] } } }])));
      expect(missing.problem).toBe("decision 1: no image named img_7 (images: img_0)");
      expect(ended(await g.step(resume([{ type: "approve" }]))).pending[0]!.approval).toBe("approved");
    });
  });
});
