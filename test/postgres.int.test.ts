// Postgres for many workers (LOUPE_DATABASE_URL): separate `loupe` processes with their own, empty data directories
// share threads, images and cached searches through one real PostgreSQL. Uses LOUPE_TEST_DATABASE_URL, else starts a
// throwaway local cluster with scripts/pg-test-cluster.sh, else skips (saying why).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { existsSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import { ConfigError, resolveConfig } from "../src/core/config.js";
import { LoupeDatabase, setUpSchema } from "../src/core/postgres.js";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { baseEnv, imagesInRequest, runCli, tempDir, writeImage } from "./helpers.js";
import { harbourImage, TRAJECTORY_ANSWER, TRAJECTORY_PAGES, TRAJECTORY_SEARCH, TRAJECTORY_TOOL_CALLS, trajectoryScript } from "../src/cli/demo/trajectory.js";

const ROOT = resolve(import.meta.dirname, "..");
const CLUSTER_SCRIPT = join(ROOT, "scripts", "pg-test-cluster.sh");
/** Put in the test database's URL (trust authentication ignores it) to check it never leaks. */
const DB_PASSWORD = "pg-test-password-never-shown";

interface TestDatabase {
  /** The URL of a fresh database for this file, or null when the tests are skipped. */
  url: string | null;
  reason: string;
  stop(): Promise<void>;
}

/** LOUPE_TEST_DATABASE_URL, else a throwaway cluster if PostgreSQL is installed; then a fresh database in it. */
async function testDatabase(): Promise<TestDatabase> {
  let server: string | undefined = process.env.LOUPE_TEST_DATABASE_URL || undefined;
  let cluster: ChildProcess | undefined;
  const stopCluster = async () => {
    if (!cluster || cluster.exitCode !== null || cluster.signalCode !== null) return;
    const closed = new Promise((r) => cluster!.once("close", r));
    cluster.kill("SIGTERM");
    await closed;
  };
  if (!server) {
    if (spawnSync("bash", [CLUSTER_SCRIPT, "--check"]).status !== 0) {
      return {
        url: null,
        reason:
          "no LOUPE_TEST_DATABASE_URL and no local PostgreSQL server (initdb) to start a throwaway one; install PostgreSQL (Debian: apt-get install postgresql) or set LOUPE_TEST_DATABASE_URL to a server where the test may create a database",
        stop: async () => {},
      };
    }
    cluster = spawn("bash", [CLUSTER_SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    cluster.stderr!.on("data", (d) => (stderr += d));
    server = await new Promise<string | undefined>((done) => {
      let out = "";
      const timer = setTimeout(() => done(undefined), 60_000);
      cluster!.stdout!.on("data", (d) => {
        out += d;
        const url = /LOUPE_TEST_DATABASE_URL=(\S+)/.exec(out)?.[1];
        if (url) {
          clearTimeout(timer);
          done(url);
        }
      });
      cluster!.once("close", () => {
        clearTimeout(timer);
        done(undefined);
      });
    });
    if (!server) {
      await stopCluster();
      throw new Error(`scripts/pg-test-cluster.sh did not start a cluster: ${stderr.trim()}`);
    }
  }
  // A database of its own, so earlier runs' cached searches cannot answer this run's.
  const name = `loupe_test_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(server);
  url.pathname = `/${name}`;
  if (!url.password && !process.env.PGPASSWORD) url.password = DB_PASSWORD;
  return {
    url: url.href,
    reason: "",
    stop: async () => {
      const cleanup = new pg.Client({ connectionString: server });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
      await stopCluster();
    },
  };
}

const database = await testDatabase();
if (!database.url) console.warn(`postgres.int.test.ts: Postgres tests skipped: ${database.reason}`);
afterAll(() => database.stop());

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  return baseEnv(extra);
}

async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
}

/** sha256s of the images in a data directory's local image files. */
async function localImages(dataDir: string): Promise<string[]> {
  return (await filesUnder(join(dataDir, "images"))).map((f) => f.split(".")[0]!).sort();
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  tmp = await tempDir("loupe-pg-test-");
});
afterEach(async () => {
  await tmp.cleanup();
});

describe("a database that cannot be used", () => {
  it("an unreachable database fails at once with one line naming the URL without its password", async () => {
    const model = await startScriptedModelServer({ script: [] });
    const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(400, 300));
    const port = await closedPort();
    const run = await runCli(
      ["ask", "--model-url", model.url, "--image", image, "--data-dir", join(tmp.dir, "d"), "q?"],
      env({ LOUPE_DATABASE_URL: `postgres://loupe:hunter2-secret@127.0.0.1:${port}/loupe`, LOUPE_RETRIES: "0" }),
    );
    await model.close();
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    // The run's thread first (so it can be resumed once the database is back), then the error: one line.
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^loupe: thread \S+/);
    expect(lines[1]).toContain(`cannot reach the database at postgres://loupe@127.0.0.1:${port}/loupe`);
    expect(lines[1]).toMatch(/ECONNREFUSED/);
    expect(run.stderr).not.toContain("hunter2");
    expect(model.chatRequests()).toHaveLength(0);

    // Not a Postgres URL: a configuration error (exit 2 from the CLI), the password left out too.
    const bad = (() => {
      try {
        resolveConfig({}, { LOUPE_DATABASE_URL: "mysql://root:hunter2-secret@db/loupe" });
      } catch (err) {
        return err as Error;
      }
    })();
    expect(bad).toBeInstanceOf(ConfigError);
    expect(bad!.message).toMatch(/LOUPE_DATABASE_URL: must be a postgres:\/\/ or postgresql:\/\/ URL \(got "mysql:\/\/root@db\/loupe"\)/);
    expect(bad!.message).not.toContain("hunter2");
  });
});

describe.skipIf(!database.url)(`Postgres shared by several workers${database.url ? "" : ` (skipped: ${database.reason})`}`, () => {
  const url = database.url!;

  it("schema set-up is harmless run twice, and by several workers at once", async () => {
    const first = new LoupeDatabase(url);
    await first.ready();
    await first.query("INSERT INTO loupe_images (sha256, mime, width, height, bytes) VALUES ('marker', 'image/png', 1, 1, '\\x00')");
    await first.query(
      "INSERT INTO loupe_search_cache (key, provider, operation, input, value, created_at) VALUES ('marker', 'p', 'text_search', 'q', '{}', 1)",
    );
    // Again on the same pool, then by three fresh workers at once, then LangGraph's own set-up directly.
    await setUpSchema(first.pool);
    await Promise.all(
      [0, 1, 2].map(async () => {
        const worker = new LoupeDatabase(url);
        await worker.ready();
        await worker.end();
      }),
    );
    await new PostgresSaver(first.pool).setup();
    const kept = await first.query("SELECT (SELECT count(*) FROM loupe_images WHERE sha256 = 'marker') AS images, (SELECT count(*) FROM loupe_search_cache WHERE key = 'marker') AS searches");
    expect(kept.rows[0]).toEqual({ images: "1", searches: "1" });
    const migrations = await first.query<{ v: number }>("SELECT v FROM checkpoint_migrations ORDER BY v");
    expect(migrations.rows.map((r) => r.v)).toEqual([0, 1, 2, 3, 4]);
    const tables = await first.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual([
      "checkpoint_blobs",
      "checkpoint_migrations",
      "checkpoint_writes",
      "checkpoints",
      "loupe_images",
      "loupe_search_cache",
    ]);
    await first.query("DELETE FROM loupe_images WHERE sha256 = 'marker'");
    await first.query("DELETE FROM loupe_search_cache WHERE key = 'marker'");
    await first.end();
  });

  describe("two workers, one thread", () => {
    let model: ScriptedModelServer | undefined;
    let tavily: FakeTavilyServer;
    beforeEach(async () => {
      tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
    });
    afterEach(async () => {
      await model?.close();
      await tavily.close();
    });

    it("the first is killed with SIGKILL mid-run; the second, with an empty data dir, resumes it to the same answer, reading the first's images and cached searches", async () => {
      const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(1600, 1200));
      const script = trajectoryScript("tools");
      const KILL_AT = 7; // the 7th chat request (after two searches and five images) hangs until the worker is killed
      script.splice(KILL_AT - 1, 0, { fault: "hang" });
      model = await startScriptedModelServer({ script });
      const workerEnv = env({ LOUPE_DATABASE_URL: url, TAVILY_API_KEY: FAKE_TAVILY_API_KEY, LOUPE_TAVILY_URL: tavily.url });
      const searches = () => tavily.requests.filter((r) => r.path === "/search").length;
      const dirA = join(tmp.dir, "worker-a");
      const dirB = join(tmp.dir, "worker-b");
      await mkdir(dirB);

      const first = await runCli(
        ["ask", "--json", "--thread", "t-shared", "--model-url", model.url, "--image", image, "--data-dir", dirA, "What does the sign say?"],
        workerEnv,
        (kill) => {
          const timer = setInterval(() => {
            if (model!.chatRequests().length >= KILL_AT) {
              clearInterval(timer);
              kill();
            }
          }, 20);
        },
      );
      expect(first.signal).toBe("SIGKILL");
      expect(searches()).toBe(2);
      const killedRequest = model.chatRequests()[KILL_AT - 1]!.rawBody;
      const storedByA = await localImages(dirA);
      expect(storedByA.length).toBeGreaterThanOrEqual(5);
      expect(await filesUnder(dirB)).toEqual([]);

      const second = await runCli(["ask", "--json", "--resume", "t-shared", "--model-url", model.url, "--data-dir", dirB], workerEnv);
      expect(second.stderr).not.toMatch(/^\s+at /m);
      expect(second.code).toBe(0);
      const out = JSON.parse(second.stdout);
      expect(out.answer).toBe(TRAJECTORY_ANSWER);
      expect(out.threadId).toBe("t-shared");
      expect(out.toolCalls).toHaveLength(TRAJECTORY_TOOL_CALLS);
      expect(model.remaining()).toBe(0);
      // The cut-off request was re-sent byte for byte, images included: the second worker read the
      // first's images from Postgres (its own data directory started empty) and redid nothing.
      const resent = model.chatRequests()[KILL_AT]!;
      expect(resent.rawBody).toBe(killedRequest);
      expect((await imagesInRequest(resent.body)).length).toBeGreaterThanOrEqual(5);
      const seenByB = await localImages(dirB);
      expect(seenByB.filter((sha) => storedByA.includes(sha)).length).toBeGreaterThan(0);
      const db = new pg.Client({ connectionString: url });
      await db.connect();
      try {
        const inDb = (await db.query<{ sha256: string }>("SELECT sha256 FROM loupe_images")).rows.map((r) => r.sha256);
        expect(storedByA.filter((sha) => !inDb.includes(sha))).toEqual([]);
        expect(seenByB.filter((sha) => !inDb.includes(sha))).toEqual([]);
        // Nothing went to SQLite in either data directory.
        expect([...(await filesUnder(dirA)), ...(await filesUnder(dirB))].filter((f) => f.endsWith(".sqlite"))).toEqual([]);

        // The second worker asks again on a new thread: every search and page (the first worker's
        // two searches among them) is served from the shared cache, with no call to the provider.
        const before = tavily.requests.length;
        await model.close();
        model = await startScriptedModelServer({ script: trajectoryScript("tools") });
        const again = await runCli(
          ["ask", "--json", "--thread", "t-again", "--model-url", model.url, "--image", image, "--data-dir", dirB, "What does the sign say?"],
          workerEnv,
        );
        expect(again.code).toBe(0);
        expect(JSON.parse(again.stdout).answer).toBe(TRAJECTORY_ANSWER);
        expect(tavily.requests.length).toBe(before);
        const cached = await db.query<{ input: string }>("SELECT input FROM loupe_search_cache WHERE operation = 'text_search' ORDER BY input");
        expect(cached.rows.map((r) => r.input)).toEqual(Object.keys(TRAJECTORY_SEARCH).map((q) => q.toLowerCase()).sort());

        // Neither the search key nor the database password is stored anywhere in the database.
        const dump = await db.query<{ text: string }>(
          `SELECT string_agg(t, '') AS text FROM (
             SELECT value AS t FROM loupe_search_cache UNION ALL SELECT input FROM loupe_search_cache
             UNION ALL SELECT checkpoint::text FROM checkpoints UNION ALL SELECT metadata::text FROM checkpoints
             UNION ALL SELECT encode(blob, 'escape') FROM checkpoint_blobs WHERE blob IS NOT NULL
             UNION ALL SELECT encode(blob, 'escape') FROM checkpoint_writes) parts`,
        );
        expect(dump.rows[0]!.text).toContain("LOUPE-42");
        expect(dump.rows[0]!.text).not.toContain(FAKE_TAVILY_API_KEY);
        expect(dump.rows[0]!.text).not.toContain(DB_PASSWORD);
        expect(first.stderr + second.stderr + again.stderr).not.toContain(DB_PASSWORD);
      } finally {
        await db.end();
      }
    });
  });
});
