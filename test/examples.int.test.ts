// The composition examples run for real: the batch graph fans questions out to the agent subgraph with Send, checkpointed in SQLite.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import { spawnSync } from "node:child_process";
import { copyFile, mkdir, symlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { batchRunConfig, buildBatchGraph } from "../examples/batch.js";
import { createLoupeAgent } from "../src/index.js";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { routedServer } from "./scenarios/router.js";
import { harbourImage } from "../src/cli/demo/trajectory.js";
import { tempDir, writeImage } from "./helpers.js";

const REPO = resolve(import.meta.dirname, "..");

let tmp: Awaited<ReturnType<typeof tempDir>>;
let model: ScriptedModelServer;

beforeEach(async () => {
  tmp = await tempDir();
});
afterEach(async () => {
  await model?.close();
  await tmp.cleanup();
});

const crop = (bbox: number[]) => ({ content: "<think>look closer</think>", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox } }], delayMs: 30 });

describe("examples/batch.ts", () => {
  it("runs as a script from a path that needs URL escaping (a space)", async () => {
    const root = join(tmp.dir, "with space");
    await mkdir(join(root, "examples"), { recursive: true });
    await copyFile(join(REPO, "examples", "batch.ts"), join(root, "examples", "batch.ts"));
    for (const d of ["src", "tools", "graphs", "nodes", "node_modules", "package.json"]) await symlink(join(REPO, d), join(root, d));
    const run = spawnSync(process.execPath, ["--import", "tsx", join(root, "examples", "batch.ts")], { cwd: REPO, encoding: "utf8", env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    expect(run.stderr).toMatch(/usage: npx tsx examples\/batch\.ts/);
    expect(run.status).toBe(2);
  });

  it("answers every question of the batch through the agent subgraph, in parallel, in question order", async () => {
    model = await startScriptedModelServer(
      routedServer([
        { key: "first question", turns: [crop([0, 0, 500, 500]), { content: "<answer>answer one</answer>" }] },
        { key: "second question", turns: [crop([500, 500, 1000, 1000]), crop([0, 0, 500, 500]), { content: "<answer>answer two</answer>" }] },
        { key: "third question", turns: [{ content: "<answer>answer three</answer>", delayMs: 30 }] },
      ]),
    );
    const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(800, 600));
    const { agent, deps, config } = createLoupeAgent({ config: { modelUrl: model.url, dataDir: tmp.dir, retries: 1, searchCache: "live", stream: false }, env: {} });
    const checkpointer = SqliteSaver.fromConnString(join(tmp.dir, "batch.sqlite"));
    try {
      const batch = buildBatchGraph(agent).compile({ checkpointer });
      const questions = ["first question?", "second question?", "third question?"].map((question) => ({ question, imageSources: [image] }));
      const out = await batch.invoke({ questions }, batchRunConfig(config, "batch-1"));

      expect(out.results.map((r) => [r.index, r.answer, r.reason, r.toolCalls])).toEqual([
        [0, "answer one", "answered", 1],
        [1, "answer two", "answered", 2],
        [2, "answer three", "answered", 0],
      ]);
      // The runs overlapped: the third question's only request came before the second question's last.
      const order = model.chatRequests().map((r) => JSON.stringify(r.body.messages).match(/(first|second|third) question/)![1]);
      expect(order).toHaveLength(6);
      expect(order.indexOf("third")).toBeLessThan(order.lastIndexOf("second"));
      // Each run carries its own session key (for load balancers' affinity), the same on all its requests.
      const keys = new Map<string, Set<unknown>>();
      model.chatRequests().forEach((r, k) => keys.set(order[k]!, (keys.get(order[k]!) ?? new Set()).add(r.headers["x-loupe-session"])));
      expect([...keys.values()].map((k) => k.size)).toEqual([1, 1, 1]);
      expect(new Set([...keys.values()].flatMap((k) => [...k])).size).toBe(3);
      expect([...keys.values()].every((k) => /^[0-9a-f]{32}$/.test(String([...k][0])))).toBe(true);
      // Each agent run was checkpointed as a subgraph of the batch's thread.
      const namespaces = new Set<string>();
      for await (const t of checkpointer.list({ configurable: { thread_id: "batch-1" } })) namespaces.add(String(t.config.configurable?.checkpoint_ns ?? ""));
      expect([...namespaces].filter((ns) => ns.startsWith("ask_agent:"))).toHaveLength(3);
    } finally {
      checkpointer.db.close();
      await deps.close();
    }
  });
});
