// Human in the loop: plan review and call approval pause the real graph (real SQLite checkpointer), and decisions resume it; also through the CLI.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ask, RunPaused } from "../src/run/ask.js";
import type { ApprovalDecision, ApprovalResume } from "../nodes/approval.js";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import type { ScriptEntry } from "../src/cli/demo/scripted-model-server.js";
import { baseEnv, fixtureServers, requestText, runCli, tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import { harbourImage, SIGN_PAGE_URL, TRAJECTORY_PAGES, TRAJECTORY_SEARCH } from "../src/cli/demo/trajectory.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let image: string;
let tavily: FakeTavilyServer;
const servers = fixtureServers();

beforeEach(async () => {
  tmp = await tempDir();
  image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(800, 600));
  tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  servers.track(tavily);
});
afterEach(async () => {
  await servers.closeAll();
  await tmp.cleanup();
});

const model = (script: ScriptEntry[]) => servers.model(script);

const PROPOSED = [
  { description: "Crop the blue sign", tool_name: "crop", parameters: { image: "img_0" } },
  { description: "Answer with the code", tool_name: "none", parameters: {} },
];
const EDITED = [
  { description: "Zoom into the lettering of the sign", tool_name: "zoom", parameters: { image: "img_0" } },
  { description: "Read the code aloud", tool_name: "none", parameters: {} },
];

/** Runs until the graph pauses; returns what it asks for. */
async function paused(run: Promise<unknown>): Promise<RunPaused> {
  const err = await run.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RunPaused);
  return err as RunPaused;
}

describe("plan review", () => {
  it("pauses with the proposed plan; an edited plan is what the agent follows, and the inputs are not added twice", async () => {
    const server = await model([
      { content: JSON.stringify(PROPOSED) },
      { content: "<think>zoom</think>", toolCalls: [{ name: "zoom", arguments: { image: "img_0", bbox: [200, 200, 600, 500], factor: 2 } }] },
      { content: "<answer>LOUPE-42</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, approvePlan: true });
    const { agent, close } = testAgent(settings);
    try {
      const pause = await paused(ask(agent, { settings, threadId: "t-plan", question: "What code is on the sign?", images: [image] }));
      expect(pause.threadId).toBe("t-plan");
      expect(pause.request).toMatchObject({ type: "plan_review", question: "What code is on the sign?", plan: PROPOSED });
      expect(server.chatRequests()).toHaveLength(1); // only the planner call: nothing acted on the plan yet

      // Resuming without a decision says the thread still waits.
      await paused(ask(agent, { settings, resume: "t-plan" }));
      // A decision that cannot be used pauses again and says why; the model is not called.
      const again = await paused(ask(agent, { settings, resume: "t-plan", decision: { action: "edit" } }));
      expect(again.request.problem).toMatch(/needs the new plan/);
      expect(server.chatRequests()).toHaveLength(1);

      const result = await ask(agent, { settings, resume: "t-plan", decision: { action: "edit", plan: EDITED } });
      expect(result.answer).toBe("LOUPE-42");
      const first = requestText(server.chatRequests()[1]!.body);
      expect(first).toContain("Plan:\n1. Zoom into the lettering of the sign");
      expect(first).not.toContain("Crop the blue sign");
      expect(result.images.map((i) => i.id)).toEqual(["img_0", "img_1"]);
      const state = await agent.getState({ configurable: { thread_id: "t-plan" } });
      expect(state.values.plan).toEqual(EDITED);
      expect(state.values.planReview).toEqual({ status: "edited" });
      expect(result.usage.turns).toBe(3); // planner + two actions, the plan made once
    } finally {
      close();
    }
  });

  it("a rejected plan is dropped and the reviewer's note reaches the model", async () => {
    const server = await model([{ content: JSON.stringify(PROPOSED) }, { content: "<answer>LOUPE-42</answer>" }]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, approvePlan: true });
    const { agent, close } = testAgent(settings);
    try {
      await paused(ask(agent, { settings, threadId: "t-reject", question: "What code?", images: [image] }));
      const result = await ask(agent, { settings, resume: "t-reject", decision: { action: "deny", reason: "just read it, no plan" } });
      expect(result.answer).toBe("LOUPE-42");
      const text = requestText(server.chatRequests()[1]!.body);
      expect(text).toContain("Note from the person reviewing the plan: just read it, no plan");
      expect(text).not.toContain("Plan:");
    } finally {
      close();
    }
  });
});

describe("call approval", () => {
  it("search and web_visit calls wait; a denial is an observation, an approval runs the call; image calls are not held back", async () => {
    const server = await model([
      {
        content: "<think>crop and search</think>",
        toolCalls: [
          { name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } },
          { name: "text_search", arguments: { queries: ["blue harbour sign white lettering"] } },
        ],
      },
      { content: "<think>read the page</think>", toolCalls: [{ name: "web_visit", arguments: { urls: [SIGN_PAGE_URL], goal: "the code" } }] },
      { content: "<answer>LOUPE-42</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, tavilyUrl: tavily.url, approveSearch: true, approveWebVisit: true });
    const { agent, close } = testAgent(settings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
    try {
      const first = await paused(ask(agent, { settings, threadId: "t-calls", question: "What code is on the sign?", images: [image] }));
      expect(first.request).toMatchObject({ type: "call_review", calls: [{ name: "text_search", arguments: { queries: ["blue harbour sign white lettering"] } }] });
      const deny: ApprovalDecision = { action: "deny", reason: "no web search for this customer" };
      const second = await paused(ask(agent, { settings, resume: "t-calls", decision: deny }));
      expect(second.request).toMatchObject({ type: "call_review", calls: [{ name: "web_visit" }] });
      // The denial reached the model as the call's observation; the crop of the same turn ran.
      const told = requestText(server.chatRequests()[1]!.body);
      expect(told).toContain("did not allow this text_search call: no web search for this customer");
      expect(tavily.requests.filter((r) => r.path === "/search")).toHaveLength(0);

      const result = await ask(agent, { settings, resume: "t-calls", decision: { action: "approve" } });
      expect(result.answer).toBe("LOUPE-42");
      expect(tavily.requests.filter((r) => r.path === "/extract")).toHaveLength(1);
      expect(requestText(server.chatRequests()[2]!.body)).toContain("The north pier sign reads LOUPE-42");
      expect(result.toolCalls.map((c) => [c.name, c.ok])).toEqual([
        ["crop", true],
        ["text_search", false],
        ["web_visit", true],
      ]);
      expect(result.images.map((i) => i.id)).toEqual(["img_0", "img_1"]);
    } finally {
      close();
    }
  });

  it("a run's context cannot switch off an approval the defaults require", async () => {
    const server = await model([
      { content: "<think>search</think>", toolCalls: [{ name: "text_search", arguments: { queries: ["blue harbour sign white lettering"] } }] },
      { content: "<answer>x</answer>" },
    ]);
    const defaults = testSettings({ modelUrl: server.url, dataDir: tmp.dir, tavilyUrl: tavily.url, approveSearch: true });
    const { agent, close } = testAgent(defaults, { tavilyApiKey: FAKE_TAVILY_API_KEY });
    try {
      const loosened = { ...defaults, approveSearch: false };
      const pause = await paused(ask(agent, { settings: loosened, threadId: "t-sticky", question: "q?", images: [image] }));
      expect(pause.request.type).toBe("call_review");
    } finally {
      close();
    }
  });
});

/** agent-chat-ui's resume value, passed where ask() takes a decision (the nodes take both forms). */
const decisions = (value: Extract<ApprovalResume, { decisions: unknown }>["decisions"]) => ({ decisions: value }) as unknown as ApprovalDecision;

describe("agent-chat-ui's decisions on the real graph", () => {
  it("plan review: the request carries the plan as an action; an edit in decisions is the plan the agent follows", async () => {
    const server = await model([{ content: JSON.stringify(PROPOSED) }, { content: "<answer>LOUPE-42</answer>" }]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, approvePlan: true });
    const { agent, close } = testAgent(settings);
    try {
      const pause = await paused(ask(agent, { settings, threadId: "t-hitl-plan", question: "What code?", images: [image] }));
      expect(pause.request.action_requests).toEqual([{ name: "plan", args: { plan: PROPOSED }, description: expect.stringContaining("1. Crop the blue sign (crop)") }]);
      expect(pause.request.review_configs).toMatchObject([{ action_name: "plan", allowed_decisions: ["approve", "edit", "reject"] }]);
      // Two decisions for one action: asked again, the model not called.
      const again = await paused(ask(agent, { settings, resume: "t-hitl-plan", decision: decisions([{ type: "approve" }, { type: "approve" }]) }));
      expect(again.request.problem).toBe("2 decisions for 1 action request: give one decision per action request, in order");
      const result = await ask(agent, { settings, resume: "t-hitl-plan", decision: decisions([{ type: "edit", edited_action: { name: "plan", args: { plan: EDITED } } }]) });
      expect(result.answer).toBe("LOUPE-42");
      expect(requestText(server.chatRequests()[1]!.body)).toContain("Plan:\n1. Zoom into the lettering of the sign");
      expect((await agent.getState({ configurable: { thread_id: "t-hitl-plan" } })).values.planReview).toEqual({ status: "edited" });
    } finally {
      close();
    }
  });

  it("call review: one decision per waiting call, in order; a rejection's message reaches the model, an edited call runs with its new args", async () => {
    const server = await model([
      {
        content: "<think>search and read</think>",
        toolCalls: [
          { name: "text_search", arguments: { queries: ["sign code"] } },
          { name: "web_visit", arguments: { urls: [SIGN_PAGE_URL], goal: "the code" } },
        ],
      },
      { content: "<answer>WORD-NN</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, tavilyUrl: tavily.url, approveSearch: true, approveWebVisit: true });
    const { agent, close } = testAgent(settings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
    try {
      const pause = await paused(ask(agent, { settings, threadId: "t-hitl-calls", question: "What format do the codes have?", images: [image] }));
      expect(pause.request.action_requests.map((a) => a.name)).toEqual(["text_search", "web_visit"]);
      expect(pause.request.review_configs.map((r) => r.action_name)).toEqual(["text_search", "web_visit"]);
      const edited = { queries: ["harbour sign inspection code format"] };
      const result = await ask(agent, {
        settings,
        resume: "t-hitl-calls",
        decision: decisions([{ type: "edit", edited_action: { name: "text_search", args: edited } }, { type: "reject", message: "no page reads today" }]),
      });
      expect(result.answer).toBe("WORD-NN");
      expect(result.toolCalls.map((c) => [c.name, c.arguments, c.ok])).toEqual([
        ["text_search", edited, true],
        ["web_visit", { urls: [SIGN_PAGE_URL], goal: "the code" }, false],
      ]);
      expect(tavily.requests.filter((r) => r.path === "/search").map((r) => (r.body as { query?: string }).query)).toEqual(["harbour sign inspection code format"]);
      expect(tavily.requests.filter((r) => r.path === "/extract")).toHaveLength(0);
      const told = requestText(server.chatRequests()[1]!.body);
      expect(told).toContain("Codes have the form WORD-NN.");
      expect(told).toContain("did not allow this web_visit call: no page reads today");
      // The messages channel shows the call as it ran, and every call answered.
      const state = await agent.getState({ configurable: { thread_id: "t-hitl-calls" } });
      const turn = state.values.messages.find((m: { tool_calls?: unknown[] }) => m.tool_calls?.length) as { tool_calls: Array<{ id: string; args: unknown }> };
      expect(turn.tool_calls.map((c) => c.args)).toEqual([edited, { urls: [SIGN_PAGE_URL], goal: "the code" }]);
      const answered = state.values.messages.filter((m: { getType(): string }) => m.getType() === "tool").map((m: { tool_call_id?: string }) => m.tool_call_id);
      expect(answered).toEqual(turn.tool_calls.map((c) => c.id));
    } finally {
      close();
    }
  });
});

describe("loupe ask with approvals (CLI)", () => {
  it("exits 3 with the exact command to continue, which then finishes the run", async () => {
    const server = await model([
      { content: "<think>search</think>", toolCalls: [{ name: "text_search", arguments: { queries: ["harbour sign inspection code format"] } }] },
      { content: "<answer>WORD-NN</answer>" },
    ]);
    const env = baseEnv({ TAVILY_API_KEY: FAKE_TAVILY_API_KEY, LOUPE_TAVILY_URL: tavily.url });
    const dataDir = join(tmp.dir, "data");
    const first = await runCli(["ask", "--approve-search", "--model-url", server.url, "--data-dir", dataDir, "--thread", "cli-1", "-i", image, "What format do the codes have?"], env);
    expect(first.stderr).not.toMatch(/^\s+at /m);
    expect(first.code).toBe(3);
    expect(first.stdout).toBe("");
    expect(first.stderr).toContain("paused");
    expect(first.stderr).toContain('text_search {"queries":["harbour sign inspection code format"]}');
    const approve = /allow:\s+(loupe ask .*--approve)$/m.exec(first.stderr)?.[1];
    expect(approve).toBe(`loupe ask --resume cli-1 --model-url ${server.url} --approve-search --data-dir ${dataDir} --approve`);

    const second = await runCli(approve!.split(" ").slice(1), env);
    expect(second.stderr).not.toMatch(/^\s+at /m);
    expect(second.code).toBe(0);
    expect(second.stdout.trim().split("\n")[0]).toBe("WORD-NN");
    expect(tavily.requests.filter((r) => r.path === "/search")).toHaveLength(1);
  });

  it("plan review: --json reports the pause, the plan file can be edited, and a broken plan file is a usage error", async () => {
    const server = await model([
      { content: JSON.stringify(PROPOSED) },
      { content: "<answer>LOUPE-42</answer>" },
    ]);
    const env = baseEnv();
    const dataDir = join(tmp.dir, "data");
    const first = await runCli(["ask", "--json", "--approve-plan", "--model-url", server.url, "--data-dir", dataDir, "--thread", "cli-plan", "-i", image, "What code?"], env);
    expect(first.code).toBe(3);
    const out = JSON.parse(first.stdout);
    expect(out).toMatchObject({ threadId: "cli-plan", status: "paused", review: { type: "plan_review", plan: PROPOSED } });
    const planFile = join(dataDir, "plans", "cli-plan.json");
    expect(JSON.parse(await readFile(planFile, "utf8"))).toEqual(PROPOSED);
    expect(out.continue.editPlan).toBe(`loupe ask --resume cli-plan --model-url ${server.url} --approve-plan --data-dir ${dataDir} --json --edit-plan ${planFile}`);

    const broken = join(tmp.dir, "broken.json");
    await writeImage(tmp.dir, "broken.json", Buffer.from(JSON.stringify([{ description: "no tool" }])));
    const bad = await runCli(["ask", "--resume", "cli-plan", "--data-dir", dataDir, "--model-url", server.url, "--edit-plan", broken], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^loupe: --edit-plan .*broken\.json: step 1 tool_name: .*Expected a JSON array/);

    await writeImage(dataDir, "plans/cli-plan.json", Buffer.from(JSON.stringify(EDITED)));
    const done = await runCli(out.continue.editPlan.split(" ").slice(1), env);
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout).answer).toBe("LOUPE-42");
    expect(requestText(server.chatRequests()[1]!.body)).toContain("1. Zoom into the lettering of the sign");
  });
});
