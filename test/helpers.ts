// Shared set-up for tests that cross modules: temp data dirs, a configured agent with the real SQLite checkpointer.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { createAgent } from "../graphs/agent.js";
import { startScriptedModelServer, type ScriptEntry, type ScriptedModelServer, type ScriptedModelServerOptions } from "../src/cli/demo/scripted-model-server.js";
import { createCheckpointer } from "../src/runtime/checkpointer.js";
import { resolveConfig, type LoupeConfig, type LoupeSecrets } from "../src/core/config.js";
import { createDeps } from "../src/runtime/deps.js";

export async function tempDir(prefix = "loupe-test-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // Retried: a server child killed just before may still be writing into the directory.
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }) };
}

/**
 * Settings for tests: fast retries, no environment leaking in. Pages are read through the fake
 * Tavily server (webVisit "tavily") unless a test asks for Loupe's direct reader.
 */
export function testSettings(overrides: Partial<LoupeConfig> & { modelUrl: string; dataDir: string }): LoupeConfig {
  return resolveConfig({ retries: 2, retryBaseMs: 20, timeoutMs: 10_000, webVisit: "tavily", ...overrides }, {});
}

export function testAgent(settings: LoupeConfig, secrets: LoupeSecrets = {}) {
  const deps = createDeps(settings, secrets);
  const checkpointer = createCheckpointer(settings);
  const agent = createAgent({ deps, checkpointer });
  return { agent, deps, checkpointer, close: () => {
    checkpointer.db.close();
    deps.close();
  } };
}

export async function writeImage(dir: string, name: string, bytes: Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** Every image the model was sent in one chat request, decoded: [width, height] in order. */
export async function imagesInRequest(body: { messages?: unknown[] }): Promise<Array<[number, number]>> {
  const sizes: Array<[number, number]> = [];
  for (const message of (body.messages ?? []) as Array<{ content?: unknown }>) {
    if (!Array.isArray(message.content)) continue;
    for (const part of message.content as Array<{ type: string; image_url?: { url: string } }>) {
      if (part.type !== "image_url" || !part.image_url) continue;
      const b64 = part.image_url.url.slice(part.image_url.url.indexOf(",") + 1);
      const meta = await sharp(Buffer.from(b64, "base64")).metadata();
      sizes.push([meta.width!, meta.height!]);
    }
  }
  return sizes;
}

/** Text of a chat request's messages, for checking what the model was shown. */
export function requestText(body: { messages?: unknown[] }): string {
  return (body.messages ?? [])
    .map((m) => {
      const content = (m as { content?: unknown }).content;
      if (typeof content === "string") return content;
      if (Array.isArray(content)) return content.map((p) => (p as { text?: string }).text ?? "").join("\n");
      return "";
    })
    .join("\n");
}

/**
 * True when request `next` extends request `prev`: the same non-message fields, and prev's
 * messages re-sent byte-for-byte as the start of next's.
 */
export function isPrefixExtension(prevRaw: string, nextRaw: string): boolean {
  const prev = JSON.parse(prevRaw);
  const next = JSON.parse(nextRaw);
  const { messages: pm, ...prevRest } = prev;
  const { messages: nm, ...nextRest } = next;
  if (JSON.stringify(prevRest) !== JSON.stringify(nextRest)) return false;
  const p = JSON.stringify(pm);
  const n = JSON.stringify(nm);
  return nm.length > pm.length && n.startsWith(p.slice(0, -1));
}

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "loupe.mjs");
/** Preload for a child process that logs every outbound connection (LOUPE_NETWORK_LOG). */
export const NETWORK_GUARD = join(ROOT, "test", "fixtures", "network-guard.cjs");

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A clean environment for a CLI child process: no LOUPE_* or keys from the developer's shell. */
export function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, LOUPE_WEB_VISIT: "tavily", ...extra };
}

/** Runs `loupe ARGS` as a user would (in the repository root, or `options.cwd`); `onSpawn` gets a function that SIGKILLs it. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, onSpawn?: (kill: () => void) => void, options: { cwd?: string } = {}): Promise<CliRun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: options.cwd ?? ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
    onSpawn?.(() => child.kill("SIGKILL"));
  });
}

/** Loopback fixture servers a test file starts, all closed together after each test. */
export function fixtureServers() {
  const open: Array<{ close(): Promise<void> }> = [];
  return {
    track<T extends { close(): Promise<void> }>(server: T): T {
      open.push(server);
      return server;
    },
    /** A scripted model server, closed with the others. */
    async model(script: ScriptEntry[], options: Omit<ScriptedModelServerOptions, "script"> = {}): Promise<ScriptedModelServer> {
      return this.track(await startScriptedModelServer({ script, ...options }));
    },
    closeAll: async (): Promise<void> => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    },
  };
}
