// The `loupe` command as a user runs it: a child process, real HTTP to loopback servers, the real SQLite checkpointer.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { baseEnv, NETWORK_GUARD, requestText, runCli, tempDir, writeImage } from "./helpers.js";
import { minimalPdf } from "./fixtures/pdf.js";
import { mkdir, writeFile } from "node:fs/promises";
import { harbourImage, TRAJECTORY_ANSWER, TRAJECTORY_PAGES, TRAJECTORY_SEARCH, TRAJECTORY_TOOL_CALLS, trajectoryScript } from "../src/cli/demo/trajectory.js";

const GUARD = NETWORK_GUARD;

describe("loupe ask (CLI)", () => {
  let model: ScriptedModelServer;
  let tavily: FakeTavilyServer;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let image: string;

  beforeEach(async () => {
    tmp = await tempDir();
    image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage());
    tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  });
  afterEach(async () => {
    await model?.close();
    await tavily.close();
    await tmp.cleanup();
  });

  it("--json prints exactly one JSON object, and the run contacts only the model and search endpoints", async () => {
    model = await startScriptedModelServer({ script: trajectoryScript("tools") });
    const netLog = join(tmp.dir, "net.log");
    const run = await runCli(
      ["ask", "--json", "--model-url", model.url, "--image", image, "--data-dir", join(tmp.dir, "data"), "What does the sign say?"],
      baseEnv({
        TAVILY_API_KEY: FAKE_TAVILY_API_KEY,
        LOUPE_TAVILY_URL: tavily.url,
        NODE_OPTIONS: `--require ${GUARD}`,
        LOUPE_NETWORK_LOG: netLog,
      }),
    );
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!);
    expect(Object.keys(out).sort()).toEqual(["answer", "citations", "images", "reason", "steps", "threadId", "toolCalls", "usage"]);
    expect(out.reason).toBe("answered");
    expect(out.answer).toBe(TRAJECTORY_ANSWER);
    expect(out.toolCalls).toHaveLength(TRAJECTORY_TOOL_CALLS);
    expect(Object.keys(out.toolCalls[0]).sort()).toEqual(["arguments", "ms", "name", "ok"]);
    expect(out.images[1]).toEqual({ id: "img_1", width: 1000, height: 750, op: expect.stringContaining("crop") });
    expect(out.steps).toBeGreaterThanOrEqual(14);
    expect(out.usage.promptTokens).toBeGreaterThan(0);
    // Progress: one line per tool call on stderr.
    expect(run.stderr.split("\n").filter((l) => /^\s+\[\d+\] /.test(l))).toHaveLength(TRAJECTORY_TOOL_CALLS);

    const contacts = (await readFile(netLog, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    const allowed = new Set([String(model.port), String(tavily.port)]);
    // Unix-domain sockets are local IPC (tsx's loader), not network.
    const network = contacts.filter((c) => !String(c.host ?? "").startsWith("unix:"));
    expect(network.length).toBeGreaterThan(0);
    const elsewhere = network.filter((c) => !(c.kind === "connect" && c.host === "127.0.0.1" && allowed.has(String(c.port))));
    expect(elsewhere).toEqual([]);
  });

  it("without a reachable model server exits non-zero with one line naming the URL", async () => {
    model = await startScriptedModelServer({ script: [] });
    const url = model.url;
    await model.close();
    const run = await runCli(["ask", "--model-url", url, "--retries", "1", "--image", image, "--data-dir", join(tmp.dir, "d"), "hello?"], baseEnv({ LOUPE_RETRY_BASE_MS: "10" }));
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe("");
    // The run's thread first (so a crash can be resumed), then the error: one line.
    const errorLines = run.stderr.trim().split("\n");
    expect(errorLines).toHaveLength(2);
    expect(errorLines[0]).toMatch(/^loupe: thread \S+/);
    expect(errorLines[1]).toContain(url);
    expect(errorLines[1]).toMatch(/connection refused|ECONNREFUSED/);
    // The way back repeats the settings given on the command line (here the data directory and model URL).
    expect(errorLines[1]).toMatch(/continue with: loupe ask --resume \S+ .*--model-url \S+.*--data-dir \S+/);
    expect(run.stderr).not.toMatch(/^\s+at /m);
  });

  it("an unreadable image fails at once with a clear message", async () => {
    model = await startScriptedModelServer({ script: [] });
    const run = await runCli(["ask", "--model-url", model.url, "--image", join(tmp.dir, "missing.png"), "--data-dir", join(tmp.dir, "d"), "q?"], baseEnv());
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/cannot read image .*missing\.png: no such file/);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(model.chatRequests()).toHaveLength(0);
  });

  it("a process killed with SIGKILL mid-run resumes from its thread to the same answer without redoing steps", async () => {
    const script = trajectoryScript("tools");
    const KILL_AT = 7; // the 7th chat request hangs until the process is killed
    const held = script[KILL_AT - 1]!;
    script.splice(KILL_AT - 1, 1, { fault: "hang" }, held);
    model = await startScriptedModelServer({ script });
    const data = join(tmp.dir, "data");
    const env = baseEnv({ TAVILY_API_KEY: FAKE_TAVILY_API_KEY, LOUPE_TAVILY_URL: tavily.url });
    const first = await runCli(
      ["ask", "--json", "--thread", "t-kill", "--model-url", model.url, "--image", image, "--data-dir", data, "What does the sign say?"],
      env,
      (kill) => {
        const timer = setInterval(() => {
          if (model.chatRequests().length >= KILL_AT) {
            clearInterval(timer);
            kill();
          }
        }, 20);
      },
    );
    expect(first.signal).toBe("SIGKILL");
    const killedRequest = model.chatRequests()[KILL_AT - 1]!.rawBody;

    const second = await runCli(["ask", "--json", "--resume", "t-kill", "--model-url", model.url, "--data-dir", data], env);
    expect(second.stderr).not.toMatch(/^\s+at /m);
    expect(second.code).toBe(0);
    const out = JSON.parse(second.stdout);
    expect(out.answer).toBe(TRAJECTORY_ANSWER);
    expect(out.threadId).toBe("t-kill");
    expect(out.toolCalls).toHaveLength(TRAJECTORY_TOOL_CALLS);
    // The first request after the restart is the one that was cut off: nothing before it was redone.
    expect(model.chatRequests()[KILL_AT]!.rawBody).toBe(killedRequest);
    expect(model.remaining()).toBe(0);
  });

  it("loupe index over md/txt/html/pdf, then loupe ask with no API key answers from the folder and cites the file", async () => {
    const docs = join(tmp.dir, "docs");
    await mkdir(docs);
    await writeFile(join(docs, "piers.md"), "# Piers\n\nThe harbour has three piers: north, south and east.\n");
    await writeFile(join(docs, "notes.txt"), "Field notes: the east pier was rebuilt in 1990.\n");
    await writeFile(join(docs, "lights.html"), "<html><head><title>Lights</title></head><body><nav>Home</nav><article><p>The south light is green.</p></article></body></html>");
    await writeFile(join(docs, "survey.pdf"), minimalPdf(["Survey 2024: the north pier sign code is QUOKKA-7."], "Pier survey"));
    const data = join(tmp.dir, "data");
    const indexed = await runCli(["index", docs, "--data-dir", data], baseEnv());
    expect(indexed.code).toBe(0);
    expect(indexed.stderr).toMatch(/4 files/);

    model = await startScriptedModelServer({
      script: [
        { toolCalls: [{ name: "text_search", arguments: { queries: ["north pier sign code"] } }] },
        (req) => {
          const url = /(file:\/\/\S+survey\.pdf)/.exec(requestText(req.body))?.[1] ?? "missing";
          return { toolCalls: [{ name: "web_visit", arguments: { urls: [url], goal: "the sign code" } }] };
        },
        (req) => ({ content: `<answer>${/code is (QUOKKA-\d)/.exec(requestText(req.body))?.[1] ?? "unknown"}</answer>` }),
      ],
    });
    const env = baseEnv();
    delete env.TAVILY_API_KEY;
    const run = await runCli(["ask", "--json", "--model-url", model.url, "--image", image, "--data-dir", data, "What is the north pier sign code?"], env);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.answer).toBe("QUOKKA-7");
    expect(out.citations).toContainEqual(expect.objectContaining({ type: "url", url: expect.stringMatching(/^file:\/\/.*survey\.pdf$/) }));
    expect(out.toolCalls.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([["text_search", true], ["web_visit", true]]);
  });
});
