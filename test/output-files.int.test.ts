// Files a command writes where the user said: through a symlink to the file it names, never over a pipe, device or directory, and no temp file left when a write fails.
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { resolveConfig } from "../src/core/config.js";
import { OutputFileError, writeAtomic, type WriteFile } from "../src/eval/output-file.js";
import { runEval } from "../src/eval/run.js";
import { baseEnv, runCli, tempDir } from "./helpers.js";
import { testPicture } from "./scenarios/eval.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let model: ScriptedModelServer;
let runDir: string;

beforeAll(async () => {
  tmp = await tempDir("loupe-output-");
  mkdirSync(join(tmp.dir, "ds"));
  writeFileSync(join(tmp.dir, "ds", "pic.png"), await testPicture());
  writeFileSync(join(tmp.dir, "ds", "items.jsonl"), `${JSON.stringify({ id: "one", image: "pic.png", question: "What is the code?", answer: "A1" })}\n`);
  model = await startScriptedModelServer({ script: [{ content: "<think>It says A1.</think><answer>A1</answer>" }], onExhausted: "repeat-last" });
  runDir = join(tmp.dir, "run");
  const settings = resolveConfig({ modelUrl: model.url, dataDir: join(tmp.dir, "data"), retries: 1, retryBaseMs: 10 }, {});
  const outcome = await runEval({ dataset: join(tmp.dir, "ds", "items.jsonl"), concurrency: 1, out: runDir, resume: false, settings, secrets: {}, progress: false, report: false, log: () => {} });
  expect(outcome.summary.errors.count).toBe(0);
});

afterAll(async () => {
  await model?.close();
  await tmp?.cleanup();
});

/** A fresh directory for one test's files. */
function dirFor(name: string): string {
  const dir = join(tmp.dir, name);
  mkdirSync(dir);
  return dir;
}

const exportTo = (out: string) => runCli(["export", runDir, "--filter", "none", "--out", out], baseEnv());

const tempFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith(".tmp"));

describe("loupe export --out", () => {
  it("a symlink to a regular file: the file it names is written, the link kept, and so are the file's permissions", async () => {
    const dir = dirFor("symlink");
    mkdirSync(join(dir, "real"));
    const target = join(dir, "real", "v3.jsonl");
    writeFileSync(target, "old\n");
    chmodSync(target, 0o640);
    const link = join(dir, "latest.jsonl");
    symlinkSync(join("real", "v3.jsonl"), link);
    const run = await exportTo(link);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(run.code).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(join("real", "v3.jsonl"));
    const lines = readFileSync(target, "utf8").trim().split("\n");
    expect(lines.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(["one"]);
    expect(statSync(target).mode & 0o777).toBe(0o640);
    expect([...tempFiles(dir), ...tempFiles(join(dir, "real"))]).toEqual([]);
  });

  it("a symlink to a file not there yet: the file is made, the link kept", async () => {
    const dir = dirFor("dangling");
    const link = join(dir, "out.jsonl");
    symlinkSync("made.jsonl", link);
    const run = await exportTo(link);
    expect(run.code).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dir, "made.jsonl"), "utf8")).toMatch(/"id":"one"/);
  });

  const refused = async (out: string, what: RegExp) => {
    const run = await exportTo(out);
    expect(run.code).not.toBe(0);
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(out);
    expect(lines[0]).toMatch(what);
    expect(lines[0]).toMatch(/not a regular file; name a regular file or a new path/);
  };

  it("a FIFO is refused with one line naming it, and left as it was (nothing made beside it)", async () => {
    const dir = dirFor("fifo");
    const fifo = join(dir, "out.jsonl");
    execFileSync("mkfifo", [fifo]);
    await refused(fifo, /is a named pipe \(FIFO\)/);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(readdirSync(dir)).toEqual(["out.jsonl"]);
  });

  it("a symlink to a FIFO is refused too, naming where it leads", async () => {
    const dir = dirFor("fifo-link");
    execFileSync("mkfifo", [join(dir, "pipe")]);
    symlinkSync("pipe", join(dir, "out.jsonl"));
    await refused(join(dir, "out.jsonl"), /it leads to .*pipe\): it is a named pipe/);
    expect(lstatSync(join(dir, "pipe")).isFIFO()).toBe(true);
  });

  it("a directory is refused", async () => {
    const dir = dirFor("directory");
    mkdirSync(join(dir, "out.jsonl"));
    await refused(join(dir, "out.jsonl"), /is a directory/);
  });

  // A device node of its own, like /dev/null (character device 1,3): a broken check must not replace the real one.
  let device: string | undefined;
  try {
    const dir = join(tempDirSync(), "dev");
    execFileSync("mknod", [dir, "c", "1", "3"], { stdio: "ignore" });
    device = dir;
  } catch {
    device = undefined;
  }
  it.skipIf(!device)("a device (a node like /dev/null) is refused and left a device", async () => {
    await refused(device!, /is a device/);
    expect(lstatSync(device!).isCharacterDevice()).toBe(true);
  });
});

/** A directory made at collection time (for the device node), removed after the tests. */
function tempDirSync(): string {
  const dir = execFileSync("mktemp", ["-d", "-t", "loupe-dev-XXXXXX"], { encoding: "utf8" }).trim();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe("writeAtomic", () => {
  /** A write function that fails the test if used: it writes nothing. */
  const neverWrite = (): WriteFile & { calls: string[] } => {
    const calls: string[] = [];
    return Object.assign((path: string) => {
      calls.push(path);
      throw new Error(`wrote ${path}`);
    }, { calls });
  };

  it("refuses /dev/null and a socket without writing anything", async () => {
    const write = neverWrite();
    expect(() => writeAtomic("/dev/null", "x", write)).toThrow(/^cannot write \/dev\/null: it is a device, not a regular file/);
    const dir = dirFor("socket");
    const socket = join(dir, "out.sock");
    const server = createServer();
    await new Promise<void>((done) => server.listen(socket, done));
    try {
      expect(() => writeAtomic(socket, "x", write)).toThrow(/is a socket, not a regular file/);
    } finally {
      await new Promise((done) => server.close(done));
    }
    expect(write.calls).toEqual([]);
  });

  it("a write that fails part way (a full disk) removes its temp file and leaves the old file whole", () => {
    const dir = dirFor("enospc");
    const path = join(dir, "summary.json");
    writeFileSync(path, "old");
    const halfThenFull: WriteFile = (tmpPath, data) => {
      writeFileSync(tmpPath, String(data).slice(0, 3));
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    };
    const err = (() => {
      try {
        writeAtomic(path, "new contents", halfThenFull);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(OutputFileError);
    expect((err as Error).message).toBe(`cannot write ${path}: no space left on the device`);
    expect(readdirSync(dir)).toEqual(["summary.json"]);
    expect(readFileSync(path, "utf8")).toBe("old");
  });

  it("a directory removed before the write: a clear error, nothing left behind", () => {
    const dir = dirFor("gone");
    rmSync(dir, { recursive: true });
    expect(() => writeAtomic(join(dir, "report.html"), "<html>")).toThrow(`cannot write ${join(dir, "report.html")}: its directory does not exist`);
    expect(existsSync(dir)).toBe(false);
  });
});
