// `loupe ask` and `loupe report` at their edges: thread ids, quoting, refused inputs, terminal text, exit codes (a spawned CLI).
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FAKE_TAVILY_API_KEY, startFakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import type { ScriptEntry } from "../src/cli/demo/scripted-model-server.js";
import { harbourImage, SIGN_PAGE_URL, TRAJECTORY_PAGES, TRAJECTORY_SEARCH } from "../src/cli/demo/trajectory.js";
import { baseEnv, fixtureServers, runCli, tempDir, writeImage, type CliRun } from "./helpers.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let image: string;
const servers = fixtureServers();

beforeEach(async () => {
  tmp = await tempDir();
  image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(400, 300));
});
afterEach(async () => {
  await servers.closeAll();
  await tmp.cleanup();
});

/** A model URL nothing listens on: the first model call fails at once. */
async function deadModelUrl(): Promise<string> {
  const server = await servers.model([]);
  await server.close();
  return server.url;
}

/** `loupe ask` against `modelUrl` with the image and a data directory in the temp dir. */
function askCli(modelUrl: string, args: string[], env = baseEnv({ LOUPE_RETRY_BASE_MS: "10" })): Promise<CliRun> {
  return runCli(["ask", "--model-url", modelUrl, "--retries", "0", "-i", image, "--data-dir", join(tmp.dir, "data"), ...args], env);
}

/** What `sh` passes to a `loupe` defined as printing its arguments, one per line, when `command` is pasted into it. */
function pastedIntoSh(command: string): string[] {
  const script = `loupe() { for a in "$@"; do printf '<%s>\\n' "$a"; done; }\n${command}`;
  return execFileSync("sh", ["-c", script], { encoding: "utf8" }).trim().split("\n");
}

const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe("thread ids", () => {
  it("a new run's first stderr line names its thread (with --json too), before any model call; -q prints none", async () => {
    const url = await deadModelUrl();
    const run = await askCli(url, ["--json", "q?"]);
    expect(run.code).toBe(1);
    const lines = run.stderr.trim().split("\n");
    const id = /^loupe: thread (\S+)/.exec(lines[0]!)?.[1];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(lines[0]).toContain(`loupe ask --resume ${id} `);
    expect(lines.at(-1)).toMatch(new RegExp(`continue with: loupe ask --resume ${id} `));

    const named = await askCli(url, ["--thread", "my-thread", "q?"]);
    expect(named.stderr.split("\n")[0]).toMatch(/^loupe: thread my-thread\b/);
    const quiet = await askCli(url, ["-q", "--thread", "quiet-thread", "q?"]);
    expect(quiet.stderr).not.toContain("loupe: thread");
  });

  it("the resume command a failure prints quotes every argument: pasted into sh, the id is one argument and nothing else runs", async () => {
    const url = await deadModelUrl();
    const thread = "x; echo INJECTED";
    const run = await askCli(url, ["--thread", thread, "--max-turns", "7", "q?"]);
    expect(run.code).toBe(1);
    const first = /\(resume with: (loupe ask .*)\)$/.exec(run.stderr.split("\n")[0]!)?.[1];
    const failed = /continue with: (loupe ask .*)\)$/m.exec(run.stderr)?.[1];
    for (const command of [first, failed]) {
      expect(command).toBeDefined();
      const args = pastedIntoSh(command!);
      expect(args.slice(0, 3)).toEqual(["<ask>", "<--resume>", `<${thread}>`]);
      expect(args).toContain("<--max-turns>");
      expect(args.join("\n")).not.toMatch(/^INJECTED$/m);
    }
  });

  it("--thread and --resume refuse an id that is a path or holds control characters (exit 2), before any model call", async () => {
    const server = await servers.model([]);
    const cases = [["--thread", "../x"], ["--resume", "a\u001b[2Jb"]] as const;
    for (const [flag, id] of cases) {
      const run = await askCli(server.url, flag === "--thread" ? [flag, id, "q?"] : [flag, id]);
      expect(run.code, `${flag} ${JSON.stringify(id)}`).toBe(2);
      const lines = run.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(flag);
      expect(lines[0]).toMatch(/"\/", "\\", "\.\." and control characters are not allowed/);
      expect(lines[0]).not.toMatch(CONTROL);
    }
    expect(server.chatRequests()).toHaveLength(0);
  });

  it("a plan under review is never written outside the data directory", async () => {
    const plan = [{ description: "Crop the sign", tool_name: "crop", parameters: { image: "img_0" } }];
    const server = await servers.model([{ content: JSON.stringify(plan) }]);
    const dataDir = join(tmp.dir, "a", "b", "data");
    const run = await runCli(["ask", "--approve-plan", "--model-url", server.url, "--data-dir", dataDir, "--thread", "../../escaped", "-i", image, "q?"], baseEnv());
    expect(run.code).toBe(2);
    expect(existsSync(join(tmp.dir, "a", "escaped.json"))).toBe(false);
    expect(existsSync(join(tmp.dir, "a", "b", "escaped.json"))).toBe(false);
    expect(server.chatRequests()).toHaveLength(0);
  });
});

describe("refused before any model call", () => {
  it("more -i images than LOUPE_MAX_IMAGES (default 16) is a usage error naming the limit", async () => {
    const server = await servers.model([]);
    const env = baseEnv({ LOUPE_MAX_IMAGES: "2" });
    const three = await askCli(server.url, ["-i", image, "-i", image, "q?"], env);
    expect(three.code).toBe(2);
    expect(three.stderr.trim().split("\n")).toEqual([expect.stringMatching(/3 input images.*at most 2.*LOUPE_MAX_IMAGES/)]);

    const many = await askCli(server.url, [...Array.from({ length: 16 }, () => ["-i", image]).flat(), "q?"]);
    expect(many.code).toBe(2);
    expect(many.stderr.trim().split("\n")).toEqual([expect.stringMatching(/17 input images.*at most 16.*LOUPE_MAX_IMAGES/)]);
    expect(server.chatRequests()).toHaveLength(0);
  });

  it("a model URL that is not http(s) is a configuration error naming the flag or variable (exit 2, no resume hint)", async () => {
    for (const [args, env, name] of [
      [["--model-url", "localhost:8000/v1"], {}, "--model-url"],
      [[], { LOUPE_MODEL_URL: "ftp://gpu-box/v1" }, "LOUPE_MODEL_URL"],
    ] as const) {
      const run = await runCli(["ask", ...args, "-i", image, "--data-dir", join(tmp.dir, "data"), "q?"], baseEnv(env));
      expect(run.code).toBe(2);
      const lines = run.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(name);
      expect(lines[0]).toMatch(/http\(s\) URL/);
      expect(lines[0]).not.toContain("continue with");
    }
  });

  it("credentials in the model URL are refused, pointing to LOUPE_API_KEY, and the password is never printed", async () => {
    const server = await servers.model([]);
    const withPassword = server.url.replace("http://", "http://user:s3cret-pw@");
    for (const [args, env] of [
      [["--model-url", withPassword], {}],
      [[], { LOUPE_MODEL_URL: withPassword }],
    ] as const) {
      const run = await runCli(["ask", ...args, "-i", image, "--data-dir", join(tmp.dir, "data"), "q?"], baseEnv(env));
      expect(run.code).toBe(2);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toContain("LOUPE_API_KEY");
      expect(run.stderr + run.stdout).not.toContain("s3cret-pw");
    }
    expect(server.requests).toHaveLength(0);
  });

  it("loupe report on a directory that is not a run says so in one line (exit 2) and creates nothing", async () => {
    const notRun = join(tmp.dir, "not-a-run");
    await mkdir(notRun);
    const dataDir = join(tmp.dir, "data");
    const run = await runCli(["report", notRun], baseEnv({ LOUPE_DATA_DIR: dataDir }));
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toEqual([expect.stringMatching(/not-a-run is not an evaluation run \(no run\.json\)/)]);
    expect(readdirSync(notRun)).toEqual([]);
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe("the budget's answer", () => {
  const crop = { toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } }] };

  it("--json carries reason; a model that gives no answer after the budget: reason no_answer, a plain statement, exit 4", async () => {
    const answered = await servers.model([crop, { content: "<answer>a harbour sign</answer>" }]);
    const ok = await askCli(answered.url, ["--json", "q?"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ answer: "a harbour sign", reason: "answered" });

    const script: ScriptEntry[] = [crop, { content: "<think>the sign might say", finishReason: "length" }];
    const json = await askCli((await servers.model(script)).url, ["--json", "--max-tool-calls", "1", "q?"]);
    expect(json.code).toBe(4);
    const out = JSON.parse(json.stdout);
    expect(out.reason).toBe("no_answer");
    expect(out.answer).toMatch(/^\(no answer: /);
    expect(out.answer).not.toContain("the sign might say");

    const text = await askCli((await servers.model([crop, crop])).url, ["--max-tool-calls", "1", "q?"]);
    expect(text.code).toBe(4);
    expect(text.stdout.trim()).toBe(out.answer);
    expect(text.stderr).toMatch(/no answer/);
  });
});

describe("what reaches the terminal is text", () => {
  const HOSTILE = "\u001b]8;;https://evil.example/\u0007click\u001b]8;;\u0007 \u001b[31mred\u001b[0m bell\u0007 cr\r c1\u009b2J";

  it("escape sequences and control characters in model and web text are removed from stdout and stderr, but --json keeps the exact text", async () => {
    const tavily = servers.track(await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES }));
    const script = (): ScriptEntry[] => [
      { toolCalls: [{ name: "web_visit", arguments: { urls: [SIGN_PAGE_URL], goal: `the code ${HOSTILE}` } }] },
      { content: `<answer>The code is LOUPE-42 ${HOSTILE}\nsecond line\tend</answer>` },
    ];
    const env = baseEnv({ TAVILY_API_KEY: FAKE_TAVILY_API_KEY, LOUPE_TAVILY_URL: tavily.url });
    const run = await askCli((await servers.model(script())).url, ["q?"], env);
    expect(run.code).toBe(0);
    for (const out of [run.stdout, run.stderr]) {
      expect(out).not.toMatch(CONTROL);
      expect(out).not.toContain("evil.example");
    }
    expect(run.stdout).toMatch(/^The code is LOUPE-42 click red bell/);
    expect(run.stdout).toContain("second line\tend\n");
    expect(run.stderr).toMatch(/\[1\] web_visit .*goal=the code click red/);

    const json = await askCli((await servers.model(script())).url, ["--json", "q?"], env);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout).answer).toBe(`The code is LOUPE-42 ${HOSTILE}\nsecond line\tend`);
    expect(json.stderr).not.toMatch(CONTROL);
  });
});
