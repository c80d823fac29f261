// What a thread keeps at rest: a long question is stored once per thread, not once per checkpoint.
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkpointPath } from "../src/runtime/checkpointer.js";
import { ask } from "../src/run/ask.js";
import { fixtureServers, tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import { halfBlankPng } from "./node-fakes.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
const servers = fixtureServers();
beforeEach(async () => {
  tmp = await tempDir();
});
afterEach(async () => {
  await servers.closeAll();
  await tmp.cleanup();
});

/** Bytes of every checkpoint and pending write the thread stored. */
function storedBytes(dataDir: string, threadId: string): number {
  const db = new Database(checkpointPath({ dataDir }), { readonly: true });
  try {
    const one = (sql: string) => (db.prepare<[string], { bytes: number | null }>(sql).get(threadId)?.bytes ?? 0);
    return (
      one("SELECT SUM(LENGTH(checkpoint) + LENGTH(metadata)) AS bytes FROM checkpoints WHERE thread_id = ?") +
      one("SELECT SUM(LENGTH(value)) AS bytes FROM writes WHERE thread_id = ?")
    );
  } finally {
    db.close();
  }
}

/** Runs the 1 MiB question with `calls` crops, and returns the bytes its thread stored. */
async function threadBytes(calls: number): Promise<{ bytes: number; question: string; stateQuestion: string; toolCalls: number }> {
  const crop = (i: number) => ({ toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 100 + 50 * i, 100 + 50 * i] } }] });
  const server = await servers.model([...Array.from({ length: calls }, (_, i) => crop(i)), { content: "<answer>done</answer>" }]);
  const dataDir = `${tmp.dir}/run-${calls}`;
  const settings = testSettings({ modelUrl: server.url, dataDir });
  const image = await writeImage(tmp.dir, "half.png", await halfBlankPng());
  const question = `What is in this picture? ${"context ".repeat(131_072)}`; // 1 MiB
  const { agent, close } = testAgent(settings);
  const result = await ask(agent, { settings, question, images: [image] });
  const state = await agent.getState({ configurable: { thread_id: result.threadId } });
  close();
  return { bytes: storedBytes(dataDir, result.threadId), question, stateQuestion: (state.values as { question: string }).question, toolCalls: result.toolCalls.length };
}

describe("checkpoints at rest", () => {
  it("a 1 MB question is stored a fixed number of times per thread, not once per checkpoint", async () => {
    const short = await threadBytes(2);
    const long = await threadBytes(10);
    expect(long.toolCalls).toBe(10);
    // The state still has the question, rebuilt from the write that stored it.
    expect(long.stateQuestion).toBe(long.question);
    // 8 more tool calls are 24 more checkpoints: a copy of the question in each would add 24 MiB.
    expect(long.bytes - short.bytes).toBeLessThan(256 * 1024);
    // The copies there are: the run's input (LangGraph's input checkpoint and its write), the
    // question turn of the conversation the model is sent, and the human message of `messages`.
    expect(long.bytes).toBeLessThan(4.5 * long.question.length);
  });
});
