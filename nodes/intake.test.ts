// The planner's intake step on its own: which question is new (a human message by id, or `question`), and a follow-up on a thread that has answered.
import { AIMessage, HumanMessage } from "@langchain/core/messages";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Asked } from "../src/core/state.js";
import { askedUpdate, followUp, newAsk } from "./intake.js";
import { agentState, halfBlankPng, nodeFixture, storedInput } from "../test/node-fakes.js";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");
const asked = (values: Partial<Asked> & { question?: string } = {}): Asked => {
  const { question = "What is on the sign?", ...rest } = values;
  return { questionSha256: sha(question), messageId: "h1", sources: [], ...rest };
};

describe("newAsk", () => {
  it("reads the last human message's text and every standard image block", () => {
    const human = new HumanMessage({
      id: "h1",
      content: [
        { type: "text", text: "Where is this?" },
        { type: "image", url: "https://example.org/a.jpg" },
        { type: "image", mimeType: "image/png", data: "iVBORw0K" },
        { type: "image_url", image_url: { url: "data:image/jpeg;base64,/9j/" } },
        { type: "image", source_type: "base64", mime_type: "image/webp", data: "UklG" },
        { type: "image", url: "/images/x.png", metadata: { loupe_image_id: "img_3" } },
      ] as never,
    });
    expect(newAsk(agentState({ question: undefined as never, messages: [human] }))).toEqual({
      question: "Where is this?",
      sources: ["https://example.org/a.jpg", "data:image/png;base64,iVBORw0K", "data:image/jpeg;base64,/9j/", "data:image/webp;base64,UklG"],
      known: ["img_3"],
      message: human,
    });
  });

  it("a human message already asked (by id) is not new; a new one is, after an AI message", () => {
    const first = new HumanMessage({ id: "h1", content: "What is on the sign?" });
    const answered = { asked: asked(), conversation: [{ role: "user" as const, parts: [] }] };
    expect(newAsk(agentState({ messages: [first, new AIMessage({ id: "a1", content: "LOUPE-42" })], ...answered }))).toBeNull();
    const next = new HumanMessage({ id: "h2", content: "And its colour?" });
    expect(newAsk(agentState({ messages: [first, new AIMessage("x"), next], ...answered }))).toMatchObject({ question: "And its colour?", sources: [], message: next });
  });

  it("`question` is new when it differs from what was asked, or new sources come with it; an old thread's question counts as asked", () => {
    const conversation = [{ role: "user" as const, parts: [] }];
    expect(newAsk(agentState({ question: "Q1", imageSources: ["a.png"] }))).toEqual({ question: "Q1", sources: ["a.png"], known: [] });
    expect(newAsk(agentState({ question: "Q1", imageSources: ["a.png"], asked: asked({ question: "Q1", sources: ["a.png"] }), conversation }))).toBeNull();
    expect(newAsk(agentState({ question: "Q2", imageSources: ["a.png"], asked: asked({ question: "Q1", sources: ["a.png"] }), conversation }))).toEqual({ question: "Q2", sources: [], known: [] });
    expect(newAsk(agentState({ question: "Q1", imageSources: ["a.png", "b.png"], asked: asked({ question: "Q1", sources: ["a.png"] }), conversation }))).toEqual({ question: "Q1", sources: ["b.png"], known: [] });
    expect(newAsk(agentState({ question: "Q1", conversation }))).toBeNull();
  });
});

describe("askedUpdate and followUp", () => {
  it("a question given as `question` gets a human message of its own, whose id is what was asked", async () => {
    const f = await nodeFixture();
    const img0 = await storedInput(f);
    const { messages, asked: record } = askedUpdate(agentState(), { question: "Q?", sources: ["a.png"], known: [] }, [img0], ["a.png"], f.deps);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.getType()).toBe("human");
    expect(messages[0]!.content).toEqual([{ type: "text", text: "Q?" }, { type: "text", text: "[img_0: 400×300]", metadata: { loupe_image_id: "img_0", width: 400, height: 300, sha256: img0.sha256 } }]);
    expect(record).toEqual({ questionSha256: sha("Q?"), messageId: messages[0]!.id, sources: ["a.png"] });
    const data = askedUpdate(agentState(), { question: "Q?", sources: ["data:image/png;base64,AAAA"], known: [] }, [img0], ["data:image/png;base64,AAAA"], f.deps);
    expect(data.asked.sources).toEqual([expect.stringMatching(/^data:sha256:[0-9a-f]{64}$/)]);
  });

  it("a follow-up stores its new images after the thread's, adds its question turn, and clears the answer and the budgets", async () => {
    const f = await nodeFixture({ settings: { maxImagesInContext: 4 } });
    const img0 = await storedInput(f);
    const data = `data:image/png;base64,${(await halfBlankPng()).toString("base64")}`;
    const human = new HumanMessage({ id: "h2", content: [{ type: "text", text: "And this one?" }, { type: "image_url", image_url: { url: data } }] as never });
    const state = agentState({ images: [img0], asked: asked(), messages: [human], final: { answer: "x", citations: [], reason: "answered" }, conversation: [{ role: "system", dialect: "tools", tools: ["crop"], coords: "rel1000" }] });
    const usage = { ...state.usage, turns: 7, toolCalls: 5, promptTokens: 900, imagesInContext: 1 };
    const out = await followUp(f.deps, state, newAsk(state)!, f.settings, usage);
    expect(out.images.map((i) => i.id)).toEqual(["img_0", "img_1"]);
    expect(out.turn).toEqual({ role: "user", parts: [{ type: "text", text: "img_1 (400×300):" }, expect.objectContaining({ type: "image", id: "img_1" }), { type: "text", text: "And this one?" }] });
    expect(out.usage).toMatchObject({ turns: 0, toolCalls: 0, promptTokens: 900, imagesInContext: 2 });
    expect(out.update).toMatchObject({ final: null, exhausted: null, question: "And this one?", asked: { questionSha256: sha("And this one?"), messageId: "h2" } });
    // The human message keeps its id, its image now a reference (no base64).
    const stored = (out.update.messages as HumanMessage[])[0]!;
    expect(stored.id).toBe("h2");
    expect(JSON.stringify(stored.content)).not.toContain("base64");
  });
});
