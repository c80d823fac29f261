// The graph API as its clients use it: `npm run dev` (the LangGraph dev server) on a free loopback port, driven with @langchain/langgraph-sdk's Client and RemoteGraph.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { join } from "node:path";
import { Client } from "@langchain/langgraph-sdk";
import { MemorySaver } from "@langchain/langgraph";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildReportGraph } from "../examples/remote.js";
import type { AgentEvent } from "../src/core/events.js";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { devServerEnv, startDevServer, stopDevServer, type DevServer } from "./dev-server.js";
import { NETWORK_GUARD, requestText, tempDir } from "./helpers.js";
import { routedServer } from "./scenarios/router.js";
import {
  harbourImage,
  SIGN_PAGE_URL,
  TRAJECTORY_ANSWER,
  TRAJECTORY_IMAGE_SIZES,
  TRAJECTORY_PAGES,
  TRAJECTORY_SEARCH,
  TRAJECTORY_TOOL_CALLS,
  trajectoryScript,
} from "../src/cli/demo/trajectory.js";

const TRAJECTORY_QUESTION = "What code is written on the north pier sign, and what does it mark?";
const PLAN = [
  { description: "Crop the blue sign", tool_name: "crop", parameters: { image_path: "img_0" } },
  { description: "Search for the code", tool_name: "text_search", parameters: { query: "[code from Step 1]" } },
  { description: "Verify", tool_name: "none", parameters: {} },
];

let tmp: Awaited<ReturnType<typeof tempDir>>;
let model: ScriptedModelServer;
let tavily: FakeTavilyServer;
let imageHost: Server;
let imageUrl: string;
let dataUrl: string;
let server: DevServer;
let client: Client;
let netLog: string;

beforeAll(async () => {
  tmp = await tempDir("loupe-graph-api-");
  const jpeg = await harbourImage();
  dataUrl = `data:image/jpeg;base64,${jpeg.toString("base64")}`;
  const small = await harbourImage(800, 600);
  imageHost = createHttpServer((_req, res) => res.writeHead(200, { "content-type": "image/jpeg" }).end(small));
  await new Promise<void>((r) => imageHost.listen(0, "127.0.0.1", r));
  const imagePort = (imageHost.address() as { port: number }).port;
  imageUrl = `http://127.0.0.1:${imagePort}/harbour.jpg`;

  tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  const answer = (text: string) => ({ content: `<think>done</think><answer>${text}</answer>` });
  const crop = (bbox: number[]) => ({ content: "<think>closer</think>", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox } }] });
  model = await startScriptedModelServer({
    ...routedServer([
      { key: "north pier sign", turns: trajectoryScript("tools") },
      { key: "second thread", turns: [crop([0, 0, 500, 500]), crop([500, 0, 1000, 500]), answer("two crops")] },
      {
        key: "needs approval",
        turns: [
          {
            content: "<think>search and read</think>",
            toolCalls: [
              { name: "text_search", arguments: { queries: ["harbour sign inspection code format"] } },
              { name: "web_visit", arguments: { urls: [SIGN_PAGE_URL], goal: "the code" } },
            ],
          },
          answer("WORD-NN"),
        ],
      },
      { key: "plan only", turns: [], plan: { content: JSON.stringify(PLAN) } },
      { key: "through RemoteGraph", turns: [crop([250, 250, 500, 500]), answer("a blue sign")] },
      { key: "local file", turns: [answer("never asked")] },
    ]),
    latencyMs: 15,
  });

  netLog = join(tmp.dir, "net.log");
  server = await startDevServer(
    join(tmp.dir, "server"),
    devServerEnv(tmp.dir, model.url, tavily.url, {
      LOUPE_WEB_ALLOW_HOSTS: `127.0.0.1:${imagePort}`,
      LOUPE_MAX_TOOL_CALLS: "24",
      LOUPE_MAX_TURNS: "60",
      // Small enough that a request over the total pixel budget (twice this) is cheap to make.
      LOUPE_MAX_INPUT_PIXELS: "50000000",
      NODE_OPTIONS: `--require ${NETWORK_GUARD}`,
      LOUPE_NETWORK_LOG: netLog,
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

interface StreamedRun {
  custom: AgentEvent[];
  updates: string[];
  events: string[];
}

async function streamRun(threadId: string, assistantId: string, payload: Record<string, unknown>): Promise<StreamedRun> {
  const out: StreamedRun = { custom: [], updates: [], events: [] };
  for await (const chunk of client.runs.stream(threadId, assistantId, { streamMode: ["updates", "custom"], ...payload })) {
    out.events.push(chunk.event);
    if (chunk.event === "custom") out.custom.push(chunk.data as AgentEvent);
    if (chunk.event === "updates") out.updates.push(...Object.keys(chunk.data as object));
    if (chunk.event === "error") throw new Error(`run failed: ${JSON.stringify(chunk.data)}\n${server.log().slice(-3000)}`);
  }
  return out;
}

function ofKind<K extends AgentEvent["event"]>(events: AgentEvent[], kind: K): Array<Extract<AgentEvent, { event: K }>> {
  return events.filter((e): e is Extract<AgentEvent, { event: K }> => e.event === kind);
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("the graph API (dev server)", () => {
  it("/assistants/{id}/schemas returns the input, output and context schemas of both graphs", async () => {
    const agent = await client.assistants.getSchemas("agent");
    const context = agent.context_schema as { properties: Record<string, { description?: string }> };
    expect(Object.keys(context.properties)).toEqual(
      expect.arrayContaining(["modelUrl", "model", "dialect", "maxToolCalls", "maxTurns", "maxImagesInContext", "searchMaxResults", "plan", "coords", "maxPixels", "temperature", "approvePlan", "approveSearch", "approveWebVisit"]),
    );
    // Only what a run can change: process settings (database, data directory, providers, caches) are not offered.
    for (const processSetting of ["databaseUrl", "dataDir", "searchProviders", "webVisit", "searchCache", "tavilyUrl", "modelUrlAllow"]) {
      expect(Object.keys(context.properties)).not.toContain(processSetting);
    }
    expect(context.properties.modelUrl!.description).toMatch(/OpenAI-compatible/);
    // The form starts from this server's settings (LOUPE_MAX_TURNS=60), not the built-in defaults.
    expect((context.properties.maxTurns as { default?: unknown }).default).toBe(60);
    // Settings with defaults may be left out of a run's context.
    expect((agent.context_schema as { required?: string[] }).required ?? []).not.toContain("modelUrl");
    // A run asks with `messages` (Studio's Chat, agent-chat-ui) or with `question` and `imageSources`: none is required.
    expect((agent.input_schema as { required?: string[] }).required ?? []).toEqual([]);
    const inputProperties = (agent.input_schema as { properties: Record<string, Record<string, unknown>> }).properties;
    expect(Object.keys(inputProperties).sort()).toEqual(["imageSources", "messages", "question"]);
    expect(JSON.stringify(inputProperties.messages)).toContain('"langgraph_type":"messages"');
    expect(JSON.stringify(agent.state_schema)).toContain('"langgraph_type":"messages"');
    expect(Object.keys((agent.output_schema as { properties: object }).properties)).toEqual(expect.arrayContaining(["final", "images", "toolCalls", "usage", "messages"]));
    const planner = await client.assistants.getSchemas("plan");
    expect(Object.keys((planner.output_schema as { properties: object }).properties)).toEqual(expect.arrayContaining(["plan"]));
    // The plan graph offers only what it uses: the model, its sampling, boxes and pixels.
    const planContext = planner.context_schema as { properties: Record<string, { default?: unknown }> };
    expect(Object.keys(planContext.properties).sort()).toEqual(["coords", "maxPixels", "maxTokens", "model", "modelUrl", "temperature"]);
    // Defaults are the server's settings, except where the model server lives.
    expect(planContext.properties.coords!.default).toBe("rel1000");
    expect(planContext.properties.modelUrl!.default).toBeUndefined();
  });

  it("streams a 15-tool-call run with per-tool custom events while a second thread runs; reads the final state, history and the images it made", async () => {
    const [a, b] = await Promise.all([client.threads.create(), client.threads.create()]);
    const [first, second] = await Promise.all([
      streamRun(a.thread_id, "agent", { input: { question: TRAJECTORY_QUESTION, imageSources: [dataUrl] } }),
      streamRun(b.thread_id, "agent", { input: { question: "The second thread: what is top left?", imageSources: [imageUrl] } }),
    ]);

    // Per-tool events: each call starts and finishes, and its images are named as the model names them.
    const starts = ofKind(first.custom, "tool_start");
    const ends = ofKind(first.custom, "tool_end");
    const results = ofKind(first.custom, "tool_result");
    expect(starts).toHaveLength(TRAJECTORY_TOOL_CALLS);
    expect(ends.map((e) => e.callId).sort()).toEqual(starts.map((e) => e.callId).sort());
    expect(results.map((e) => e.callId).sort()).toEqual(starts.map((e) => e.callId).sort());
    const named = Object.fromEntries(results.flatMap((r) => r.images.map((i) => [i.id, [i.width, i.height]])));
    expect(named).toEqual(TRAJECTORY_IMAGE_SIZES);
    const crop1 = results.find((r) => r.images.some((i) => i.id === "img_1"))!;
    expect(starts.find((s) => s.callId === crop1.callId)).toMatchObject({ name: "crop", arguments: { image: "img_0" } });
    expect(ofKind(first.custom, "answer")).toEqual([{ event: "answer", answer: TRAJECTORY_ANSWER }]);
    // Node updates, as Studio shows them.
    expect(first.updates).toEqual(expect.arrayContaining(["planner", "image_tool", "search", "answer"]));
    expect(first.updates.filter((n) => n === "image_tool").length).toBe(Object.keys(TRAJECTORY_IMAGE_SIZES).length);

    // The second thread ran at the same time and kept to itself.
    expect(ofKind(second.custom, "answer")).toEqual([{ event: "answer", answer: "two crops" }]);
    expect(ofKind(second.custom, "tool_result").flatMap((r) => r.images.map((i) => i.id))).toEqual(["img_1", "img_2"]);
    const order = model.chatRequests().map((r) => (requestText(r.body).includes("second thread") ? "b" : requestText(r.body).includes("north pier") ? "a" : "-"));
    expect(order.indexOf("b")).toBeLessThan(order.lastIndexOf("a"));
    expect(order.lastIndexOf("b")).toBeLessThan(order.lastIndexOf("a"));
    // One session key per thread on every model request, for a load balancer's affinity.
    const sessions = (who: string) => new Set(model.chatRequests().filter((_r, k) => order[k] === who).map((r) => r.headers["x-loupe-session"]));
    expect(sessions("a").size).toBe(1);
    expect(sessions("b").size).toBe(1);
    expect([...sessions("a")][0]).not.toEqual([...sessions("b")][0]);

    // Final state and history.
    const state = await client.threads.getState<Record<string, any>>(a.thread_id);
    expect(state.next).toEqual([]);
    expect(state.values.final).toMatchObject({ answer: TRAJECTORY_ANSWER, reason: "answered" });
    expect(state.values.toolCalls).toHaveLength(TRAJECTORY_TOOL_CALLS);
    expect(state.values.images).toHaveLength(12);
    expect((await client.threads.get(a.thread_id)).status).toBe("idle");
    const history = await client.threads.getHistory<Record<string, any>>(a.thread_id, { limit: 500 });
    expect(history.length).toBeGreaterThan(2 * 14); // a checkpoint per super-step
    expect(history.at(-1)!.next).toEqual(["__start__"]);
    expect(history.some((h) => h.next.includes("image_tool") && h.next.includes("search"))).toBe(true); // the parallel crop and search
    // The input data: URL is image bytes: only the input checkpoint holds it; the run keeps a reference.
    expect(history.filter((h) => JSON.stringify(h.values).includes("data:image/jpeg")).length).toBeLessThanOrEqual(1);
    expect(JSON.stringify(state.values)).not.toMatch(/data:image|\/9j\/4AAQ/);
    expect(state.values.imageSources[0]).toMatch(/^\(data: URL, \d+ characters: stored as img_0, sha256 [0-9a-f]{64}\)$/);

    // The images a run made, fetched by a client through the http.app route.
    const listed = (await (await fetch(`${server.url}/threads/${a.thread_id}/images`)).json()) as { images: Array<{ id: string; url: string; mime: string; sha256: string }> };
    expect(listed.images.map((i) => i.id)).toEqual(state.values.images.map((i: { id: string }) => i.id));
    const img1 = listed.images.find((i) => i.id === "img_1")!;
    expect(img1.url.startsWith(`${server.url}/images/`)).toBe(true);
    const res = await fetch(img1.url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(img1.mime);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(sha256(bytes)).toBe(img1.sha256);
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height]).toEqual(TRAJECTORY_IMAGE_SIZES.img_1);
    const forged = img1.url.replace(/-([0-9a-f]{32})\./, (_m: string, t: string) => `-${t.startsWith("0") ? "1" : "0"}${t.slice(1)}.`);
    expect((await fetch(forged)).status).toBe(404);
    expect((await fetch(`${server.url}/threads/not-a-uuid/images`)).status).toBe(400);
  });

  it("an interrupted thread (approval required by its assistant) resumes with a command; per-call decisions", async () => {
    const assistant = await client.assistants.create({ graphId: "agent", name: "supervised", context: { approveSearch: true, approveWebVisit: true } });
    const thread = await client.threads.create();
    const paused = await streamRun(thread.thread_id, assistant.assistant_id, { input: { question: "This needs approval: what format do codes have?", imageSources: [imageUrl] } });
    expect(ofKind(paused.custom, "tool_start")).toEqual([]);
    expect((await client.threads.get(thread.thread_id)).status).toBe("interrupted");
    const waiting = await client.threads.getState<Record<string, any>>(thread.thread_id);
    const request = waiting.tasks.flatMap((t) => t.interrupts)[0]!.value as { type: string; calls: Array<{ callId: string; name: string }> };
    expect(request.type).toBe("call_review");
    expect(request.calls.map((c) => c.name)).toEqual(["text_search", "web_visit"]);
    const visit = request.calls.find((c) => c.name === "web_visit")!;

    const resumed = await streamRun(thread.thread_id, assistant.assistant_id, {
      command: { resume: { action: "approve", calls: { [visit.callId]: { action: "deny", reason: "no page reads today" } } } },
    });
    expect(ofKind(resumed.custom, "tool_start").map((e) => e.name)).toEqual(["text_search"]);
    expect(ofKind(resumed.custom, "answer")).toEqual([{ event: "answer", answer: "WORD-NN" }]);
    const final = await client.threads.getState<Record<string, any>>(thread.thread_id);
    expect(final.values.toolCalls.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
      ["text_search", true],
      ["web_visit", false],
    ]);
    const lastRequest = requestText(model.chatRequests().filter((r) => requestText(r.body).includes("needs approval")).at(-1)!.body);
    expect(lastRequest).toContain("Codes have the form WORD-NN.");
    expect(lastRequest).toContain("did not allow this web_visit call: no page reads today");
    expect(tavily.requests.filter((r) => r.path === "/extract")).toHaveLength(1); // the trajectory's one visit, not this one
  });

  it("the plan graph returns a plan and executes nothing; file paths are refused as inputs", async () => {
    const out = (await client.runs.wait(null, "plan", { input: { question: "Make a plan only: what does the sign say?", imageSources: [dataUrl] } })) as Record<string, any>;
    expect(out.plan).toEqual(PLAN);
    expect(out.images).toHaveLength(1);

    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, "agent", { input: { question: "A local file: read it", imageSources: ["/etc/hostname"] } });
    await client.runs.join(thread.thread_id, run.run_id);
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe("error");
    expect(server.log()).toMatch(/image "\/etc\/hostname" is not a URL: give images as http\(s\) URLs or data: URLs/);
  });

  /** The error a run ends with, as its stream reports it. */
  async function runError(payload: Record<string, unknown>): Promise<{ error: string; message: string }> {
    const thread = await client.threads.create();
    for await (const chunk of client.runs.stream(thread.thread_id, "agent", { streamMode: ["updates"], ...payload })) {
      if (chunk.event === "error") return chunk.data as { error: string; message: string };
    }
    throw new Error(`the run did not fail:\n${server.log().slice(-3000)}`);
  }
  const requestsAbout = (text: string) => model.chatRequests().filter((r) => requestText(r.body).includes(text));

  it("refuses a run with more input images than LOUPE_MAX_IMAGES in one readable line, before any model call", async () => {
    const tiny = await sharp({ create: { width: 8, height: 8, channels: 3, background: "#336699" } }).png().toBuffer();
    const payload = tiny.toString("base64");
    const failed = await runError({ input: { question: "Twenty images: which is bluest?", imageSources: Array.from({ length: 20 }, () => `data:image/png;base64,${payload}`) } });
    expect(failed.error).toBe("ImageInputError");
    expect(failed.message).toMatch(/^20 input images, over the limit of 16 images in one conversation \(LOUPE_MAX_IMAGES\)[^\n]*$/);
    expect(requestsAbout("Twenty images")).toEqual([]);
  });

  it("refuses a request whose images add up to over the total pixel budget, naming the total and the limit, before decoding them", async () => {
    // 6000×6000 solid PNGs: a few KB each, 36 MP each, 108 MP together against 2 × LOUPE_MAX_INPUT_PIXELS = 100 MP.
    const huge = await sharp({ create: { width: 6000, height: 6000, channels: 3, background: "#ffffff" } }).png().toBuffer();
    const source = `data:image/png;base64,${huge.toString("base64")}`;
    const failed = await runError({ input: { question: "Three huge images: what is on them?", imageSources: [source, source, source] } });
    expect(failed.error).toBe("ImageInputError");
    expect(failed.message).toMatch(/^the 3 input images hold 108,000,000 pixels in all, over the limit of 100,000,000 pixels for one question \(twice LOUPE_MAX_INPUT_PIXELS\)[^\n]*$/);
    expect(requestsAbout("Three huge images")).toEqual([]);
    // Neither the error nor the server's log holds the images' bytes.
    expect(server.log()).not.toContain(huge.toString("base64").slice(0, 64));
  });

  it("an out-of-range budget in a run's context fails the run with one readable line naming the setting", async () => {
    const failed = await runError({ input: { question: "Zero turns: what is on the sign?", imageSources: [imageUrl] }, context: { maxTurns: 0 } });
    expect(failed.message).toMatch(/^invalid run context: maxTurns: [^\n]*1[^\n]*$/);
    expect(failed.message).not.toMatch(/ZodError|"code"|"path"/);
    expect(requestsAbout("Zero turns")).toEqual([]);
  });

  it("examples/remote.ts: a parent graph uses the deployed agent through RemoteGraph", async () => {
    const graph = buildReportGraph({ url: server.url }).compile({ checkpointer: new MemorySaver() });
    const threadId = crypto.randomUUID();
    const out = await graph.invoke({ question: "Asked through RemoteGraph: what is on the sign?", imageSources: [imageUrl] }, { configurable: { thread_id: threadId } });
    expect(out.final?.answer).toBe("a blue sign");
    expect(out.report).toContain("a blue sign");
    const link = /!\[img_1\]\((http[^)]+)\)/.exec(out.report!)?.[1];
    expect(link).toBeDefined();
    expect((await fetch(link!)).status).toBe(200);
    // It ran on the server, in the server thread with the parent's id.
    expect((await client.threads.getState<Record<string, any>>(threadId)).values.final.answer).toBe("a blue sign");
  });

  it("the server contacted nothing but loopback", async () => {
    const contacts = (await readFile(netLog, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { kind: string; host?: string });
    const network = contacts.filter((c) => !String(c.host ?? "").startsWith("unix:"));
    expect(network.length).toBeGreaterThan(0);
    const loopback = new Set(["127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1"]);
    expect(network.filter((c) => !loopback.has(String(c.host)))).toEqual([]);
  });
});
