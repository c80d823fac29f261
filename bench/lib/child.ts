// Child processes: a benchmark variant runs alone in its own process so its peak RSS is its own,
// and the model server can run outside the process being timed.
import { fork, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "./common.js";
import type { CropScenario } from "./scenarios.js";
import type { ScriptedModelServerOptions } from "../../src/cli/demo/scripted-model-server.js";

export function forkTs(script: string): ChildProcess {
  return fork(join(ROOT, script), [], {
    cwd: ROOT,
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: { ...process.env, NODE_NO_WARNINGS: "1" },
  });
}

/** The next message of `type` from the child; rejects if the child exits or reports an error first. */
export function nextMessage<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: { type?: string; message?: string } & Record<string, unknown>) => {
      if (msg?.type === "error") {
        cleanup();
        reject(new Error(`child ${child.pid}: ${msg.message}`));
      } else if (msg?.type === type) {
        cleanup();
        resolve(msg as T);
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`child ${child.pid} exited (${signal ?? code}) before sending "${type}"`));
    };
    const cleanup = () => {
      child.off("message", onMessage);
      child.off("exit", onExit);
    };
    child.on("message", onMessage);
    child.on("exit", onExit);
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** What a task child reports besides the task's own result. */
export interface ChildMeasure {
  /** Peak resident set size of the whole child process, bytes. */
  maxRssBytes: number;
  /** CPU time of the child during the task, ms (user + system, all threads). */
  cpuMs: number;
}

/**
 * Runs `fn` exported by `module` (a path under the repository) in a fresh process and returns its
 * result with the child's peak RSS.
 */
export async function runInChild<T>(module: string, fn: string, args: unknown): Promise<T & ChildMeasure> {
  const child = forkTs("bench/workers/task.ts");
  const result = nextMessage<{ result: T & ChildMeasure }>(child, "result");
  child.send({ type: "run", module, fn, args });
  try {
    return (await result).result;
  } finally {
    await exited(child);
  }
}

export interface ServerProcess {
  url: string;
  /** sha256 of every chat request body received since the last call, in arrival order. */
  takeHashes(): Promise<string[]>;
  close(): Promise<void>;
}

/** The scripted model server in its own process, answering every request by its step in `scenario`. */
export async function startServerProcess(
  scenario: CropScenario,
  options: Pick<ScriptedModelServerOptions, "latencyMs" | "ttftMs" | "tokensPerSecond"> = {},
  record: "hash" | "none" = "none",
): Promise<ServerProcess> {
  const child = forkTs("bench/workers/model-server.ts");
  const ready = nextMessage<{ url: string }>(child, "ready");
  child.send({ type: "start", scenario, options, record });
  const { url } = await ready;
  return {
    url,
    async takeHashes() {
      const reply = nextMessage<{ hashes: string[] }>(child, "hashes");
      child.send({ type: "hashes" });
      return (await reply).hashes;
    },
    async close() {
      if (child.exitCode !== null) return;
      child.send({ type: "close" });
      await exited(child);
    },
  };
}
