// Thinking models and tool messages through a real model client and a loopback server: reasoning read and sent back, images in tool messages, and a server that refuses them.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ask } from "../src/run/ask.js";
import { fixtureServers, imagesInRequest, isPrefixExtension, tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import { halfBlankPng } from "./node-fakes.js";

type Message = { role: string; content?: unknown; reasoning?: string; reasoning_content?: string };

let tmp: Awaited<ReturnType<typeof tempDir>>;
let image: string;
const servers = fixtureServers();

beforeEach(async () => {
  tmp = await tempDir();
  servers.track({ close: tmp.cleanup });
  image = await writeImage(tmp.dir, "half.png", await halfBlankPng());
});
afterEach(() => servers.closeAll());

describe.each([
  ["streamed, field reasoning", true, "reasoning"],
  ["not streamed, field reasoning_content", false, "reasoning_content"],
] as const)("a Thinking model behind --reasoning-parser (%s)", (_, stream, field) => {
  it("each request sends back the reasoning of every earlier turn; whitespace-only content with calls goes as []", async () => {
    const server = await servers.model([
      { reasoning: "The sign is top left.", reasoningField: field, content: "\n\n", toolCalls: [{ id: "c1", name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } }] },
      { reasoning: "Now mirror it.", reasoningField: field, content: "Mirroring.\n", toolCalls: [{ id: "c2", name: "flip", arguments: { image: "img_1", axis: "horizontal" } }] },
      { reasoning: "Done.", reasoningField: field, content: "<answer>a harbour</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, stream });
    const { agent, close } = testAgent(settings);
    const result = await ask(agent, { settings, question: "What is it?", images: [image] });
    close();

    expect(result.answer).toBe("a harbour");
    const chats = server.chatRequests();
    expect(chats).toHaveLength(3);
    const assistants = (k: number) => (chats[k]!.body.messages as Message[]).filter((m) => m.role === "assistant");
    expect(assistants(1)).toEqual([expect.objectContaining({ content: [], reasoning: "The sign is top left.", reasoning_content: "The sign is top left." })]);
    expect(assistants(2).map((m) => [m.content, m.reasoning, m.reasoning_content])).toEqual([
      [[], "The sign is top left.", "The sign is top left."],
      ["Mirroring.", "Now mirror it.", "Now mirror it."],
    ]);
    expect(isPrefixExtension(chats[0]!.rawBody, chats[1]!.rawBody)).toBe(true);
    expect(isPrefixExtension(chats[1]!.rawBody, chats[2]!.rawBody)).toBe(true);
  });
});

describe("images in tool messages", () => {
  it("a call's image travels in its tool message, and no user turn follows the tool messages", async () => {
    const server = await servers.model([
      { content: "<think>crop</think>", toolCalls: [{ id: "c1", name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } }] },
      { content: "<answer>ok</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir });
    const { agent, close } = testAgent(settings);
    await ask(agent, { settings, question: "q?", images: [image] });
    close();
    const messages = server.chatRequests()[1]!.body.messages as Message[];
    expect(messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "tool"]);
    expect(await imagesInRequest({ messages: [messages[3]] })).toEqual([[200, 150]]);
  });

  it("a server that refuses them fails with a message naming LOUPE_TOOL_IMAGES=user, and that setting works with it", async () => {
    const model = await servers.model([
      { content: "<think>crop</think>", toolCalls: [{ id: "c1", name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } }] },
      { content: "<answer>ok</answer>" },
    ]);
    // A front that refuses any request with an image part in a tool message, as some servers do.
    const front = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks).toString();
      const messages = (body ? JSON.parse(body).messages : []) as Message[];
      if (messages.some((m) => m.role === "tool" && Array.isArray(m.content) && JSON.stringify(m.content).includes("image_url"))) {
        res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "tool messages must be text" } }));
        return;
      }
      const upstream = await fetch(new URL(req.url!, model.url.replace(/\/v1$/, "/")), { method: req.method, headers: { "content-type": "application/json" }, body: body || undefined });
      res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json" });
      res.end(Buffer.from(await upstream.arrayBuffer()));
    });
    await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
    servers.track({ close: () => new Promise<void>((resolve) => front.close(() => resolve())) });
    const url = `http://127.0.0.1:${(front.address() as AddressInfo).port}/v1`;

    const refused = testSettings({ modelUrl: url, dataDir: tmp.dir, stream: false });
    const first = testAgent(refused);
    await expect(ask(first.agent, { settings: refused, question: "q?", images: [image] })).rejects.toThrow(/HTTP 400.*tool messages must be text.*set LOUPE_TOOL_IMAGES=user/);
    first.close();

    const user = testSettings({ modelUrl: url, dataDir: tmp.dir, stream: false, toolImages: "user" });
    const second = testAgent(user);
    const result = await ask(second.agent, { settings: user, question: "q?", images: [image], threadId: "with-user-turns" });
    second.close();
    expect(result.answer).toBe("ok");
  });
});
