// The front ends against the dev server (`npm run dev`): Studio's chat (the published schema, a `values` + `messages-tuple` run), agent-chat-ui's submissions (a base64 upload, a follow-up, a refused upload) and its human-in-the-loop interrupts, all through @langchain/langgraph-sdk's Client.
import { createHash, randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { join } from "node:path";
import { Client } from "@langchain/langgraph-sdk";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type ScriptedModelServer, type ScriptedTurn } from "../src/cli/demo/scripted-model-server.js";
import { harbourImage, SIGN_PAGE_URL, TRAJECTORY_PAGES, TRAJECTORY_SEARCH } from "../src/cli/demo/trajectory.js";
import { devServerEnv, startDevServer, stopDevServer, type DevServer } from "./dev-server.js";
import { isPrefixExtension, NETWORK_GUARD, requestText, tempDir } from "./helpers.js";
import { routedServer } from "./scenarios/router.js";

/** A message as the API returns it (LangChain's serialised form). */
interface Msg {
  type: string;
  id?: string;
  name?: string;
  content: string | Array<Record<string, any>>;
  tool_calls?: Array<{ id: string; name: string; args: Record<string, unknown> }>;
  tool_call_id?: string;
  status?: string;
  response_metadata?: Record<string, any>;
}

const STUDIO_THINK_1 = "<think>The sign is small; crop the top left quarter of the first image to read it.</think>";
const STUDIO_THINK_2 = "<think>Now compare the second image with a closer crop of the first.</think>";
const STUDIO_ANSWER = "a blue sign on the north pier";
const CHAT_ANSWER = "The picture is noise: no sign on it.";
const FOLLOW_UP_ANSWER = "Still noise: the crop shows no lettering either.";
const FOLLOW_UP = "And is there any lettering in the crop you made?";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let model: ScriptedModelServer;
let tavily: FakeTavilyServer;
let imageHost: Server;
let imageUrl: string;
let server: DevServer;
let client: Client;
/** agent-chat-ui's upload: a PNG of noise (so its base64 is long and nowhere else), without the data: prefix. */
let upload: string;
/** The question of the agent-chat-ui thread, to show the storage search finds what is there. */
const CHAT_QUESTION = `Chat UI upload ${randomUUID()}: what is on this picture?`;

const answer = (text: string): ScriptedTurn => ({ content: `<think>done</think><answer>${text}</answer>` });
const crop = (image: string, bbox: number[]) => ({ name: "crop", arguments: { image, bbox } });

beforeAll(async () => {
  tmp = await tempDir("loupe-frontends-");
  const small = await harbourImage(800, 600);
  imageHost = createHttpServer((_req, res) => res.writeHead(200, { "content-type": "image/jpeg" }).end(small));
  await new Promise<void>((r) => imageHost.listen(0, "127.0.0.1", r));
  const imagePort = (imageHost.address() as { port: number }).port;
  imageUrl = `http://127.0.0.1:${imagePort}/harbour.jpg`;
  const noise = Buffer.from(Array.from({ length: 96 * 72 * 3 }, (_, i) => (i * 2654435761) >>> 24));
  upload = (await sharp(noise, { raw: { width: 96, height: 72, channels: 3 } }).png().toBuffer()).toString("base64");

  tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  model = await startScriptedModelServer({
    ...routedServer([
      {
        key: "Studio chat",
        turns: [
          { content: STUDIO_THINK_1, toolCalls: [crop("img_0", [0, 0, 500, 500])] },
          { content: STUDIO_THINK_2, toolCalls: [crop("img_1", [0, 0, 500, 500]), crop("img_2", [250, 250, 750, 750])] },
          { content: `<think>The crops show it.</think><answer>${STUDIO_ANSWER}</answer>` },
        ],
      },
      { key: "Chat UI upload", turns: [{ content: "<think>look closer</think>", toolCalls: [crop("img_0", [0, 0, 500, 500])] }, answer(CHAT_ANSWER), answer(FOLLOW_UP_ANSWER)] },
      {
        key: "Review in the chat UI",
        turns: [
          {
            content: "<think>search and read</think>",
            toolCalls: [
              { name: "text_search", arguments: { queries: ["sign code"] } },
              { name: "web_visit", arguments: { urls: [SIGN_PAGE_URL], goal: "the code" } },
            ],
          },
          answer("WORD-NN"),
        ],
      },
    ]),
    latencyMs: 5,
  });

  server = await startDevServer(
    join(tmp.dir, "server"),
    devServerEnv(tmp.dir, model.url, tavily.url, {
      LOUPE_WEB_ALLOW_HOSTS: `127.0.0.1:${imagePort}`,
      NODE_OPTIONS: `--require ${NETWORK_GUARD}`,
      LOUPE_NETWORK_LOG: join(tmp.dir, "net.log"),
    }),
  );
  client = new Client({ apiUrl: server.url, apiKey: null });
}, 90_000);

afterAll(async () => {
  await stopDevServer(server);
  await model?.close();
  await tavily?.close();
  await new Promise((r) => imageHost?.close(r));
  await tmp?.cleanup();
});

/** Every chunk of a run's stream, failing on an error event. */
async function streamAll(threadId: string, assistantId: string, payload: Record<string, unknown>): Promise<Array<{ event: string; data: any }>> {
  const chunks: Array<{ event: string; data: any }> = [];
  for await (const chunk of client.runs.stream(threadId, assistantId, payload as never)) {
    if (chunk.event === "error") throw new Error(`run failed: ${JSON.stringify(chunk.data)}\n${server.log().slice(-3000)}`);
    chunks.push(chunk as { event: string; data: any });
  }
  return chunks;
}

const lastValues = (chunks: Array<{ event: string; data: any }>) => chunks.filter((c) => c.event === "values").at(-1)!.data as Record<string, any>;
const textOf = (m: Msg) => (typeof m.content === "string" ? m.content : m.content.map((b) => (b.type === "text" ? b.text : "")).join("\n"));
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** The checks every chat front end relies on: each AI tool call answered by its tool message (after it), ids unique. */
function expectEveryCallAnswered(messages: Msg[]) {
  const calls = messages.flatMap((m, i) => (m.type === "ai" ? (m.tool_calls ?? []).map((c) => ({ ...c, at: i })) : []));
  expect(calls.length).toBeGreaterThan(0);
  expect(new Set(calls.map((c) => c.id)).size).toBe(calls.length);
  for (const call of calls) {
    const answers = messages.map((m, i) => ({ m, i })).filter(({ m }) => m.type === "tool" && m.tool_call_id === call.id);
    expect(answers, `tool message for ${call.name} ${call.id}`).toHaveLength(1);
    expect(answers[0]!.i).toBeGreaterThan(call.at);
    expect(answers[0]!.m.name).toBe(call.name);
  }
  const ids = messages.map((m) => m.id);
  expect(ids.every(Boolean)).toBe(true);
  expect(new Set(ids).size).toBe(ids.length);
}

/** The human message as state keeps it: its text, and an image block per image pointing at the image route (no bytes). */
async function expectStoredHuman(message: Msg, id: string, text: string, images: Array<{ id: string; width: number; height: number }>) {
  expect(message).toMatchObject({ type: "human", id });
  const blocks = message.content as Array<Record<string, any>>;
  expect(blocks[0]).toEqual({ type: "text", text });
  expect(blocks.slice(1).map((b) => [b.type, b.metadata?.loupe_image_id, b.metadata?.width, b.metadata?.height])).toEqual(images.map((i) => ["image", i.id, i.width, i.height]));
  for (const block of blocks.slice(1)) {
    expect(Object.keys(block).sort()).toEqual(["metadata", "mimeType", "type", "url"]);
    expect(block.url).toMatch(/^\/images\/[0-9a-f]{64}-[0-9a-f]{32}\.(png|jpg)$/);
    const res = await fetch(`${server.url}${block.url}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(block.mimeType);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(block.metadata.sha256);
  }
}

describe("Studio's chat", () => {
  it("/assistants/{id}/schemas marks `messages` as the messages channel in the agent's input and state schemas", async () => {
    const schemas = (await client.assistants.getSchemas("agent")) as Record<string, any>;
    expect(schemas.input_schema.properties.messages).toMatchObject({ langgraph_type: "messages" });
    expect(schemas.state_schema.properties.messages).toMatchObject({ langgraph_type: "messages" });
    // Each of the two ways to ask is optional: a run gives `messages`, or `question` (with `imageSources`).
    expect(schemas.input_schema.required ?? []).toEqual([]);
    expect(Object.keys(schemas.input_schema.properties).sort()).toEqual(["imageSources", "messages", "question"]);
  });

  it("a values + messages-tuple run streams the model's text in token chunks and ends with the human message, an AI message per turn, a tool message per call and the answer", async () => {
    const thread = await client.threads.create();
    const humanId = randomUUID();
    const question = "Studio chat: what is on the sign?";
    const chunks = await streamAll(thread.thread_id, "agent", {
      input: { messages: [{ type: "human", id: humanId, content: [{ type: "text", text: question }, { type: "image", url: imageUrl }, { type: "image", mimeType: "image/png", data: upload }] }] },
      streamMode: ["values", "messages-tuple"],
    });

    // Tokens: the model's reply arrives in pieces under its message id (the server's chatcmpl id), as Studio and useStream merge them.
    const tokens = chunks.filter((c) => c.event === "messages" && c.data[1]?.langgraph_node === "planner" && typeof c.data[0].content === "string" && c.data[0].content);
    const byId = new Map<string, string[]>();
    for (const { data } of tokens) byId.set(data[0].id, [...(byId.get(data[0].id) ?? []), data[0].content]);
    expect(byId.size).toBe(3); // three model turns
    const pieces = [...byId.values()];
    expect(pieces[0]!.length).toBeGreaterThan(3);
    expect(pieces[0]!.join("")).toBe(STUDIO_THINK_1);
    expect(pieces[1]!.join("")).toBe(STUDIO_THINK_2);
    // The tool messages are streamed too, as whole messages from reflect.
    const streamedTools = chunks.filter((c) => c.event === "messages" && c.data[0].type === "tool").map((c) => c.data[0].tool_call_id);
    expect(streamedTools).toHaveLength(3);

    const messages = lastValues(chunks).messages as Msg[];
    expect(messages.map((m) => m.type)).toEqual(["human", "ai", "tool", "ai", "tool", "tool", "ai"]);
    await expectStoredHuman(messages[0]!, humanId, question, [
      { id: "img_0", width: 800, height: 600 },
      { id: "img_1", width: 96, height: 72 },
    ]);
    expectEveryCallAnswered(messages);
    const [turn1, turn2] = [messages[1]!, messages[3]!];
    // A model turn: its thinking as text, its calls with their ids, the model's name, the id its tokens streamed under.
    expect(turn1).toMatchObject({ name: "scripted-vl", content: STUDIO_THINK_1.replace(/<\/?think>/g, "") });
    expect([...byId.keys()].slice(0, 2)).toEqual([turn1.id, turn2.id]);
    expect(turn1.tool_calls!.map((c) => [c.name, c.args])).toEqual([["crop", { image: "img_0", bbox: [0, 0, 500, 500] }]]);
    expect(turn2.tool_calls!.map((c) => c.args.image)).toEqual(["img_1", "img_2"]);
    // A tool message: the result, and each new image with its size and a Markdown link to the image route.
    const link = /^img_2 \(400×300; crop [^)]*\) !\[img_2\]\((\/images\/[^)]+)\)$/m.exec(textOf(messages[2]!));
    expect(link, textOf(messages[2]!)).not.toBeNull();
    expect((await fetch(`${server.url}${link![1]}`)).status).toBe(200);
    // The answer, its citations listed and kept in its metadata.
    const last = messages.at(-1)!;
    expect(textOf(last).startsWith(STUDIO_ANSWER)).toBe(true);
    expect(last.response_metadata).toMatchObject({ reason: "answered", citations: expect.any(Array) });
    // The upload was stored before the run saw it: no chunk of the stream holds its base64.
    for (const chunk of chunks) expect(JSON.stringify(chunk.data)).not.toContain(upload.slice(2000, 2040));
  });
});

describe("agent-chat-ui", () => {
  let threadId: string;
  let humanId: string;

  /** What agent-chat-ui's submit sends through useStream (it adds the `updates` mode; a thread view reading messages adds `messages-tuple`). */
  const submit = (input: Record<string, unknown>) =>
    streamAll(threadId, "agent", { input, streamMode: ["values", "updates", "messages-tuple"], streamSubgraphs: true, streamResumable: true, onDisconnect: "continue" });

  it("a base64 upload is answered; every tool call has its tool message; the upload is stored and the message points at it", async () => {
    threadId = (await client.threads.create()).thread_id;
    humanId = randomUUID();
    const chunks = await submit({
      messages: [
        { type: "human", id: humanId, content: [{ type: "text", text: CHAT_QUESTION }, { type: "image", mimeType: "image/png", data: upload, metadata: { name: "photo.png" } }] },
      ],
    });
    const messages = lastValues(chunks).messages as Msg[];
    expect(messages.map((m) => m.type)).toEqual(["human", "ai", "tool", "ai"]);
    await expectStoredHuman(messages[0]!, humanId, CHAT_QUESTION, [{ id: "img_0", width: 96, height: 72 }]);
    expectEveryCallAnswered(messages);
    expect(textOf(messages.at(-1)!).startsWith(CHAT_ANSWER)).toBe(true);
    // No base64 in anything the stream sent.
    for (const chunk of chunks) expect(JSON.stringify(chunk.data)).not.toContain(upload.slice(2000, 2040));
  });

  it("a follow-up human message asks about the same images: the conversation goes on, and the answer is a new AI message", async () => {
    const before = model.chatRequests().filter((r) => requestText(r.body).includes("Chat UI upload"));
    const followId = randomUUID();
    const chunks = await submit({ messages: [{ type: "human", id: followId, content: [{ type: "text", text: FOLLOW_UP }] }] });
    const requests = model.chatRequests().filter((r) => requestText(r.body).includes("Chat UI upload"));
    expect(requests).toHaveLength(before.length + 1);
    const request = requests.at(-1)!;
    // The earlier turns (img_0 in the first question) re-sent as they were, the new question last.
    expect(isPrefixExtension(before.at(-1)!.rawBody, request.rawBody)).toBe(true);
    const sent = request.body.messages as Array<{ role: string; content: unknown }>;
    expect(sent.at(-1)!.role).toBe("user");
    expect(requestText({ messages: [sent.at(-1)!] })).toContain(FOLLOW_UP);
    expect(requestText({ messages: sent.slice(0, -1) })).toMatch(/img_0 \(96×72/);

    const messages = lastValues(chunks).messages as Msg[];
    expect(messages.map((m) => m.type)).toEqual(["human", "ai", "tool", "ai", "human", "ai"]);
    expect(messages[4]).toMatchObject({ type: "human", id: followId });
    expect(textOf(messages[3]!).startsWith(CHAT_ANSWER)).toBe(true);
    expect(textOf(messages[5]!).startsWith(FOLLOW_UP_ANSWER)).toBe(true);
    expectEveryCallAnswered(messages);
    const state = await client.threads.getState<Record<string, any>>(threadId);
    expect(state.values.final.answer).toBe(FOLLOW_UP_ANSWER);
    expect(state.values.images.map((i: { id: string }) => i.id)).toEqual(["img_0", "img_1"]);
  });

  it("no base64 is left in the thread's state or in any page of its history", async () => {
    const slice = upload.slice(2000, 2040);
    const state = JSON.stringify(await client.threads.getState(threadId));
    expect(state).toContain(CHAT_QUESTION);
    expect(state).not.toContain(upload);
    expect(state).not.toContain(slice);
    let pages = 0;
    let entries = 0;
    // Paged as a client pages it: each page before the oldest checkpoint of the previous one (this server takes its id).
    let before: string | undefined;
    for (;;) {
      const page = await client.threads.getHistory(threadId, { limit: 5, ...(before ? { before: before as never } : {}) });
      pages++;
      entries += page.length;
      for (const entry of page) expect(JSON.stringify(entry)).not.toContain(slice);
      if (page.length < 5) break;
      before = page.at(-1)!.checkpoint.checkpoint_id!;
    }
    expect(pages).toBeGreaterThan(2);
    expect(entries).toBeGreaterThan(10);
  });

  it("an upload that is not an image is refused with a readable 400 through the SDK; no run starts", async () => {
    const thread = await client.threads.create();
    const bogus = Buffer.from("these bytes are a note, not a picture".repeat(4)).toString("base64");
    const error = await streamAll(thread.thread_id, "agent", {
      input: { messages: [{ type: "human", id: randomUUID(), content: [{ type: "text", text: "what is this?" }, { type: "image", mimeType: "image/png", data: bogus }] }] },
      streamMode: ["values"],
    }).then(
      () => null,
      (e: unknown) => e as Error & { status?: number },
    );
    expect(error).not.toBeNull();
    expect(error!.status).toBe(400);
    expect(error!.message).toMatch(/image 1 of the input messages: /);
    expect(error!.message).not.toMatch(/^\s+at /m);
    expect(error!.message).not.toContain(bogus.slice(0, 40));
    expect(await client.runs.list(thread.thread_id)).toEqual([]);
  });

  it("human in the loop: the interrupt carries action_requests and review_configs; a resume with decisions (edit, reject) goes on", async () => {
    const assistant = await client.assistants.create({ graphId: "agent", name: "reviewed", context: { approveSearch: true, approveWebVisit: true } });
    threadId = (await client.threads.create()).thread_id;
    const stream = (input: Record<string, unknown> | null, command?: Record<string, unknown>) =>
      streamAll(threadId, assistant.assistant_id, { input, ...(command ? { command } : {}), streamMode: ["values", "updates"], streamSubgraphs: true, streamResumable: true });
    const paused = await stream({ messages: [{ type: "human", id: randomUUID(), content: [{ type: "text", text: "Review in the chat UI: what format do codes have?" }, { type: "image", url: imageUrl }] }] });

    // agent-chat-ui reads the interrupt from the values' __interrupt__.
    const interrupts = lastValues(paused).__interrupt__ as Array<{ value: Record<string, any> }>;
    expect(interrupts).toHaveLength(1);
    const request = interrupts[0]!.value;
    expect(request.type).toBe("call_review"); // Loupe's own fields stay
    expect(request.action_requests.map((a: { name: string; args: unknown }) => [a.name, a.args])).toEqual([
      ["text_search", { queries: ["sign code"] }],
      ["web_visit", { urls: [SIGN_PAGE_URL], goal: "the code" }],
    ]);
    expect(request.action_requests[0].description).toMatch(/^Tool execution requires approval\n\nTool: text_search\nArgs: /);
    expect(request.review_configs.map((r: { action_name: string; allowed_decisions: string[] }) => [r.action_name, r.allowed_decisions])).toEqual([
      ["text_search", ["approve", "edit", "reject"]],
      ["web_visit", ["approve", "edit", "reject"]],
    ]);
    expect(request.review_configs[1].args_schema).toMatchObject({ type: "object", required: ["urls"] });
    expect((await client.threads.get(threadId)).status).toBe("interrupted");

    // As agent-chat-ui resumes: submit({}, { command: { resume: { decisions } } }), one decision per action request.
    const edited = { queries: ["harbour sign inspection code format"] };
    const resumed = await stream({}, {
      resume: { decisions: [{ type: "edit", edited_action: { name: "text_search", args: edited } }, { type: "reject", message: "no page reads today" }] },
    });
    const values = lastValues(resumed);
    expect(values.__interrupt__ ?? []).toEqual([]);
    const messages = values.messages as Msg[];
    expect(messages.map((m) => m.type)).toEqual(["human", "ai", "tool", "tool", "ai"]);
    expectEveryCallAnswered(messages);
    // The edited call is shown with the args it ran with; the rejected one answered by an error carrying the message.
    expect(messages[1]!.tool_calls!.map((c) => [c.name, c.args])).toEqual([
      ["text_search", edited],
      ["web_visit", { urls: [SIGN_PAGE_URL], goal: "the code" }],
    ]);
    const [searched, refused] = [messages[2]!, messages[3]!];
    expect(searched).toMatchObject({ name: "text_search", status: "success" });
    expect(textOf(searched)).toContain("Codes have the form WORD-NN.");
    expect(refused).toMatchObject({ name: "web_visit", status: "error" });
    expect(textOf(refused)).toContain("did not allow this web_visit call: no page reads today");
    expect(textOf(messages[4]!).startsWith("WORD-NN")).toBe(true);
    expect(tavily.requests.filter((r) => r.path === "/search").map((r) => (r.body as { query?: string }).query)).toEqual(["harbour sign inspection code format"]);
    expect(tavily.requests.filter((r) => r.path === "/extract")).toEqual([]);
    const told = requestText(model.chatRequests().filter((r) => requestText(r.body).includes("Review in the chat UI")).at(-1)!.body);
    expect(told).toContain("no page reads today");
  });
});

describe("the dev server's storage", () => {
  /** Every file under `dir`, as text, with each long base64 run in it decoded too (the server stores checkpoints as base64 of their JSON). */
  async function storedText(dir: string): Promise<string> {
    const files = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((f) => f.isFile());
    const texts: string[] = [];
    for (const file of files) {
      const text = await readFile(join(file.parentPath, file.name), "latin1");
      texts.push(text, ...[...text.matchAll(/[A-Za-z0-9+/]{64,}={0,2}/g)].map((m) => Buffer.from(m[0], "base64").toString("latin1")));
    }
    return texts.join("\n");
  }

  it("holds no base64 of the upload once flushed to disk (.langgraph_api in the server's cwd), nor does the data directory", async () => {
    await stopDevServer(server); // the dev server writes its storage on exit (and 3 s after changes)
    const api = join(server.dir, ".langgraph_api");
    expect((await readdir(api)).sort(), server.log().slice(-3000)).toEqual(expect.arrayContaining([".langgraphjs_api.checkpointer.json", ".langgraphjs_ops.json"]));
    const stored = await storedText(api);
    expect(stored).toContain(CHAT_QUESTION); // the search reads what is there
    expect(stored).not.toContain(upload.slice(0, 64));
    expect(stored).not.toContain(upload.slice(2000, 2040));
    const data = await storedText(join(tmp.dir, "data"));
    expect(data).not.toContain(upload.slice(2000, 2040));
  });
});
