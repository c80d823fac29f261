// The messages channel in-process: a human message with a base64 image asks, the state keeps no base64, a follow-up (message or `question`) continues the thread with its images, and the model's requests stay prefix extensions.
import { HumanMessage, type BaseMessage } from "@langchain/core/messages";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AgentStateValue } from "../src/core/state.js";
import { fixtureServers, isPrefixExtension, requestText, tempDir, testAgent, testSettings } from "./helpers.js";
import { halfBlankPng } from "./node-fakes.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
const servers = fixtureServers();
beforeEach(async () => {
  tmp = await tempDir();
  servers.track({ close: tmp.cleanup });
});
afterEach(() => servers.closeAll());

const crop = { content: "<think>Look closer.</think>", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } }] };

describe("the messages channel", () => {
  it("a base64 upload is answered; the state keeps a reference, every call has its tool message; a follow-up message reuses the images", async () => {
    const server = await servers.model([crop, { content: "<answer>a half-blank card</answer>" }, { content: "<answer>white</answer>" }]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir });
    const { agent, close } = testAgent(settings);
    const b64 = (await halfBlankPng()).toString("base64");
    const config = { configurable: { thread_id: "chat" }, recursionLimit: 60 };
    const upload = new HumanMessage({ id: "h1", content: [{ type: "text", text: "What is this?" }, { type: "image", mimeType: "image/png", data: b64, metadata: { name: "card.png" } }] as never });
    await agent.invoke({ messages: [upload] } as never, config);
    let state = (await agent.getState(config)).values as AgentStateValue;

    expect(state.final?.answer).toBe("a half-blank card");
    expect(JSON.stringify(state)).not.toContain(b64.slice(0, 40));
    const [human, ai, tool, answer] = state.messages as BaseMessage[];
    expect(human!.id).toBe("h1");
    expect(human!.content).toEqual([
      { type: "text", text: "What is this?" },
      { type: "image", url: expect.stringMatching(/^\/images\/[0-9a-f]{64}-[0-9a-f]{32}\.png$/), mimeType: "image/png", metadata: expect.objectContaining({ loupe_image_id: "img_0", width: 400, height: 300 }) },
    ]);
    const calls = (ai as unknown as { tool_calls: Array<{ id: string; name: string }> }).tool_calls;
    expect(calls.map((c) => c.name)).toEqual(["crop"]);
    expect((tool as unknown as { tool_call_id: string }).tool_call_id).toBe(calls[0]!.id);
    expect(String(tool!.content)).toMatch(/img_1 \(200×150; crop \[0,0,200,150\]\) !\[img_1\]\(\/images\/[0-9a-f-]+\.png\)/);
    expect(answer!.getType()).toBe("ai");
    expect(String(answer!.content)).toMatch(/^a half-blank card\n\nSources:\n- img_1$/);

    await agent.invoke({ messages: [new HumanMessage({ id: "h2", content: "What colour is the blank half?" })] } as never, config);
    state = (await agent.getState(config)).values as AgentStateValue;
    close();
    expect(state.final?.answer).toBe("white");
    expect(state.messages.map((m) => m.getType())).toEqual(["human", "ai", "tool", "ai", "human", "ai"]);
    expect(state.images.map((i) => i.id)).toEqual(["img_0", "img_1"]);
    const chats = server.chatRequests();
    expect(chats).toHaveLength(3);
    expect(isPrefixExtension(chats[1]!.rawBody, chats[2]!.rawBody)).toBe(true);
    expect(requestText(chats[2]!.body).endsWith("What colour is the blank half?")).toBe(true);
  });

  it("a second run with a new `question` (and a new image) is asked, not ignored; the model sees the thread go on", async () => {
    const server = await servers.model([{ content: "<answer>first</answer>" }, crop, { content: "<answer>second</answer>" }]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir });
    const { agent, close } = testAgent(settings);
    const dataUrl = `data:image/png;base64,${(await halfBlankPng()).toString("base64")}`;
    const config = { configurable: { thread_id: "q" }, recursionLimit: 60 };
    const first = (await agent.invoke({ question: "Q1?", imageSources: [dataUrl] } as never, config)) as { final: { answer: string } };
    const second = (await agent.invoke({ question: "Q2?", imageSources: [dataUrl, dataUrl] } as never, config)) as { final: { answer: string } };
    const state = (await agent.getState(config)).values as AgentStateValue;
    close();
    expect([first.final.answer, second.final.answer]).toEqual(["first", "second"]);
    // The second data: URL string is the same as the first: only what was not asked before is new.
    expect(state.images.map((i) => i.id)).toEqual(["img_0", "img_1"]);
    expect(state.messages.filter((m) => m.getType() === "human").map((m) => (m.content as Array<{ text?: string }>)[0]!.text)).toEqual(["Q1?", "Q2?"]);
    expect(JSON.stringify(state)).not.toContain(dataUrl.slice(30, 90));
    const chats = server.chatRequests();
    expect(isPrefixExtension(chats[0]!.rawBody, chats[1]!.rawBody)).toBe(true);
    expect(requestText(chats[1]!.body).endsWith("Q2?")).toBe(true);
  });

  it("a run on an answered thread with nothing new asked fails with a readable error", async () => {
    const server = await servers.model([{ content: "<answer>done</answer>" }]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir });
    const { agent, close } = testAgent(settings);
    const config = { configurable: { thread_id: "same" }, recursionLimit: 60 };
    await agent.invoke({ question: "Q?" } as never, config);
    await expect(agent.invoke({ question: "Q?" } as never, config)).rejects.toThrow(/answered its question and no new one was given/);
    close();
  });
});
