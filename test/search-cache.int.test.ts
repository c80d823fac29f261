// Record a trajectory's searches, then replay it from the cache with zero network calls to the search provider.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { ask } from "../src/run/ask.js";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import { harbourImage, TRAJECTORY_ANSWER, TRAJECTORY_PAGES, TRAJECTORY_SEARCH, trajectoryScript } from "../src/cli/demo/trajectory.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  tmp = await tempDir();
});
afterEach(async () => {
  await tmp.cleanup();
});

it("replay mode answers the same from a recorded cache with zero search network calls, and stores no key", async () => {
  const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(1600, 1200));
  const tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  const first = await startScriptedModelServer({ script: trajectoryScript("tools") });
  const recordSettings = testSettings({ modelUrl: first.url, dataDir: tmp.dir, tavilyUrl: tavily.url, searchCache: "record" });
  const recording = testAgent(recordSettings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
  const recorded = await ask(recording.agent, { settings: recordSettings, question: "What code?", images: [image] });
  recording.close();
  await first.close();
  const searchCalls = tavily.requests.length;
  expect(searchCalls).toBeGreaterThan(0);

  const second = await startScriptedModelServer({ script: trajectoryScript("tools") });
  const replaySettings = testSettings({ modelUrl: second.url, dataDir: tmp.dir, tavilyUrl: tavily.url, searchCache: "replay" });
  const replaying = testAgent(replaySettings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
  const replayed = await ask(replaying.agent, { settings: replaySettings, question: "What code?", images: [image] });
  replaying.close();
  await second.close();
  await tavily.close();

  expect(tavily.requests.length).toBe(searchCalls);
  expect(replayed.answer).toBe(TRAJECTORY_ANSWER);
  expect(replayed.answer).toBe(recorded.answer);
  expect(replayed.toolCalls.every((c) => c.ok)).toBe(true);
  for (const file of ["search-cache.sqlite", "checkpoints.sqlite"]) {
    const bytes = await readFile(join(tmp.dir, file));
    expect(bytes.includes(Buffer.from(FAKE_TAVILY_API_KEY)), file).toBe(false);
  }
});
