// The offline demo: replays a recorded 15-tool-call trajectory through the real `loupe ask` CLI,
// with a scripted model server and a fake Tavily on loopback standing in for vLLM and the web.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { FAKE_TAVILY_API_KEY, startFakeTavilyServer } from "./fake-tavily-server.js";
import { startScriptedModelServer } from "./scripted-model-server.js";
import { harbourImage, TRAJECTORY_PAGES, TRAJECTORY_SEARCH, TRAJECTORY_TOOL_CALLS, trajectoryScript } from "./trajectory.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const CLI = join(ROOT, "bin", "loupe.mjs");
const QUESTION = "What code is written on the north pier sign, and what does it mark?";

const say = (text = "") => process.stderr.write(`${text}\n`);

/** The environment of the CLI child: the user's, minus any LOUPE_* setting that would change the replay. */
function childEnv(tavilyUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("LOUPE_")) env[key] = value;
  }
  env.TAVILY_API_KEY = FAKE_TAVILY_API_KEY;
  env.LOUPE_TAVILY_URL = tavilyUrl;
  // The recorded pages are served by the fake Tavily server, not fetched from the web.
  env.LOUPE_WEB_VISIT = "tavily";
  return env;
}

function runChild(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolveCode, reject) => {
    // Its own process group, so Ctrl-C reaches it once (forwarded below), not twice (terminal + forward).
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: ["ignore", "inherit", "inherit"], detached: true });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on("SIGINT", forward);
    process.on("SIGTERM", forward);
    const done = () => {
      process.off("SIGINT", forward);
      process.off("SIGTERM", forward);
    };
    child.once("error", (err) => {
      done();
      reject(err);
    });
    child.once("exit", (code, signal) => {
      done();
      if (code !== null) resolveCode(code);
      else resolveCode(signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 1);
    });
  });
}

async function main(): Promise<number> {
  say("=".repeat(78));
  say("Loupe demo: this is a REPLAY, not a real model.");
  say(`A scripted model server on loopback replays a recorded trajectory (${TRAJECTORY_TOOL_CALLS} tool calls:`);
  say("crops of crops, zoom, rotate, adjust, annotate, ... interleaved with web searches),");
  say("and a fake Tavily server answers the searches. Everything else is real:");
  say("the `loupe ask` CLI, the LangGraph graph, the image tools, the SQLite checkpoints.");
  say("Nothing leaves this machine.");
  say();
  say("To run against a real vision model (see README: vllm serve ...):");
  say('  npx loupe ask --model-url http://localhost:8000/v1 --image photo.jpg "question"');
  say("=".repeat(78));
  say();

  const dir = await mkdtemp(join(tmpdir(), "loupe-demo-"));
  const model = await startScriptedModelServer({ script: trajectoryScript("tools") });
  const tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  try {
    const image = join(dir, "harbour.jpg");
    await writeFile(image, await harbourImage());
    const dataDir = join(dir, "data");
    const args = ["ask", "--model-url", model.url, "--dialect", "tools", "--image", image, "--data-dir", dataDir, QUESTION];
    say(`Image: ${image} (4000x3000, generated)`);
    say(`Running: loupe ask --model-url ${model.url} --dialect tools --image harbour.jpg --data-dir <temp> "${QUESTION}"`);
    say(`  with TAVILY_API_KEY=${FAKE_TAVILY_API_KEY} LOUPE_TAVILY_URL=${tavily.url}`);
    say();
    // The working directory is the temp dir, so no .env of the user's changes the replay.
    const code = await runChild(args, dir, childEnv(tavily.url));
    say();
    say(code === 0 ? "Demo finished: that was a replay of a recorded trajectory, not a real model's answer." : `Demo stopped: loupe exited with code ${code} (the demo's temporary data directory is removed, so that thread cannot be resumed).`);
    return code;
  } finally {
    await Promise.allSettled([model.close(), tavily.close()]);
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    say(`loupe demo: ${(err as Error)?.stack ?? String(err)}`);
    process.exitCode = 1;
  },
);
