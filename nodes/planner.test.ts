// The planner node on its own: the first turn's set-up, the model request, validation of the calls, approvals, Plan mode, events and usage.
import { describe, expect, it } from "vitest";
import { dialectRequestOptions, planModePrompt } from "../src/core/protocol.js";
import type { CodeSandbox } from "../src/core/sandbox.js";
import type { SearchProvider } from "../src/core/search-provider.js";
import type { Turn } from "../src/core/state.js";
import { createToolbox } from "../tools/index.js";
import { createPlannerNode } from "./planner.js";
import { agentState, halfBlankFile, halfBlankPng, imageRef, modelReply, nodeFixture, rawCall, storedInput, userTurn, written, type NodeFixture } from "../test/node-fakes.js";

const IMAGE_TOOLS = ["crop", "zoom", "rotate", "flip", "adjust", "annotate", "resize"];
const PLAN = [
  { description: "Find the sign", tool_name: "crop", parameters: { image: "img_0" } },
  { description: "Verify", tool_name: "none", parameters: {} },
];
const searchProvider: SearchProvider = {
  name: "fake",
  textSearch: async () => ({ hits: [], images: [] }),
  webVisit: async () => ({ pages: [], failed: [] }),
};

/** A later turn: the conversation has begun and img_0 is stored. */
async function laterTurn(f: NodeFixture, values: Parameters<typeof agentState>[0] = {}) {
  const img0 = await storedInput(f);
  return agentState({ images: [img0], conversation: [userTurn("earlier")], ...values });
}

describe("planner: the first turn", () => {
  it("stores the inputs as img_0…, writes the system turn and the question with the images, then asks the model", async () => {
    const f = await nodeFixture({ script: [modelReply({ content: "<think>look closer</think>", toolCalls: [rawCall("crop", { image: "img_0", bbox: [0, 0, 500, 500] }, "c1")] })] });
    const path = await halfBlankFile(f);
    const update = await createPlannerNode(f.deps)(agentState({ imageSources: [path, path] }), f.config);

    const stored = await f.store.ingest(await halfBlankPng());
    const inputs = [imageRef("img_0", stored, null, null, path), imageRef("img_1", stored, null, null, path)];
    expect(update.images).toEqual(inputs);
    expect(update.imageSources).toEqual([path, path]);
    const opening = [
      { role: "system", dialect: "tools", tools: IMAGE_TOOLS, coords: "rel1000" },
      userTurn("img_0 (400×300):", inputs[0]!, "img_1 (400×300):", inputs[1]!, "What is on the sign?"),
    ];
    expect(update.conversation).toEqual([
      ...opening,
      { role: "assistant", text: "<think>look closer</think>", toolCalls: [rawCall("crop", { image: "img_0", bbox: [0, 0, 500, 500] }, "c1")] },
    ]);
    expect(f.model.requests).toHaveLength(1);
    expect(f.model.requests[0]!.turns).toEqual(opening);
    expect(f.model.requests[0]!.options.tools?.map((t) => t.name)).toEqual(IMAGE_TOOLS);
    expect(update.reply).toEqual({ kind: "calls", think: "look closer" });
    expect(update.pending).toEqual([{ index: 0, callId: "c1", name: "crop", args: { image: "img_0", bbox: [0, 0, 500, 500] }, kind: "image" }]);
  });

  it("keeps a data: URL input in state as a short note naming the stored image", async () => {
    const f = await nodeFixture({ script: [modelReply({ content: "<answer>grey</answer>" })] });
    const bytes = await halfBlankPng();
    const dataUrl = `data:image/png;base64,${bytes.toString("base64")}`;
    const update = await createPlannerNode(f.deps)(agentState({ imageSources: [dataUrl] }), f.config);
    const sha = written(update.images)[0]!.sha256;
    expect(update.imageSources).toEqual([`(data: URL, ${dataUrl.length} characters: stored as img_0, sha256 ${sha})`]);
    expect(await f.store.read({ sha256: sha, mime: "image/png" })).toEqual(bytes);
  });

  it("refuses an empty question before asking the model", async () => {
    const f = await nodeFixture();
    await expect(createPlannerNode(f.deps)(agentState({ question: "  " }), f.config)).rejects.toThrow("the question is empty");
    expect(f.model.requests).toHaveLength(0);
  });
});

describe("planner: a reply", () => {
  it("an answer is reply kind answer with no calls; only the assistant turn is appended", async () => {
    const f = await nodeFixture({ script: [modelReply({ content: "<think>it says STOP</think><answer>STOP</answer>" })] });
    const state = await laterTurn(f);
    const update = await createPlannerNode(f.deps)(state, f.config);
    expect(update.reply).toEqual({ kind: "answer", think: "it says STOP", answer: "STOP" });
    expect(update.pending).toEqual([]);
    expect(update.conversation).toEqual([{ role: "assistant", text: "<think>it says STOP</think><answer>STOP</answer>" }]);
    expect(update.images).toBeUndefined();
    expect(f.model.requests[0]!.turns).toEqual(state.conversation);
  });

  it("adds the turn's usage and emits model_start and model_end", async () => {
    const f = await nodeFixture({ script: [modelReply({ toolCalls: [rawCall("crop", { image: "img_0", bbox: [0, 0, 9, 9] }), rawCall("zoom", "{}")], ms: 12.4 })] });
    const usage = { turns: 2, toolCalls: 1, promptTokens: 100, completionTokens: 50, modelMs: 30, imagesInContext: 1, consecutiveErrors: 0 };
    const update = await createPlannerNode(f.deps)(await laterTurn(f, { usage }), f.config);
    expect(update.usage).toEqual({ ...usage, turns: 3, promptTokens: 110, completionTokens: 55, modelMs: 42.4 });
    expect(f.events).toEqual([
      { event: "model_start", turn: 2 },
      { event: "model_end", turn: 2, ms: 12, kind: "calls", calls: ["crop", "zoom"] },
    ]);
  });

  it("asks with the dialect's request options: tools, or the tags stop string", async () => {
    const f = await nodeFixture({ settings: { dialect: "tags" }, script: [modelReply({ content: "<answer>x</answer>" })] });
    await createPlannerNode(f.deps)(await laterTurn(f), f.config);
    const { signal: _signal, onRetry, ...options } = f.model.requests[0]!.options;
    expect(options).toEqual(dialectRequestOptions("tags", createToolbox([], "rel1000").specs));
    expect(options).toEqual({ stop: ["</tool_call>"] });
    expect(typeof onRetry).toBe("function");
  });
});

describe("planner: validating calls", () => {
  async function validated(calls: ReturnType<typeof rawCall>[], values: Parameters<typeof agentState>[0] = {}, settings = {}) {
    const f = await nodeFixture({ settings, search: [searchProvider], script: [modelReply({ toolCalls: calls })] });
    return createPlannerNode(f.deps)(await laterTurn(f, values), f.config);
  }

  it("an unknown tool, arguments that are not JSON or do not fit, and an image that does not exist are invalid with the reason", async () => {
    const update = await validated([
      rawCall("magnify", { image: "img_0" }, "c0"),
      rawCall("crop", "{not json", "c1"),
      rawCall("crop", { image: "img_0" }, "c2"),
      rawCall("crop", { image: "img_9", bbox: [0, 0, 10, 10] }, "c3"),
      rawCall("text_search", { queries: ["harbour sign"] }, "c4"),
    ]);
    const [unknown, notJson, badArgs, noImage, ok] = update.pending!;
    expect(unknown).toEqual({
      index: 0,
      callId: "c0",
      name: "magnify",
      args: null,
      kind: "invalid",
      error: `unknown tool "magnify". Available tools: ${[...IMAGE_TOOLS, "text_search", "web_visit"].join(", ")}.`,
    });
    expect(notJson).toMatchObject({ index: 1, kind: "invalid", args: null });
    expect(notJson!.error).toMatch(/^the arguments of crop are not valid JSON \(.*\): \{not json$/);
    expect(badArgs).toMatchObject({ index: 2, kind: "invalid" });
    expect(badArgs!.error).toMatch(/^wrong arguments for crop \(bbox: .*\)\. Expected: \{/);
    expect(noImage).toMatchObject({ index: 3, kind: "invalid", error: "no image named img_9. Existing images: img_0." });
    expect(ok).toEqual({ index: 4, callId: "c4", name: "text_search", args: { queries: ["harbour sign"] }, kind: "search" });
  });

  it("calls that share an id or have none get ids of Loupe's own; the assistant turn keeps the model's", async () => {
    const calls = [
      rawCall("crop", { image: "img_0", bbox: [0, 0, 500, 500] }, "x"),
      rawCall("flip", { image: "img_0", axis: "horizontal" }, "x"),
      rawCall("rotate", { image: "img_0", angle: 90 }, ""),
      rawCall("resize", { image: "img_0", width: 100 }, "own"),
    ];
    const update = await validated(calls);
    // The first turn is turn 0 (usage.turns before this reply).
    expect(update.pending!.map((c) => c.callId)).toEqual(["x_0_0", "x_0_1", "call_0_2", "own"]);
    expect((update.conversation as unknown[]).at(-1)).toMatchObject({ role: "assistant", toolCalls: calls });
  });

  it("a search tool no provider serves is invalid, saying it is not configured", async () => {
    const update = await validated([rawCall("image_search", { image_paths: ["img_0"] })]);
    expect(update.pending![0]!.error).toMatch(/^image_search is not configured: no search provider for it is set up\./);
  });

  it("calls past the remaining tool-call budget are refused, not run", async () => {
    const crop = (i: number) => rawCall("crop", { image: "img_0", bbox: [0, 0, 100 * i, 100 * i] }, `c${i}`);
    const update = await validated([crop(1), crop(2), crop(3)], { usage: { ...agentState().usage, toolCalls: 3 } }, { maxToolCalls: 4 });
    expect(update.pending!.map((c) => c.kind)).toEqual(["image", "invalid", "invalid"]);
    expect(update.pending![1]).toEqual({ index: 1, callId: "c2", name: "crop", args: null, kind: "invalid", error: "not run: the budget of 4 tool calls is used up." });
  });

  it("with approveSearch, search calls wait for a person; web_visit and image calls do not", async () => {
    const update = await validated(
      [rawCall("text_search", { queries: ["q"] }, "s"), rawCall("web_visit", { urls: ["https://a.example/"] }, "w"), rawCall("crop", { image: "img_0", bbox: [0, 0, 9, 9] }, "i")],
      {},
      { approveSearch: true },
    );
    expect(update.pending!.map((c) => [c.callId, c.approval])).toEqual([
      ["s", "required"],
      ["w", undefined],
      ["i", undefined],
    ]);
  });
});

describe("planner: Plan mode", () => {
  it("makes the plan before the first action and puts it in the question", async () => {
    const f = await nodeFixture({
      settings: { plan: true },
      script: [modelReply({ content: JSON.stringify(PLAN) }), modelReply({ content: "<answer>planned</answer>" })],
    });
    const update = await createPlannerNode(f.deps)(agentState({ imageSources: [await halfBlankFile(f)] }), f.config);
    expect(f.model.requests).toHaveLength(2);
    const [plan, action] = f.model.requests;
    expect(plan!.turns[0]).toEqual({ role: "system_text", text: planModePrompt(createToolbox([], "rel1000").specs) });
    expect(plan!.options.tools).toBeUndefined();
    expect(update.plan).toEqual(PLAN);
    const question = action!.turns[1]!;
    expect(question.role === "user" && question.parts.at(-1)).toEqual({
      type: "text",
      text: 'What is on the sign?\n\nPlan:\n1. Find the sign [crop {"image":"img_0"}]\n2. Verify [none]',
    });
    expect(update.reply?.kind).toBe("answer");
    expect(update.usage).toMatchObject({ turns: 2, promptTokens: 20, completionTokens: 10, imagesInContext: 1 });
  });

  it("asks once more for a malformed plan, then acts", async () => {
    const f = await nodeFixture({
      settings: { plan: true },
      script: [modelReply({ content: "First I crop, then I search." }), modelReply({ content: `\`\`\`json\n${JSON.stringify(PLAN)}\n\`\`\`` }), modelReply({ content: "<answer>ok</answer>" })],
    });
    const update = await createPlannerNode(f.deps)(agentState({ imageSources: [await halfBlankFile(f)] }), f.config);
    expect(f.model.requests).toHaveLength(3);
    expect(f.model.requests[1]!.turns.slice(2)).toEqual([
      { role: "assistant", text: "First I crop, then I search." },
      userTurn("That plan is not valid (no JSON array found). Output only the JSON array of steps."),
    ]);
    expect(update.plan).toEqual(PLAN);
    expect(update.usage?.turns).toBe(3);
  });

  it("with approvePlan, stops after the plan with the review pending and makes no action request", async () => {
    const f = await nodeFixture({ settings: { approvePlan: true }, script: [modelReply({ content: JSON.stringify(PLAN) })] });
    const update = await createPlannerNode(f.deps)(agentState({ imageSources: [await halfBlankFile(f)] }), f.config);
    expect(f.model.requests).toHaveLength(1);
    expect(update.planReview).toEqual({ status: "pending" });
    expect(update.plan).toEqual(PLAN);
    expect(written(update.images).map((i) => i.id)).toEqual(["img_0"]);
    expect(update.conversation).toBeUndefined();
    expect(update.usage?.turns).toBe(1);
    expect(f.events).toEqual([]);
  });

  it("a run's context cannot turn off the plan review the server's defaults ask for", async () => {
    const f = await nodeFixture({ settings: { approvePlan: true }, context: { approvePlan: false }, script: [modelReply({ content: JSON.stringify(PLAN) })] });
    const update = await createPlannerNode(f.deps)(agentState({ imageSources: [await halfBlankFile(f)] }), f.config);
    expect(update.planReview).toEqual({ status: "pending" });
    expect(f.model.requests).toHaveLength(1);
  });

  it("back from an approved review, acts on the plan with the reviewer's note, without storing the inputs again", async () => {
    const f = await nodeFixture({ settings: { approvePlan: true }, script: [modelReply({ content: "<answer>done</answer>" })] });
    const img0 = await storedInput(f);
    const state = agentState({ images: [img0], plan: PLAN, planReview: { status: "approved", note: "be quick" } });
    const update = await createPlannerNode(f.deps)(state, f.config);
    expect(f.model.requests).toHaveLength(1);
    expect(update.images).toBeUndefined();
    const question = written(update.conversation)[1]!;
    expect(question.role === "user" && question.parts.map((p) => p.type)).toEqual(["text", "image", "text"]);
    expect(question.role === "user" && question.parts.at(-1)).toEqual({
      type: "text",
      text: 'What is on the sign?\n\nPlan:\n1. Find the sign [crop {"image":"img_0"}]\n2. Verify [none]\n\nNote from the person reviewing the plan: be quick',
    });
  });
});

describe("planner: the code tool", () => {
  const working: CodeSandbox = { probe: async () => ({ ok: true }), run: async () => { throw new Error("not run by the planner"); } };

  it("offers code where the sandbox works: the system turn states its limits and the question names each input's path", async () => {
    const f = await nodeFixture({ sandbox: working, settings: { codeTimeoutMs: 9000 }, script: [modelReply({ content: "<think>compute</think>", toolCalls: [rawCall("code", { code: "print(1)" }, "c1")] })] });
    const path = await halfBlankFile(f);
    const one = await createPlannerNode(f.deps)(agentState({ imageSources: [path] }), f.config);
    const conversation = written(one.conversation);
    expect(conversation[0]).toEqual({ role: "system", dialect: "tools", tools: [...IMAGE_TOOLS, "code"], coords: "rel1000", code: { timeoutMs: 9000, memoryMb: 2048, outputBytes: 32768, maxImages: 8 } });
    expect((conversation[1] as Extract<Turn, { role: "user" }>).parts[0]).toEqual({ type: "text", text: `img_0 (400×300; path: ${path}):` });
    expect(one.pending).toEqual([expect.objectContaining({ name: "code", kind: "code", args: { code: "print(1)" } })]);
  });

  it("with code on and no sandbox, the run fails before the model is asked, naming what is missing", async () => {
    const f = await nodeFixture({ settings: { code: "on" } });
    await expect(createPlannerNode(f.deps)(agentState({ imageSources: [await halfBlankFile(f)] }), f.config)).rejects.toThrow(/the code tool is on .* no sandbox in this test/);
    expect(f.model.requests).toHaveLength(0);
  });

  it("later turns offer what the system turn named, and a code call where it was not offered is refused with a reason", async () => {
    const f = await nodeFixture({ sandbox: working, script: [modelReply({ toolCalls: [rawCall("code", { code: "print(2)" }, "c2")] })] });
    const img0 = await storedInput(f);
    const state = agentState({ images: [img0], conversation: [{ role: "system", dialect: "tools", tools: IMAGE_TOOLS, coords: "rel1000" }, userTurn("img_0:", img0, "Q?")], usage: { ...agentState().usage, turns: 1 } });
    const update = await createPlannerNode(f.deps)(state, f.config);
    expect(update.pending).toEqual([expect.objectContaining({ name: "code", kind: "invalid", error: expect.stringContaining("the code tool is not available in this run") })]);
  });
});
