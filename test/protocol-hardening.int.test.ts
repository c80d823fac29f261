// The model protocol under a misbehaving model or server: duplicate tool-call ids, replies that are not chat completions, garbage streams.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ModelServerError } from "../src/core/model.js";
import { ask } from "../src/run/ask.js";
import { baseEnv, fixtureServers, isPrefixExtension, requestText, runCli, tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import { halfBlankPng } from "./node-fakes.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let image: string;
const servers = fixtureServers();

beforeEach(async () => {
  tmp = await tempDir();
  // Removed with the servers, after each test.
  servers.track({ close: tmp.cleanup });
  image = await writeImage(tmp.dir, "half.png", await halfBlankPng());
});
afterEach(() => servers.closeAll());

type ChatMessage = { role: string; content?: unknown; tool_call_id?: string; tool_calls?: Array<{ id: string }> };

describe.each([true, false])("tool-call ids of one turn (stream %s)", (stream) => {
  it.each([
    ["the same id", "x", "x"],
    ["empty ids", "", ""],
  ])("two calls with %s each run and keep their own result; the assistant turn keeps the raw ids", async (_, id0, id1) => {
    const server = await servers.model([
      {
        content: "<think>Crop, then mirror.</think>",
        toolCalls: [
          { id: id0, name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } },
          { id: id1, name: "flip", arguments: { image: "img_0", axis: "horizontal" } },
        ],
      },
      { content: "<answer>done</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, stream });
    const { agent, close } = testAgent(settings);
    const result = await ask(agent, { settings, question: "q?", images: [image] });
    close();

    expect(result.toolCalls.map((c) => [c.name, c.ok])).toEqual([["crop", true], ["flip", true]]);
    expect(result.images.map((i) => i.op?.split(" ")[0] ?? null)).toEqual([null, "crop", "flip"]);
    const chats = server.chatRequests();
    expect(chats).toHaveLength(2);
    const messages = chats[1]!.body.messages as ChatMessage[];
    const assistant = messages.find((m) => m.role === "assistant")!;
    expect(assistant.tool_calls!.map((c) => c.id)).toEqual([id0, id1]);
    // The tool messages answer the ids the assistant turn carries, in order, each with its own call's result.
    const tools = messages.filter((m) => m.role === "tool");
    expect(tools.map((m) => m.tool_call_id)).toEqual([id0, id1]);
    // Each tool message carries its call's result text first, then its image (LOUPE_TOOL_IMAGES=tool).
    expect(requestText({ messages: [tools[0]] })).toMatch(/^crop of img_0 done[\s\S]*img_1 \(/);
    expect(requestText({ messages: [tools[1]] })).toMatch(/^flip of img_0 done[\s\S]*img_2 \(/);
    expect(requestText(chats[1]!.body)).toMatch(/img_1 \(.*crop[\s\S]*img_2 \(.*flip/);
    expect(isPrefixExtension(chats[0]!.rawBody, chats[1]!.rawBody)).toBe(true);
  });
});

/** A loopback server answering every request with `answer`; closed after each test. */
async function loopbackServer(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(answer);
  await new Promise<void>((resolvePromise) => server.listen(0, "127.0.0.1", resolvePromise));
  servers.track({
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
    },
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
}

const HTML = "<!doctype html><html><head><title>Welcome</title></head><body>It works!</body></html>";
const NOT_A_COMPLETION = /^model server at http:\/\/127\.0\.0\.1:\d+\/v1 answered 200 but not with a chat completion( stream)? \(got [^)]+\); check --model-url points at the OpenAI-compatible \/v1 base/;

function modelClient(url: string, stream: boolean, model: string | null = "m") {
  const settings = testSettings({ modelUrl: url, dataDir: tmp.dir, stream, retries: 2, ...(model ? { model } : {}) });
  const { deps, close } = testAgent(settings);
  return { client: deps.model(settings), close };
}

describe.each([true, false])("a server that answers 200 but is not a chat-completions server (stream %s)", (stream) => {
  it.each([
    ["an HTML page", "text/html; charset=utf-8", HTML, /got text\/html/],
    ["JSON without choices", "application/json", JSON.stringify({ object: "list", data: [] }), /got (JSON without "choices"|application\/json)/],
  ])("%s: one clear ModelServerError, not retried", async (_, type, body, got) => {
    let requests = 0;
    const url = await loopbackServer((_req, res) => {
      requests++;
      res.writeHead(200, { "content-type": type }).end(body);
    });
    const { client, close } = modelClient(url, stream);
    try {
      const err = await client.complete([{ role: "user", parts: [{ type: "text", text: "hi" }] }]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelServerError);
      expect((err as Error).message).toMatch(NOT_A_COMPLETION);
      expect((err as Error).message).toMatch(got);
      expect((err as Error).message).not.toMatch(/Cannot read properties/);
      expect(requests).toBe(1);
    } finally {
      close();
    }
  });
});

it("a web page at the model URL: GET /models fails at once with one clear line", async () => {
  let requests = 0;
  const url = await loopbackServer((_req, res) => {
    requests++;
    res.writeHead(200, { "content-type": "text/html" }).end(HTML);
  });
  const { client, close } = modelClient(url, true, null);
  try {
    const err = await client.modelName().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelServerError);
    expect((err as Error).message).toMatch(/^model server at \S+ answered 200 but not with a model list \(GET \/models: got text\/html\); check --model-url points at the OpenAI-compatible \/v1 base/);
    expect(requests).toBe(1);
  } finally {
    close();
  }
});

describe("a model server sending malformed server-sent events", () => {
  const garbage = (_req: IncomingMessage, res: ServerResponse) => {
    if (_req.url?.endsWith("/models")) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: "m", object: "model" }] }));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write('data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n');
    res.write("data: SECRET-GARBAGE this is not json {{{\n\n");
    res.end("data: [DONE]\n\n");
  };

  it("fails in process with a ModelServerError naming the URL, not retried", async () => {
    let requests = 0;
    const url = await loopbackServer((req, res) => {
      requests++;
      garbage(req, res);
    });
    const { client, close } = modelClient(url, true);
    try {
      const err = await client.complete([{ role: "user", parts: [{ type: "text", text: "hi" }] }]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelServerError);
      expect((err as Error).message).toContain(url);
      expect((err as Error).message).toMatch(/^model server at \S+ sent a malformed chat completion stream \(event 2 is not JSON\); check --model-url/);
      expect(requests).toBe(1);
    } finally {
      close();
    }
  });

  it("the CLI prints one clear line on stderr and never the raw stream", async () => {
    const url = await loopbackServer(garbage);
    const run = await runCli(["ask", "--model-url", url, "--retries", "1", "--image", image, "--data-dir", join(tmp.dir, "d"), "hello?"], baseEnv({ LOUPE_RETRY_BASE_MS: "10" }));
    expect(run.code).not.toBe(0);
    expect(run.stderr).not.toMatch(/SECRET-GARBAGE|Could not parse|From chunk/);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    // Other lines (the thread announced at the start) may be there; one line says what went wrong.
    const errorLines = run.stderr.trim().split("\n").filter((l) => /model server|malformed|error|json|chunk/i.test(l));
    expect(errorLines).toHaveLength(1);
    expect(errorLines[0]).toContain(url);
    expect(errorLines[0]).toMatch(/malformed/);
  });
});
