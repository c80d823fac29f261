// Plan mode, reflect's step checks, and the budgets: through the real graph against the scripted model server.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ask } from "../src/run/ask.js";
import type { ScriptEntry } from "../src/cli/demo/scripted-model-server.js";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY } from "../src/cli/demo/fake-tavily-server.js";
import { fixtureServers, requestText, tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import { halfBlankPng } from "./node-fakes.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let image: string;
const servers = fixtureServers();

beforeEach(async () => {
  tmp = await tempDir();
  // Left half uniform grey, right half noise: a crop of the left half is blank.
  image = await writeImage(tmp.dir, "half.png", await halfBlankPng());
});
afterEach(async () => {
  await servers.closeAll();
  await tmp.cleanup();
});

const model = (script: ScriptEntry[]) => servers.model(script);

const call = (name: string, args: Record<string, unknown>) => ({ toolCalls: [{ name, arguments: args }] });

describe("reflect", () => {
  it("notes a blank crop, a box that selects almost nothing, an empty search and a repeated call", async () => {
    const tavily = await startFakeTavilyServer({ search: {} });
    servers.track(tavily);
    const server = await model([
      call("crop", { image: "img_0", bbox: [0, 0, 400, 1000] }),
      call("crop", { image: "img_0", bbox: [600, 600, 605, 606] }),
      call("text_search", { queries: ["nothing matches this"] }),
      call("crop", { image: "img_0", bbox: [0, 0, 400, 1000] }),
      { content: "<answer>done</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, tavilyUrl: tavily.url });
    const { agent, close } = testAgent(settings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
    await ask(agent, { settings, question: "q?", images: [image] });
    close();
    const told = (k: number) => requestText(server.chatRequests()[k]!.body);
    expect(told(1)).toMatch(/img_1 is nearly uniform/);
    expect(told(2)).toMatch(/the box for img_2 selects almost nothing \(2×2 px/);
    expect(told(3)).toMatch(/text_search found nothing/);
    expect(told(4)).toMatch(/call 4 repeats step 1 exactly/);
  });
});

describe("budgets", () => {
  it("24 tool calls run without hitting LangGraph's step limit, then the model is asked once, without tool use, for its answer", async () => {
    const script: ScriptEntry[] = [];
    for (let i = 0; i < 24; i++) script.push(call("crop", { image: "img_0", bbox: [i, i, 500 + i, 500 + i] }));
    const server = await model(script);
    server.push({ content: "<think>Out of calls.</think><answer>best guess</answer>" });
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir });
    expect(settings.maxToolCalls).toBe(24);
    const { agent, close } = testAgent(settings);
    const result = await ask(agent, { settings, question: "q?", images: [image] });
    close();
    expect(result.toolCalls).toHaveLength(24);
    expect(result.answer).toBe("best guess");
    expect(result.reason).toBe("budget");
    const last = server.chatRequests().at(-1)!;
    expect(requestText(last.body)).toMatch(/You have used all 24 tool calls\. Do not call any more tools/);
    // Same tools as every other request: the final request is still a prefix extension.
    expect(last.body.tools).toEqual(server.chatRequests()[0]!.body.tools);
    // Images beyond the context limit are made but not shown.
    expect(result.images).toHaveLength(25);
    expect(requestText(last.body)).toMatch(/img_16 was made but is not shown/);
  });

  it("a model that keeps calling tools past the budget is asked with tool_choice none, the tools still listed, and its text is the answer", async () => {
    const crop = (i: number) => ({ toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 100 * i, 100 * i] } }] });
    const server = await model([
      crop(1),
      crop(2),
      // Told to answer, it still calls a tool, and writes its best guess beside the call.
      { content: "It is most likely a harbour sign.", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 50, 50] } }] },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, maxToolCalls: 2 });
    const { agent, close } = testAgent(settings);
    const result = await ask(agent, { settings, question: "q?", images: [image] });
    close();
    const chats = server.chatRequests();
    expect(chats).toHaveLength(3);
    const final = chats[2]!.body as { tool_choice?: unknown; tools?: unknown[] };
    expect(final.tool_choice).toBe("none");
    expect(final.tools).toEqual((chats[1]!.body as { tools?: unknown[] }).tools);
    expect((chats[1]!.body as { tool_choice?: unknown }).tool_choice).toBeUndefined();
    expect(result.reason).toBe("budget");
    expect(result.answer).toBe("It is most likely a harbour sign.");
  });

  it("a model that writes nothing but tool calls when told to answer gives reason no_answer, not a made-up answer", async () => {
    const server = await model([
      { toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 100, 100] } }] },
      { content: "", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 50, 50] } }] },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, maxToolCalls: 1 });
    const { agent, close } = testAgent(settings);
    const result = await ask(agent, { settings, question: "q?", images: [image] });
    close();
    expect(result.reason).toBe("no_answer");
    expect(result.answer).toBe("(no answer: the budget ran out and the model gave none)");
  });

  it("calls beyond the remaining budget in one turn are refused, not run", async () => {
    const server = await model([
      { toolCalls: [1, 2, 3].map((i) => ({ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 100 * i, 100 * i] } })) },
      { content: "<answer>two</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, maxToolCalls: 2 });
    const { agent, close } = testAgent(settings);
    const result = await ask(agent, { settings, question: "q?", images: [image] });
    close();
    expect(result.toolCalls.map((c) => c.ok)).toEqual([true, true, false]);
    expect(result.images).toHaveLength(3);
    expect(requestText(server.chatRequests()[1]!.body)).toMatch(/not run: the budget of 2 tool calls is used up/);
  });
});

describe("plan mode", () => {
  it("asks for a JSON plan first, retries a malformed plan once, and puts the plan in the question", async () => {
    const plan = [
      { description: "Find the sign", tool_name: "crop", parameters: { image_path: "img_0" } },
      { description: "Identify [Sign from Step 1]", tool_name: "text_search", parameters: { query: "[Sign from Step 1]" } },
      { description: "Verify", tool_name: "none", parameters: {} },
    ];
    const server = await model([
      { content: "Here is my plan: first crop, then search." },
      { content: `\`\`\`json\n${JSON.stringify(plan)}\n\`\`\`` },
      { content: "<answer>planned</answer>" },
    ]);
    const settings = testSettings({ modelUrl: server.url, dataDir: tmp.dir, plan: true });
    const { agent, close } = testAgent(settings);
    const result = await ask(agent, { settings, question: "What is on the sign?", images: [image] });
    const state = await agent.getState({ configurable: { thread_id: result.threadId } });
    close();
    expect(result.answer).toBe("planned");
    const chats = server.chatRequests();
    expect(chats[0]!.body.tools).toBeUndefined();
    expect(requestText(chats[0]!.body)).toMatch(/Output only a JSON array of steps/);
    expect(requestText(chats[1]!.body)).toMatch(/That plan is not valid/);
    expect(requestText(chats[2]!.body)).toMatch(/Plan:\n1\. Find the sign \[crop/);
    expect(requestText(chats[2]!.body)).toContain("[Sign from Step 1]");
    expect((state.values as { plan: unknown[] }).plan).toHaveLength(3);
  });
});
