// One thread, one runner: a second `loupe ask` on a thread another process is running is refused at once
// (exit 2, no model request), under SQLite and under Postgres; a lock left by a process killed with SIGKILL
// does not keep the thread locked. The Postgres cases use LOUPE_TEST_DATABASE_URL, else they are skipped.
import { join } from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { LoupeDatabase } from "../src/core/postgres.js";
import { PostgresThreadLocks } from "../src/runtime/thread-lock.js";
import { harbourImage } from "../src/cli/demo/trajectory.js";
import { baseEnv, fixtureServers, runCli, tempDir, writeImage, type CliRun } from "./helpers.js";

const ANSWER = "LOUPE-7";
const REFUSED = (id: string) =>
  new RegExp(`^loupe: thread ${id} is being run by another process \\(pid \\d+[^)]*\\); wait for it to finish or stop it, then --resume ${id}$`);

/** A database of its own on the test server (created and dropped here), or null with the reason the tests are skipped. */
async function testDatabase(): Promise<{ url: string | null; drop(): Promise<void> }> {
  const server = process.env.LOUPE_TEST_DATABASE_URL;
  if (!server) return { url: null, drop: async () => {} };
  const name = `loupe_lock_test_${process.pid}_${Date.now().toString(36)}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: server });
    await client.connect();
    await client.query(sql).finally(() => client.end());
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  return { url: url.href, drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

const database = await testDatabase();
const SKIPPED = "LOUPE_TEST_DATABASE_URL is not set (run: bash scripts/pg-test-cluster.sh npx vitest run test/thread-lock.int.test.ts)";
if (!database.url) console.warn(`thread-lock.int.test.ts: Postgres tests skipped: ${SKIPPED}`);
afterAll(() => database.drop());

const servers = fixtureServers();
let tmp: Awaited<ReturnType<typeof tempDir>>;
let image: string;
beforeEach(async () => {
  tmp = await tempDir("loupe-lock-test-");
  image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(400, 300));
});
afterEach(async () => {
  await servers.closeAll();
  await tmp.cleanup();
});

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `loupe ask` with these arguments against the model, in the data directory. */
function loupe(args: string[], model: { url: string }, dataDir: string, env: Record<string, string> = {}, onSpawn?: (kill: () => void) => void): Promise<CliRun> {
  return runCli(["ask", "--json", "--model-url", model.url, "--data-dir", dataDir, ...args], baseEnv(env), onSpawn);
}

function expectRefused(run: CliRun, threadId: string): void {
  expect(run.stdout).toBe("");
  const lines = run.stderr.trim().split("\n");
  expect(lines.at(-1)).toMatch(REFUSED(threadId));
  expect(run.code).toBe(2);
}

function expectAnswered(run: CliRun, threadId: string): void {
  expect(run.stderr).not.toMatch(/^\s+at /m);
  expect(run.code).toBe(0);
  expect(JSON.parse(run.stdout)).toMatchObject({ threadId, answer: ANSWER });
}

/** The answer, from a model server that is sent no request by a refused runner (`refused.chatRequests()` stays empty). */
const answering = () => servers.model([{ content: `<answer>${ANSWER}</answer>` }]);

/**
 * A runner is killed with SIGKILL while its model request hangs; meanwhile a second runner is refused
 * without sending a request; after the kill, a resume is not refused and finishes the thread.
 */
async function refusedThenFreedByKill(threadId: string, dataDir: string, env: Record<string, string>): Promise<void> {
  const model = await servers.model([{ fault: "hang" }, { content: `<answer>${ANSWER}</answer>` }]);
  const refused = await answering();
  let kill: (() => void) | undefined;
  const first = loupe(["--thread", threadId, "--image", image, "What does the sign say?"], model, dataDir, env, (k) => (kill = k));
  await until(() => model.chatRequests().length === 1, "the first runner's model request");

  expectRefused(await loupe(["--resume", threadId], refused, dataDir, env), threadId);
  expect(refused.chatRequests()).toHaveLength(0);

  kill!();
  expect((await first).signal).toBe("SIGKILL");
  expectAnswered(await loupe(["--resume", threadId], model, dataDir, env), threadId);
  expect(model.chatRequests()).toHaveLength(2);
}

// Each test starts three or four `loupe` processes, slow on a loaded machine.
const SPAWNING = { timeout: 180_000 };

describe("one thread, one runner (SQLite)", SPAWNING, () => {
  it("a second runner, by --resume or --thread, is refused at once while the first runs; the first finishes; the finished thread resumes", async () => {
    // The first runner's request hangs until its model server restarts on the same port, where its retry is answered.
    let model = await servers.model([{ fault: "hang" }]);
    const refused = await answering();
    const data = join(tmp.dir, "data");
    let firstDone = false;
    const first = loupe(["--thread", "t-busy", "--image", image, "What does the sign say?"], model, data, { LOUPE_RETRY_BASE_MS: "20" }).finally(
      () => (firstDone = true),
    );
    await until(() => model.chatRequests().length === 1, "the first runner's model request");

    const [byResume, byThread] = await Promise.all([
      loupe(["--resume", "t-busy"], refused, data),
      loupe(["--thread", "t-busy", "--image", image, "Another question?"], refused, data),
    ]);
    expect(firstDone).toBe(false);
    expectRefused(byResume, "t-busy");
    expectRefused(byThread, "t-busy");
    expect(refused.chatRequests()).toHaveLength(0);

    await model.close();
    model = await servers.model([{ content: `<answer>${ANSWER}</answer>` }], { port: model.port });
    expectAnswered(await first, "t-busy");
    // The lock went with the run: the finished thread resumes (its answer printed again, no request).
    expectAnswered(await loupe(["--resume", "t-busy"], refused, data), "t-busy");
    expect(refused.chatRequests()).toHaveLength(0);
  });

  it("the lock of a runner killed with SIGKILL is taken over by the next --resume", async () => {
    await refusedThenFreedByKill("t-killed", join(tmp.dir, "data"), {});
  });
});

describe.skipIf(!database.url)(`one thread, one runner (Postgres)${database.url ? "" : ` (skipped: ${SKIPPED})`}`, SPAWNING, () => {
  it("a second runner is refused while the first runs; the server frees the lock when the first is killed with SIGKILL", async () => {
    // Separate data directories: the workers share only the database.
    await refusedThenFreedByKill("t-pg-killed", join(tmp.dir, "worker"), { LOUPE_DATABASE_URL: database.url! });
  });

  it("the advisory lock in-process: refused while held, naming the holder; free once released", async () => {
    const db = new LoupeDatabase(database.url!);
    const locks = new PostgresThreadLocks(db);
    try {
      const held = await locks.tryAcquire("t-pg-unit");
      expect(held.held).toBe(true);
      expect(await locks.tryAcquire("t-pg-unit")).toEqual({ held: false, holder: expect.stringMatching(new RegExp(`^pid ${process.pid} on `)) });
      const other = await locks.tryAcquire("t-pg-other");
      expect(other.held).toBe(true);
      if (held.held) await held.release();
      if (other.held) await other.release();
      const again = await locks.tryAcquire("t-pg-unit");
      expect(again.held).toBe(true);
      if (again.held) await again.release();
    } finally {
      await db.end();
    }
  });
});
