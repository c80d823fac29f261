// The agent end to end: real graph, real SQLite checkpointer, real HTTP to the scripted model server and a fake Tavily.
import { readFile, stat } from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkpointPath } from "../src/runtime/checkpointer.js";
import { ask } from "../src/run/ask.js";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { imagesInRequest, isPrefixExtension, requestText, tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import {
  harbourImage,
  TRAJECTORY_ANSWER,
  TRAJECTORY_IMAGE_SIZES,
  TRAJECTORY_PAGES,
  TRAJECTORY_SEARCH,
  TRAJECTORY_TOOL_CALLS,
  trajectoryScript,
  SIGN_PAGE_URL,
} from "../src/cli/demo/trajectory.js";

describe.each(["tools", "tags"] as const)("15-tool-call trajectory, %s dialect", (dialect) => {
  let model: ScriptedModelServer;
  let tavily: FakeTavilyServer;
  let tmp: Awaited<ReturnType<typeof tempDir>>;

  beforeEach(async () => {
    tmp = await tempDir();
    model = await startScriptedModelServer({ script: trajectoryScript(dialect) });
    tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  });
  afterEach(async () => {
    await model.close();
    await tavily.close();
    await tmp.cleanup();
  });

  it("interleaves crops of crops with searches, sends exact crops, keeps requests prefix-stable, and answers", async () => {
    const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage());
    const settings = testSettings({ modelUrl: model.url, dataDir: tmp.dir, dialect, tavilyUrl: tavily.url, stream: dialect === "tools" });
    const { agent, close } = testAgent(settings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
    const events: string[] = [];
    const result = await ask(agent, {
      settings,
      question: "What code is written on the north pier sign, and what does it mark?",
      images: [image],
      onEvent: (e) => events.push(e.event),
    });
    close();

    expect(result.answer).toBe(TRAJECTORY_ANSWER);
    expect(result.reason).toBe("answered");
    expect(result.toolCalls).toHaveLength(TRAJECTORY_TOOL_CALLS);
    expect(TRAJECTORY_TOOL_CALLS).toBeGreaterThanOrEqual(15);
    expect(result.toolCalls.every((c) => c.ok)).toBe(true);
    const names = result.toolCalls.map((c) => c.name);
    expect(names.filter((n) => n === "text_search" || n === "web_visit").length).toBeGreaterThanOrEqual(4);
    expect(result.citations).toContainEqual(expect.objectContaining({ type: "url", url: SIGN_PAGE_URL }));
    expect(events.filter((e) => e === "tool_end")).toHaveLength(TRAJECTORY_TOOL_CALLS);

    // Every image a tool made has the size its box asked for, in all three coordinate conventions.
    for (const [id, [w, h]] of Object.entries(TRAJECTORY_IMAGE_SIZES)) {
      const made = result.images.find((i) => i.id === id);
      expect(made, id).toBeDefined();
      expect([made!.width, made!.height], id).toEqual([w, h]);
    }

    const chats = model.chatRequests();
    const last = chats.at(-1)!;
    // ... and that is what the model received: each crop under the pixel budget arrives at its exact size.
    const received = await imagesInRequest(last.body);
    expect(received[0]).toEqual([1182, 886]); // the 4000×3000 input, downscaled once to the 1 MP budget
    const expectedInOrder = Object.entries(TRAJECTORY_IMAGE_SIZES).map(([id, [w, h]]) => (id === "img_10" ? [1182, 886] : [w, h]));
    expect(received.slice(1)).toEqual(expectedInOrder);

    // Request k+1 starts with request k byte-for-byte.
    for (let k = 1; k < chats.length; k++) {
      expect(isPrefixExtension(chats[k - 1]!.rawBody, chats[k]!.rawBody), `request ${k}`).toBe(true);
    }

    // Search results and the visited page reached the model.
    const text = requestText(last.body);
    expect(text).toContain("The north pier sign reads LOUPE-42");
    expect(text).toContain("Harbour signs of the old port");
    if (dialect === "tags") {
      expect(text).toContain("<observation>");
      expect(chats[0]!.body.stop).toEqual(["</tool_call>"]);
      expect(chats[0]!.body.tools).toBeUndefined();
    } else {
      expect(chats[0]!.body.tools.map((t: { function: { name: string } }) => t.function.name)).toEqual(
        expect.arrayContaining(["crop", "zoom", "rotate", "flip", "adjust", "annotate", "resize", "text_search", "web_visit"]),
      );
    }

    // Tavily got real requests with the key.
    const searches = tavily.requests.filter((r) => r.path === "/search");
    expect(searches.length).toBe(3);
    expect(searches[0]!.body.include_images).toBe(true);

    // The checkpoint database stays small and holds no image data.
    const dbPath = checkpointPath(settings);
    const size = (await stat(dbPath)).size + (await stat(`${dbPath}-wal`).then((s) => s.size, () => 0));
    expect(size).toBeLessThan(1_000_000);
    const bytes = (await readFile(dbPath)).toString("latin1");
    expect(bytes).not.toMatch(/data:image|\/9j\/4AAQ|iVBORw0KGgo/);
  });
});
