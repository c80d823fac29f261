// Loupe inside other people's agents, each example run for real with a scripted parent model: a tool of langchain's createAgent, a node of a messages graph, a supervisor member; and the tool's errors as the parent model reads them.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from "@langchain/core/messages";
import { Command, MemorySaver } from "@langchain/langgraph";
import { askWithLoupeTool } from "../examples/tool.js";
import { askInChat, buildChatGraph, humanMessageWithImages } from "../examples/subgraph.js";
import { askSupervisor } from "../examples/supervisor.js";
import { createLoupeTool, loupeInputFromMessages, LoupeToolError, type AskResult, type LoupeNodeOptions } from "../src/index.js";
import { startScriptedModelServer, type RecordedRequest, type ScriptedModelServer, type ScriptedTurn } from "../src/cli/demo/scripted-model-server.js";
import { harbourImage } from "../src/cli/demo/trajectory.js";
import { imagesInRequest, tempDir } from "./helpers.js";

const QUESTION = "What does the blue sign say?";
const ANSWER = "The sign says LOUPE-42.";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let vision: ScriptedModelServer | undefined;
let parent: ScriptedModelServer | undefined;
let images: { server: Server; url: string } | undefined;
let jpeg: Buffer;

beforeEach(async () => {
  tmp = await tempDir();
  jpeg ??= await harbourImage(800, 600);
});
afterEach(async () => {
  await vision?.close();
  await parent?.close();
  await new Promise((done) => (images ? images.server.close(done) : done(undefined)));
  vision = parent = images = undefined;
  await tmp.cleanup();
});

/** Loupe's vision model: a crop of the sign, then the answer naming the crop (so it is cited). */
async function startVision(): Promise<ScriptedModelServer> {
  return startScriptedModelServer({
    script: [
      { content: "<think>The sign is small; crop it.</think>", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [200, 200, 550, 450] } }] },
      { content: `<think>img_1 shows the sign clearly.</think>\n<answer>${ANSWER}</answer>` },
    ],
  });
}

function loupeOptions(modelUrl: string, extra: Partial<LoupeNodeOptions> = {}): LoupeNodeOptions {
  return { config: { modelUrl, dataDir: tmp.dir, retries: 1, retryBaseMs: 10, searchCache: "live", stream: false }, env: {}, ...extra };
}

/** The image on a loopback HTTP server (which Loupe fetches only when its host is allowed). */
async function serveImage(): Promise<{ server: Server; url: string; host: string }> {
  const server = createServer((_req, res) => res.writeHead(200, { "content-type": "image/jpeg" }).end(jpeg));
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  images = { server, url: `http://${host}/harbour.jpg` };
  return { ...images, host };
}

/** The first request Loupe's model received held the input image at its size. */
async function expectImageSeen(server: ScriptedModelServer) {
  const requests = server.chatRequests();
  expect(requests).toHaveLength(2);
  expect(await imagesInRequest(requests[0]!.body)).toEqual([[800, 600]]);
}

type WireMessage = { role: string; content?: unknown; name?: string };
const wireText = (m: WireMessage | undefined) =>
  typeof m?.content === "string" ? m.content : Array.isArray(m?.content) ? m.content.map((p: { text?: string }) => p.text ?? "").join("") : "";

/** A parent turn answering from what a message of the request says (so a lost result shows up as a wrong answer). */
function answerFrom(pick: (messages: WireMessage[]) => WireMessage | undefined): (req: RecordedRequest) => ScriptedTurn {
  return (req) => ({ content: `Here is what Loupe found: ${wireText(pick(req.body.messages as WireMessage[])) || "(nothing)"}` });
}

/** The AI messages named loupe that answer (the supervisor's handoff back is named after its member too, but is a tool call). */
const aiNamedLoupe = (messages: BaseMessage[]) => messages.filter((m) => AIMessage.isInstance(m) && m.name === "loupe" && !m.tool_calls?.length);

describe("examples/tool.ts: Loupe as a tool of langchain's createAgent", () => {
  it("the parent model calls loupe with an image URL and answers with Loupe's answer and sources", async () => {
    vision = await startVision();
    const image = await serveImage();
    parent = await startScriptedModelServer({
      script: [
        { toolCalls: [{ name: "loupe", arguments: { question: QUESTION, images: [image.url] } }] },
        answerFrom((messages) => messages.findLast((m) => m.role === "tool")),
      ],
    });
    const { answer, messages } = await askWithLoupeTool({
      parent: { url: parent.url, model: "scripted-parent", apiKey: "x" },
      loupe: { ...loupeOptions(vision.url), imageAllowHosts: [image.host] },
      question: QUESTION,
      images: [image.url],
    });

    expect(answer).toContain(ANSWER);
    expect(answer).toMatch(/Sources:\n- image img_1 \(crop \[[\d,]+\], \d+×\d+\)/);
    await expectImageSeen(vision);
    // The parent model was offered the tool with its schema, and the user's image URL.
    const first = parent.chatRequests()[0]!.body;
    const spec = first.tools.find((t: { function: { name: string } }) => t.function.name === "loupe").function;
    expect(Object.keys(spec.parameters.properties).sort()).toEqual(["images", "question"]);
    expect(JSON.stringify(first.messages)).toContain(image.url);
    // The tool message: the answer as text, the structured result as its artifact.
    const result = messages.find((m): m is ToolMessage => ToolMessage.isInstance(m))!;
    expect(result.status).toBe("success");
    expect(result.text).toContain(ANSWER);
    const artifact = result.artifact as AskResult;
    expect([artifact.answer, artifact.reason, artifact.toolCalls.map((c) => c.name)]).toEqual([ANSWER, "answered", ["crop"]]);
    expect(artifact.citations).toEqual([{ type: "image", id: "img_1" }]);
  });

  it("a refused image comes back to the parent model as a tool error it can read and relay", async () => {
    vision = await startVision();
    parent = await startScriptedModelServer({
      script: [
        { toolCalls: [{ name: "loupe", arguments: { question: QUESTION, images: ["/etc/passwd"] } }] },
        answerFrom((messages) => messages.findLast((m) => m.role === "tool")),
      ],
    });
    const { answer, messages } = await askWithLoupeTool({
      parent: { url: parent.url, model: "scripted-parent", apiKey: "x" },
      loupe: loupeOptions(vision.url),
      question: QUESTION,
      images: ["/etc/passwd"],
    });
    const result = messages.find((m): m is ToolMessage => ToolMessage.isInstance(m))!;
    expect(result.status).toBe("error");
    expect(result.text).toMatch(/Loupe could not answer: image \/etc\/passwd is not a URL: give images as http\(s\) URLs or data: URLs/);
    expect(answer).toContain("is not a URL");
    expect(vision.chatRequests()).toHaveLength(0);
  });
});

describe("createLoupeTool", () => {
  const dataUrl = () => `data:image/jpeg;base64,${jpeg.toString("base64")}`;

  it("refuses a local file, and a loopback URL whose host is not allowed, before any model call", async () => {
    vision = await startVision();
    const image = await serveImage();
    const loupe = createLoupeTool(loupeOptions(vision.url));
    await expect(loupe.invoke({ question: QUESTION, images: ["/etc/hostname"] })).rejects.toThrow(LoupeToolError);
    await expect(loupe.invoke({ question: QUESTION, images: ["file:///etc/hostname"] })).rejects.toThrow(/file:\/\/\/etc\/hostname is not a URL/);
    await expect(loupe.invoke({ question: QUESTION, images: [image.url] })).rejects.toThrow(
      /^Loupe could not answer: .*cannot download image http:\/\/127\.0\.0\.1:\d+\/harbour\.jpg: refused to fetch it/,
    );
    expect(vision.chatRequests()).toHaveLength(0);
  });

  it("says the model server is unreachable in one line", async () => {
    const closed = await startScriptedModelServer();
    const url = closed.url;
    await closed.close();
    const loupe = createLoupeTool({ ...loupeOptions(url), name: "look_closely", description: "Looks closely." });
    expect([loupe.name, loupe.description]).toEqual(["look_closely", "Looks closely."]);
    const err = await loupe.invoke({ question: QUESTION, images: [dataUrl()] }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(LoupeToolError);
    expect((err as Error).message).toMatch(/^Loupe could not answer: .*127\.0\.0\.1/);
    expect((err as Error).message).not.toContain("\n");
    expect((err as Error).message).not.toContain(jpeg.toString("base64").slice(0, 40));
  });

  it("a run that stops for a person's review is an error saying which setting to turn off", async () => {
    vision = await startScriptedModelServer({ script: [{ content: JSON.stringify([{ description: "Read the sign", tool_name: "none", parameters: {} }]) }] });
    const loupe = createLoupeTool(loupeOptions(vision.url, { config: { ...loupeOptions(vision.url).config, approvePlan: true } }));
    await expect(loupe.invoke({ question: QUESTION, images: [dataUrl()] })).rejects.toThrow(
      /^Loupe could not answer: thread \S+ is waiting for a person to review the plan; .*turn Loupe's approval settings off/,
    );
  });

  it("called as a tool call, returns a tool message with the text and the AskResult artifact; a data: URL works", async () => {
    vision = await startVision();
    const loupe = createLoupeTool(loupeOptions(vision.url));
    const message = (await loupe.invoke({ type: "tool_call", id: "call_1", name: "loupe", args: { question: QUESTION, images: [dataUrl()] } })) as ToolMessage;
    expect(message.tool_call_id).toBe("call_1");
    expect(message.text.split("\n")[0]).toBe(ANSWER);
    expect((message.artifact as AskResult).images.map((i) => [i.id, i.op?.split(" ")[0] ?? null])).toEqual([["img_0", null], ["img_1", "crop"]]);
    await expectImageSeen(vision);
  });
});

describe("examples/subgraph.ts: Loupe as a node of a messages graph", () => {
  it("answers the last human message's image question with exactly one AI message named loupe", async () => {
    vision = await startVision();
    // agent-chat-ui's upload: a base64 image block.
    const message = new HumanMessage({ content: [{ type: "text", text: QUESTION }, { type: "image", mimeType: "image/jpeg", data: jpeg.toString("base64") }] });
    const checkpointer = new MemorySaver();
    const { answer, messages } = await askInChat({ loupe: loupeOptions(vision.url), message, checkpointer, threadId: "chat-1" });

    expect(messages).toHaveLength(2);
    expect(aiNamedLoupe(messages)).toHaveLength(1);
    expect(answer).toContain(ANSWER);
    expect(answer).toContain("Sources:\n- image img_1");
    expect((messages[1]!.response_metadata as { loupe?: unknown }).loupe).toMatchObject({ answer: ANSWER, reason: "answered", citations: [{ type: "image", id: "img_1" }] });
    await expectImageSeen(vision);
    // Loupe ran as a subgraph, checkpointed in the parent's thread.
    const namespaces = new Set<string>();
    for await (const t of checkpointer.list({ configurable: { thread_id: "chat-1" } })) namespaces.add(String(t.config.configurable?.checkpoint_ns ?? ""));
    expect([...namespaces].some((ns) => ns.startsWith("loupe:"))).toBe(true);
  });

  it("Loupe's plan review pauses the parent graph, and the parent's resume continues Loupe to its one message", async () => {
    vision = await startScriptedModelServer({
      script: [
        { content: JSON.stringify([{ description: "Read the sign", tool_name: "none", parameters: {} }]) },
        { content: `<answer>${ANSWER}</answer>` },
      ],
    });
    const checkpointer = new MemorySaver();
    const graph = buildChatGraph(loupeOptions(vision.url, { config: { ...loupeOptions(vision.url).config, approvePlan: true } })).compile({ checkpointer });
    const config = { configurable: { thread_id: "chat-review" } };
    const message = await humanMessageWithImages(QUESTION, [`data:image/jpeg;base64,${jpeg.toString("base64")}`]);
    await graph.invoke({ messages: [message] }, config);
    const pausedState = await graph.getState(config);
    expect(pausedState.tasks.flatMap((t) => t.interrupts).map((i) => (i.value as { type?: string }).type)).toEqual(["plan_review"]);
    const out = await graph.invoke(new Command({ resume: { action: "approve" } }), config);
    expect(out.messages).toHaveLength(2);
    expect(aiNamedLoupe(out.messages)).toHaveLength(1);
    expect(out.messages[1]!.text).toBe(ANSWER);
    expect(vision.chatRequests()).toHaveLength(2);
  });

  it("a message without an image gets a reply asking for one; a file path in an image block gets Loupe's refusal as its message", async () => {
    vision = await startVision();
    const noImage = await askInChat({ loupe: loupeOptions(vision.url), message: new HumanMessage("Hello?") });
    expect(noImage.messages).toHaveLength(2);
    expect(aiNamedLoupe(noImage.messages)).toHaveLength(0);
    expect(noImage.answer).toMatch(/Attach an image/);

    const file = await askInChat({ loupe: loupeOptions(vision.url), message: new HumanMessage({ content: [{ type: "text", text: QUESTION }, { type: "image", url: "/etc/hostname" }] }) });
    expect(aiNamedLoupe(file.messages)).toHaveLength(1);
    expect(file.answer).toMatch(/^Loupe could not answer: image \/etc\/hostname is not a URL/);
    expect(vision.chatRequests()).toHaveLength(0);
  });

  it("reads every image block shape LangChain and its front ends use", async () => {
    const b64 = jpeg.toString("base64");
    const data = `data:image/jpeg;base64,${b64}`;
    const message = new HumanMessage({
      content: [
        { type: "text", text: "Compare" },
        { type: "image", url: "https://example.org/a.jpg" },
        { type: "image", data: b64, mimeType: "image/jpeg" },
        { type: "image_url", image_url: { url: "https://example.org/b.png" } },
        { type: "image_url", image_url: data },
        { type: "image", source_type: "url", url: "https://example.org/c.webp" },
        { type: "image", source_type: "base64", data: b64, mime_type: "image/png" },
        { type: "text", text: "these." },
      ] as never,
    });
    expect(loupeInputFromMessages([message, new AIMessage("earlier answer")])).toEqual({
      question: "Compare\nthese.",
      images: ["https://example.org/a.jpg", data, "https://example.org/b.png", data, "https://example.org/c.webp", `data:image/png;base64,${b64}`],
    });
    expect(() => loupeInputFromMessages([new HumanMessage({ content: [{ type: "file", mimeType: "application/pdf", data: "JVBERi0=" }] as never })])).toThrow(
      /application\/pdf file: Loupe reads images only/,
    );
  });
});

describe("examples/supervisor.ts: Loupe as a member of a langgraph-supervisor", () => {
  it("the supervisor hands off to loupe, gets one message back, and answers with it", async () => {
    vision = await startVision();
    parent = await startScriptedModelServer({
      script: [
        { toolCalls: [{ name: "transfer_to_loupe", arguments: {} }] },
        // Loupe's answer reaches the supervisor's model as an assistant message named loupe (its handoff back is a tool call).
        answerFrom((messages) => messages.findLast((m) => m.role === "assistant" && m.name === "loupe" && !("tool_calls" in m))),
      ],
    });
    const { answer, messages } = await askSupervisor({
      parent: { url: parent.url, model: "scripted-parent", apiKey: "x" },
      loupe: loupeOptions(vision.url),
      message: await humanMessageWithImages(QUESTION, [`data:image/jpeg;base64,${jpeg.toString("base64")}`]),
    });

    expect(answer).toContain(ANSWER);
    await expectImageSeen(vision);
    expect(aiNamedLoupe(messages)).toHaveLength(1);
    expect(aiNamedLoupe(messages)[0]!.text).toContain(ANSWER);
    // The supervisor's model saw the user's image in OpenAI's shape, and was offered the handoff with the member's description.
    const user = (parent.chatRequests()[0]!.body.messages as WireMessage[]).find((m) => m.role === "user")!;
    expect((user.content as Array<{ type: string }>).map((p) => p.type)).toEqual(["text", "image_url"]);
    const handoff = parent.chatRequests()[0]!.body.tools.find((t: { function: { name: string } }) => t.function.name === "transfer_to_loupe");
    expect(handoff.function.description).toMatch(/looking closely/);
  });
});
