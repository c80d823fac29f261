// LoupeSqliteSaver's two-query walk for delta channels gives what LangGraph's default walk gives, at every checkpoint of a thread.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BaseCheckpointSaver, DeltaValue, END, Send, START, StateGraph, StateSchema } from "@langchain/langgraph";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod/v4";
import { createCheckpointer, LoupeSqliteSaver } from "./checkpointer.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "loupe-ckpt-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const appendAll = (current: string[], writes: string[][]) => current.concat(...writes);

/** Two delta channels, one snapshotting every other update; three parallel tasks write each turn. */
const State = new StateSchema({
  log: new DeltaValue(z.array(z.string()).default(() => []), { inputSchema: z.array(z.string()), reducer: appendAll }),
  often: new DeltaValue(z.array(z.string()).default(() => []), { inputSchema: z.array(z.string()), reducer: appendAll, snapshotFrequency: 2 }),
  turn: z.number().default(0),
});

function graph(saver: BaseCheckpointSaver) {
  return new StateGraph(State)
    .addNode("plan", async (s: { turn: number }) => ({ turn: s.turn + 1, log: [`plan ${s.turn}`], often: [`o${s.turn}`] }))
    .addNode("work", (async (task: { turn: number; k: number }) => ({ log: [`work ${task.turn}.${task.k}`], often: [`w${task.turn}.${task.k}`] })) as never)
    .addEdge(START, "plan")
    .addConditionalEdges("plan", (s: { turn: number }) => (s.turn > 4 ? END : [0, 1, 2].map((k) => new Send("work", { turn: s.turn, k }))), ["work", END])
    .addEdge("work", "plan")
    .compile({ checkpointer: saver });
}

describe("LoupeSqliteSaver", () => {
  it("is the saver createCheckpointer makes: WAL, no fsync per commit", async () => {
    const saver = createCheckpointer({ dataDir: join(dir, "made") });
    expect(saver).toBeInstanceOf(LoupeSqliteSaver);
    expect(await saver.getTuple({ configurable: { thread_id: "none" } })).toBeUndefined();
    expect(saver.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(saver.db.pragma("synchronous", { simple: true })).toBe(1);
    saver.db.close();
  });

  it("rebuilds delta channels exactly as the default ancestor walk does, at every checkpoint", async () => {
    const saver = LoupeSqliteSaver.fromConnString(join(dir, "walk.sqlite"));
    const g = graph(saver);
    const config = { configurable: { thread_id: "t1" } };
    await g.invoke({}, { ...config, durability: "sync" });
    const final = await g.getState(config);
    const values = final.values as { log: string[]; often: string[]; turn: number };
    expect(values.turn).toBe(5);
    expect(values.log).toHaveLength(5 + 4 * 3);
    // A super-step's parallel writes land in task-id order (LangGraph's rule for delta channels).
    expect(values.log[0]).toBe("plan 0");
    expect(new Set(values.log.slice(1, 4))).toEqual(new Set(["work 1.0", "work 1.1", "work 1.2"]));
    expect(values.log[4]).toBe("plan 1");
    expect(values.often).toHaveLength(values.log.length);

    let compared = 0;
    let seeded = 0;
    for await (const tuple of saver.list(config)) {
      const options = { config: tuple.config, channels: ["log", "often"] };
      const mine = await saver.getDeltaChannelHistory(options);
      const reference = await BaseCheckpointSaver.prototype.getDeltaChannelHistory.call(saver, options);
      expect(mine).toEqual(reference);
      if ("seed" in mine.often!) seeded++;
      compared++;
    }
    expect(compared).toBeGreaterThan(8);
    // The channel that snapshots starts from a seed for most checkpoints; the other never does.
    expect(seeded).toBeGreaterThan(0);
    // An unknown thread and no channels.
    expect(await saver.getDeltaChannelHistory({ config: { configurable: { thread_id: "nope", checkpoint_ns: "" } }, channels: ["log"] })).toEqual({ log: { writes: [] } });
    expect(await saver.getDeltaChannelHistory({ config: tuple0(config), channels: [] })).toEqual({});
    saver.db.close();
  });
});

function tuple0(config: { configurable: { thread_id: string } }) {
  return { configurable: { ...config.configurable, checkpoint_ns: "" } };
}
