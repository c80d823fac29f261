// The answer node on its own: the final answer with its citations, and the one last request when a budget ran out.
import { describe, expect, it } from "vitest";
import { dialectRequestOptions, finalAnswerRequest } from "../src/core/protocol.js";
import type { SearchProvider } from "../src/core/search-provider.js";
import type { ToolCallRecord, Turn } from "../src/core/state.js";
import { createToolbox } from "../tools/index.js";
import { collectCitations, createAnswerNode, NO_ANSWER } from "./answer.js";
import { createPlannerNode } from "./planner.js";
import { written, agentState, modelReply, nodeFixture, rawCall, storedInput, userTurn, type NodeFixtureOptions } from "../test/node-fakes.js";

const record = (step: number, name: string, values: Partial<ToolCallRecord> = {}): ToolCallRecord => ({
  step,
  turn: step - 1,
  name,
  arguments: {},
  ok: true,
  ms: 1,
  images: [],
  urls: [],
  ...values,
});
const url = (u: string, title?: string) => (title ? { url: u, title } : { url: u });
const EARLIER: Turn[] = [userTurn("What is on the sign?"), { role: "assistant", text: "", toolCalls: [rawCall("crop", { image: "img_0", bbox: [0, 0, 9, 9] })] }];
const searchProvider: SearchProvider = { name: "fake", textSearch: async () => ({ hits: [], images: [] }) };

/** Runs the answer node after a budget ran out, the model's last reply scripted. */
async function afterBudget(last: Parameters<typeof modelReply>[0], options: NodeFixtureOptions = {}, exhausted: string | null = "You have used all 2 tool calls.") {
  const f = await nodeFixture({ ...options, script: [modelReply(last)] });
  const state = agentState({ conversation: EARLIER, exhausted, usage: { ...agentState().usage, turns: 3, toolCalls: 2 } });
  const update = await createAnswerNode(f.deps)(state, f.config);
  return { f, update };
}

describe("answer: the model answered", () => {
  it("is final with reason answered, citing the pages and the images the answer or its thinking names", async () => {
    const f = await nodeFixture();
    const toolCalls = [
      record(1, "text_search", { urls: [url("https://a.example/office", "Office"), url("https://b.example/")] }),
      record(2, "crop", { images: ["img_1"] }),
      record(3, "crop", { images: ["img_2"] }),
    ];
    const answer = "The harbour office (https://a.example/office).";
    const state = agentState({ toolCalls, reply: { kind: "answer", think: "img_2 shows the sign", answer } });
    const update = await createAnswerNode(f.deps)(state, f.config);
    const citations = [{ type: "url", url: "https://a.example/office", title: "Office" }, { type: "image", id: "img_2" }];
    expect(update.final).toEqual({ answer, reason: "answered", citations });
    // The answer is also the last AI message, its citations listed after it.
    const [message] = written(update.messages as never[]) as unknown[];
    expect(message).toMatchObject({ content: `${answer}\n\nSources:\n- [Office](https://a.example/office)\n- img_2`, name: "fake-model", response_metadata: { citations, reason: "answered" } });
    expect(f.model.requests).toHaveLength(0);
    expect(f.events).toEqual([{ event: "answer", answer }]);
  });
});

describe("collectCitations", () => {
  it("without a named URL, cites the pages read with web_visit, and the last image made when none is named", () => {
    const toolCalls = [
      record(1, "crop", { images: ["img_1"] }),
      record(2, "web_visit", { urls: [url("https://p1.example/"), url("https://p2.example/", "P2")] }),
      record(3, "text_search", { urls: [url("https://s1.example/")] }),
      record(4, "crop", { images: ["img_2"] }),
      record(5, "crop", { ok: false, images: [], error: "bad box" }),
    ];
    // img_0 is an input image, not a tool's: naming it cites nothing.
    expect(collectCitations("It is a ferry, as img_0 shows.", toolCalls)).toEqual([
      { type: "url", url: "https://p1.example/" },
      { type: "url", url: "https://p2.example/", title: "P2" },
      { type: "image", id: "img_2" },
    ]);
  });

  it("without a named URL or a page read, cites the last search's first three results; failed calls cite nothing", () => {
    const toolCalls = [
      record(1, "text_search", { urls: [url("https://old.example/")] }),
      record(2, "text_search", { urls: ["1", "2", "3", "4"].map((n) => url(`https://r${n}.example/`)) }),
      record(3, "web_visit", { ok: false, urls: [url("https://failed.example/")] }),
    ];
    expect(collectCitations("A ferry.", toolCalls)).toEqual(["1", "2", "3"].map((n) => ({ type: "url", url: `https://r${n}.example/` })));
  });
});

describe("answer: a budget ran out", () => {
  it("asks once more with toolChoice none and the same tools as the planner's requests, the request appended", async () => {
    const f = await nodeFixture({
      search: [searchProvider],
      script: [modelReply({ toolCalls: [rawCall("crop", { image: "img_0", bbox: [0, 0, 9, 9] })] }), modelReply({ content: "<think>out of calls</think><answer>best guess</answer>", ms: 9 })],
    });
    const img0 = await storedInput(f);
    await createPlannerNode(f.deps)(agentState({ images: [img0], conversation: EARLIER.slice(0, 1) }), f.config);
    const usage = { ...agentState().usage, turns: 3, toolCalls: 2, promptTokens: 50, completionTokens: 20, modelMs: 100 };
    const state = agentState({ images: [img0], conversation: EARLIER, exhausted: "You have used all 2 tool calls.", usage });
    const update = await createAnswerNode(f.deps)(state, f.config);

    const [planner, last] = f.model.requests;
    expect(last!.options.toolChoice).toBe("none");
    expect(last!.options.tools).toEqual(planner!.options.tools);
    expect(last!.options.tools).toEqual(dialectRequestOptions("tools", createToolbox(f.deps.search, "rel1000").specs).tools);
    expect(last!.options.tools!.map((t) => t.name)).toContain("text_search");
    const request = userTurn("<tool_response>\nYou have used all 2 tool calls. Do not call any more tools. Give your best final answer now, inside <answer>…</answer>.\n</tool_response>");
    expect(last!.turns).toEqual([...EARLIER, request]);
    expect(update.conversation).toEqual([request, { role: "assistant", text: "<think>out of calls</think><answer>best guess</answer>" }]);
    expect(update.usage).toEqual({ ...usage, turns: 4, promptTokens: 60, completionTokens: 25, modelMs: 109 });
    expect(update.final).toEqual({ answer: "best guess", citations: [], reason: "budget" });
    expect(f.events.at(-1)).toEqual({ event: "answer", answer: "best guess" });
  });

  it("a model that still calls a tool: the text it wrote beside the call is the answer", async () => {
    const { update } = await afterBudget({ content: "It is most likely a harbour sign.", toolCalls: [rawCall("crop", { image: "img_0", bbox: [0, 0, 5, 5] })] });
    expect(update.final).toMatchObject({ answer: "It is most likely a harbour sign.", reason: "budget" });
  });

  it("a model that only thinks: no_answer, and its thinking is not passed off as the answer", async () => {
    const { f, update } = await afterBudget({ content: "<think>probably a cat</think>" });
    expect(update.final).toEqual({ answer: NO_ANSWER, citations: [], reason: "no_answer" });
    expect(f.events.at(-1)).toEqual({ event: "answer", answer: NO_ANSWER });
  });

  it("a model that only calls a tool: no_answer, with the plain statement", async () => {
    const { update } = await afterBudget({ content: "", toolCalls: [rawCall("crop", { image: "img_0", bbox: [0, 0, 5, 5] })] });
    expect(update.final).toEqual({ answer: NO_ANSWER, citations: [], reason: "no_answer" });
    expect(NO_ANSWER).toBe("(no answer: the budget ran out and the model gave none)");
  });

  it("thinking cut off by the token limit, or nothing at all: no_answer", async () => {
    for (const last of [{ content: "<think>the sign might say LOU", finishReason: "length" as const }, { content: "" }, { content: "  \n" }]) {
      const { update } = await afterBudget(last);
      expect(update.final, JSON.stringify(last)).toEqual({ answer: NO_ANSWER, citations: [], reason: "no_answer" });
    }
  });

  it("no_answer still cites the pages the run read", async () => {
    const toolCalls = [record(1, "web_visit", { urls: [url("https://p.example/")] })];
    const f = await nodeFixture({ script: [modelReply({ content: "<think>p.example says</think>" })] });
    const state = agentState({ conversation: EARLIER, exhausted: "You have used all 1 tool calls.", toolCalls });
    const update = await createAnswerNode(f.deps)(state, f.config);
    expect(update.final).toEqual({ answer: NO_ANSWER, citations: [{ type: "url", url: "https://p.example/" }], reason: "no_answer" });
  });

  it("tags dialect: the stop string and no tools (so toolChoice has nothing to act on), the request as an observation", async () => {
    const { f, update } = await afterBudget({ content: "<think>hmm</think>I think it is a cat.<tool_call>{\"name\": \"crop\"" }, { settings: { dialect: "tags" } }, null);
    const { options, turns } = f.model.requests[0]!;
    expect(options.stop).toEqual(["</tool_call>"]);
    expect(options.tools).toBeUndefined();
    expect(turns.at(-1)).toEqual(finalAnswerRequest("tags", "You have reached the step limit."));
    expect(turns.at(-1)).toEqual(
      userTurn("<observation>\nYou have reached the step limit. Do not call any more tools. Give your best final answer now, inside <answer>…</answer>.\n</observation>"),
    );
    expect(update.final?.answer).toBe("I think it is a cat.");
  });

  it("tags dialect: thinking and a tool call and nothing else is no_answer", async () => {
    const { update } = await afterBudget({ content: "<think>crop more</think>\n<tool_call>{\"name\": \"crop\"" }, { settings: { dialect: "tags" } });
    expect(update.final).toEqual({ answer: NO_ANSWER, citations: [], reason: "no_answer" });
  });

  it("tags dialect: an <answer> is the answer", async () => {
    const { update } = await afterBudget({ content: "<think>x</think><answer>a tabby cat</answer>" }, { settings: { dialect: "tags" } });
    expect(update.final).toEqual({ answer: "a tabby cat", citations: [], reason: "budget" });
  });
});
