// The LangGraph dev server (`npm run dev`, i.e. `langgraph-cli dev`) for tests: started on a free loopback port in a directory of its own, stopped with everything it spawned.
import { FAKE_TAVILY_API_KEY } from "../src/cli/demo/fake-tavily-server.js";
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer as createNetServer } from "node:net";
import { join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");

export interface DevServer {
  url: string;
  child: ChildProcess;
  /** Where it runs: its cwd, where it keeps its files (.langgraph_api). */
  dir: string;
  /** Everything it wrote to stdout and stderr so far. */
  log: () => string;
}

export async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

/** The repository's langgraph.json, with paths made relative to `dir`, so the server keeps its files (.langgraph_api) there. */
export async function writeServerConfig(dir: string): Promise<string> {
  const config = JSON.parse(await readFile(join(ROOT, "langgraph.json"), "utf8"));
  const rebase = (spec: string) => {
    const [file, symbol] = spec.split(":");
    return `${relative(dir, join(ROOT, file!))}:${symbol}`;
  };
  config.graphs = Object.fromEntries(Object.entries(config.graphs as Record<string, string>).map(([id, spec]) => [id, rebase(spec)]));
  if (config.http?.app) config.http.app = rebase(config.http.app);
  config.env = {};
  const path = join(dir, "langgraph.json");
  await writeFile(path, JSON.stringify(config, null, 2));
  return path;
}

/** `npm run dev` (scripts/dev.mjs) in `dir` with exactly `env`, once it answers /ok (within 60 s). */
export async function startDevServer(dir: string, env: NodeJS.ProcessEnv): Promise<DevServer> {
  await mkdir(dir, { recursive: true });
  const configPath = await writeServerConfig(dir);
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, "scripts", "dev.mjs"), "--config", configPath, "--no-reload"], {
    cwd: dir,
    env: { ...env, LOUPE_DEV_PORT: String(port) },
    detached: true, // its own process group, so the server it spawns stops with it
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the dev server exited (${child.exitCode}):\n${output}`);
    const ok = await fetch(`${url}/ok`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`the dev server did not answer /ok within 60 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, child, dir, log: () => output };
}

interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  zombie: boolean;
  cmdline: string;
}

/** The processes of this machine from /proc (Linux), or null where there is none. */
function processes(): Proc[] | null {
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((e) => /^\d+$/.test(e));
  } catch {
    return null;
  }
  return entries.flatMap((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the command's closing parenthesis: state, ppid, pgrp, …
      const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      return [{ pid: Number(pid), ppid: Number(ppid), pgrp: Number(pgrp), zombie: state === "Z", cmdline }];
    } catch {
      return []; // gone meanwhile
    }
  });
}

/** Whether any process of the group is still running (zombies aside, which an init that does not reap would leave behind). */
function groupRunning(pgid: number): boolean {
  const all = processes();
  if (all) return all.some((p) => p.pgrp === pgid && !p.zombie);
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

const alive = (pid: number) => processes()?.some((p) => p.pid === pid && !p.zombie) ?? false;

async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/**
 * Stops the dev server and returns once every process of its group has exited, its storage
 * (.langgraph_api) written. The API server itself (the deepest process running langgraph-api's
 * entrypoint) is stopped first and alone: it writes its storage on SIGTERM, and a second SIGTERM
 * (which the CLI above it sends its child when it exits) would kill it in the middle of that.
 * Then the rest of the group; SIGKILL for what is left after 8 s.
 */
export async function stopDevServer(server: Pick<DevServer, "child"> | undefined): Promise<void> {
  const pgid = server?.child.pid;
  if (!pgid || !groupRunning(pgid)) return;
  const entrypoints = (processes() ?? []).filter((p) => p.pgrp === pgid && !p.zombie && p.cmdline.includes("langgraph-api/dist/cli/entrypoint.mjs"));
  const api = entrypoints.find((p) => !entrypoints.some((q) => q.ppid === p.pid));
  if (api) {
    process.kill(api.pid, "SIGTERM");
    await waitUntil(() => !alive(api.pid), 8000);
  }
  try {
    process.kill(-pgid, "SIGTERM");
  } catch {
    return; // already gone
  }
  await waitUntil(() => !groupRunning(pgid), 8000);
  if (groupRunning(pgid)) process.kill(-pgid, "SIGKILL");
}

/**
 * The dev server's environment for a test: the scripted model at `modelUrl`, a data directory in
 * `dir`, fast retries, pages read through the fake Tavily at `tavilyUrl`, no telemetry or tracing;
 * `extra` adds or overrides variables.
 */
export function devServerEnv(dir: string, modelUrl: string, tavilyUrl: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LOUPE_MODEL_URL: modelUrl,
    LOUPE_DATA_DIR: join(dir, "data"),
    LOUPE_RETRIES: "1",
    LOUPE_RETRY_BASE_MS: "20",
    LOUPE_TIMEOUT_MS: "20000",
    LOUPE_WEB_VISIT: "tavily",
    TAVILY_API_KEY: FAKE_TAVILY_API_KEY,
    LOUPE_TAVILY_URL: tavilyUrl,
    // No telemetry, no tracing: the server must need nothing beyond loopback.
    LANGGRAPH_CLI_NO_ANALYTICS: "1",
    LANGSMITH_TRACING: "false",
    LANGCHAIN_TRACING_V2: "false",
    ...extra,
  };
}
