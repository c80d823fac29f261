// Loupe as others install it: `npm pack`, the tarball installed into a fresh project, then plain Node 20
// (no tsx, no loader flags) imports the library and runs questions against the scripted model server,
// a TypeScript consumer type-checks against the shipped .d.ts files, and the installed `loupe` runs.
import { execFile } from "node:child_process";
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { harbourImage } from "../src/cli/demo/trajectory.js";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { tempDir } from "./helpers.js";

const ROOT = resolve(import.meta.dirname, "..");
const NPM = "npm";
const ANSWER = "The sign reads HARBOUR-7.";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to its end (never rejects); `env` replaces the environment. */
function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 180_000): Promise<Run> {
  const t0 = performance.now();
  return new Promise((resolvePromise) => {
    execFile(file, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : null) : 0;
      resolvePromise({ code, stdout, stderr: stderr || (err && code === null ? String(err.message) : ""), ms: performance.now() - t0 });
    });
  });
}

/** Plain Node's environment for the consumer: no NODE_OPTIONS (no loader), no LOUPE_* settings, no keys. */
function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}`, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, ...extra };
}

/** npm's environment: the user's (its cache, registry and proxy settings), minus what would change the build. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` };
  for (const key of Object.keys(env)) if (key.startsWith("LOUPE_") || key === "NODE_OPTIONS" || key.startsWith("VITEST") || key === "NODE_ENV") delete env[key];
  return env;
}

/** Newest modification time among the files under `dir` (recursively), skipping tests. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (!entry.name.endsWith(".test.ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Whether dist/ was built from the sources as they are: `npm run build` marks its start in
 * dist/.build-started, and no shipped source or build setting changed since. Then the test packs
 * the checkout without the build (`--ignore-scripts`), as after `npm ci` in CI.
 */
function distIsFresh(): boolean {
  const stamp = join(ROOT, "dist", ".build-started");
  if (!existsSync(stamp) || !existsSync(join(ROOT, "dist", "src", "index.js")) || !existsSync(join(ROOT, "dist", "src", "cli", "main.js"))) return false;
  const built = statSync(stamp).mtimeMs;
  const inputs = [...["graphs", "nodes", "tools", "src"].map((d) => newestSource(join(ROOT, d))), ...["package.json", "tsconfig.json", "tsconfig.build.json"].map((f) => statSync(join(ROOT, f)).mtimeMs)];
  return Math.max(...inputs) < built;
}

/** The files `npm pack` and the build read, copied to `dir`; node_modules is the checkout's. */
function stagedCopy(dir: string): string {
  mkdirSync(dir);
  for (const name of ["package.json", "README.md", "tsconfig.json", "tsconfig.build.json", "bin", "graphs", "nodes", "tools", "src"]) {
    cpSync(join(ROOT, name), join(dir, name), { recursive: true });
  }
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  return dir;
}

function notReachable(text: string): boolean {
  return /ENOTCACHED|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|network/i.test(text);
}

/** A scripted model server whose every reply is the answer; closed after the tests. */
async function answeringServer(): Promise<ScriptedModelServer> {
  return startScriptedModelServer({ script: [{ content: `<answer>${ANSWER}</answer>` }], onExhausted: "repeat-last" });
}

describe("the packed package, installed into a fresh project", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let project = "";
  let tarballFiles: string[] = [];
  let skipReason = "";
  let image = "";
  const servers: ScriptedModelServer[] = [];
  const timings: string[] = [];

  beforeAll(async () => {
    tmp = await tempDir("loupe-package-");
    const npmVersion = await run(NPM, ["--version"], tmp.dir, npmEnv());
    if (npmVersion.code !== 0) {
      skipReason = `npm cannot run here: ${npmVersion.stderr.trim().split("\n")[0]}`;
      return;
    }

    // 1. The tarball, as `npm publish` would make it. With dist/ out of date, `npm pack` runs in a copy
    // of the checkout, where its prepare script builds: the checkout's dist/ is never rewritten under
    // tests that may be reading it.
    const fresh = distIsFresh();
    const packDir = fresh ? ROOT : stagedCopy(join(tmp.dir, "checkout"));
    const pack = await run(NPM, ["pack", "--silent", "--pack-destination", tmp.dir, ...(fresh ? ["--ignore-scripts"] : [])], packDir, npmEnv());
    timings.push(`npm pack${fresh ? " (dist/ up to date, not rebuilt)" : " (prepare building dist/ in a copy of the checkout)"} ${(pack.ms / 1000).toFixed(1)} s`);
    if (pack.code !== 0) throw new Error(`npm pack failed (exit ${pack.code}):\n${pack.stderr.slice(-3000)}\n${pack.stdout.slice(-3000)}`);
    const tarball = readdirSync(tmp.dir).find((f) => f.endsWith(".tgz"));
    if (!tarball) throw new Error(`npm pack wrote no tarball: ${pack.stdout}`);
    const list = await run("tar", ["-tzf", join(tmp.dir, tarball)], tmp.dir, plainEnv());
    tarballFiles = list.stdout.split("\n").filter(Boolean).map((f) => f.replace(/^package\//, ""));

    // 2. A fresh project installs it; dependencies come from npm's cache when it holds them.
    project = join(tmp.dir, "consumer");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "loupe-consumer", private: true, type: "module" }, null, 2));
    // Install scripts are skipped: the one dependency with one, better-sqlite3, would compile SQLite for
    // minutes where its prebuilt binaries cannot be downloaded; the checkout's compiled addon of the same
    // version is copied in instead, which is what its install script produces.
    // Offline only: a test reaches nothing but loopback, so the dependencies come from npm's cache
    // (filled by `npm ci`); where they are not all there, the test is skipped, saying so.
    const installed = await run(NPM, ["install", join(tmp.dir, tarball), "--offline", "--ignore-scripts", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"], project, npmEnv());
    timings.push(`npm install (from npm's cache) ${(installed.ms / 1000).toFixed(1)} s`);
    if (installed.code !== 0) {
      if (notReachable(installed.stderr)) {
        skipReason = `the tarball's dependencies are not all in npm's cache (the test installs offline): ${installed.stderr.trim().split("\n").slice(0, 2).join(" ")}`;
        return;
      }
      throw new Error(`npm install of the tarball failed (exit ${installed.code}):\n${installed.stderr.slice(-3000)}`);
    }
    const addon = join("better-sqlite3", "build", "Release", "better_sqlite3.node");
    const version = (dir: string) => (JSON.parse(readFileSync(join(dir, "better-sqlite3", "package.json"), "utf8")) as { version: string }).version;
    const ours = join(ROOT, "node_modules");
    const theirs = join(project, "node_modules");
    if (!existsSync(join(theirs, addon))) {
      if (version(ours) !== version(theirs)) throw new Error(`better-sqlite3 ${version(theirs)} was installed, the checkout has ${version(ours)}: its addon cannot be reused`);
      mkdirSync(dirname(join(theirs, addon)), { recursive: true });
      copyFileSync(join(ours, addon), join(theirs, addon));
    }
    image = join(tmp.dir, "harbour.jpg");
    writeFileSync(image, await harbourImage());
  }, 300_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    if (timings.length) console.log(`package test: ${timings.join(", ")}`);
    if (skipReason) console.warn(`package test skipped: ${skipReason}`);
    await tmp?.cleanup();
  });

  it("the tarball holds the compiled code, its types and the command, not the sources or tests", ({ skip }) => {
    if (skipReason) skip(skipReason);
    for (const file of ["package.json", "README.md", "bin/loupe.mjs", "dist/src/index.js", "dist/src/index.d.ts", "dist/src/server/graphs.js", "dist/src/server/graphs.d.ts", "dist/src/cli/main.js", "dist/graphs/agent.js", "dist/graphs/agent.d.ts"]) {
      expect(tarballFiles).toContain(file);
    }
    const unexpected = tarballFiles.filter((f) => !/^(package\.json|README\.md|LICENSE|bin\/loupe\.mjs|dist\/.*\.(js|d\.ts)|dist\/ui\/app\.css)$/.test(f));
    expect(unexpected).toEqual([]);
    expect(tarballFiles.filter((f) => /\.test\.|^test\/|^bench\/|^src\//.test(f))).toEqual([]);
    // Plain Node never meets a .ts import: every relative import in the compiled code ends in .js.
    const pkg = JSON.parse(readFileSync(join(project, "node_modules", "loupe", "package.json"), "utf8")) as { dependencies: Record<string, string>; exports: Record<string, unknown> };
    expect(Object.keys(pkg.dependencies)).not.toContain("tsx");
    expect(JSON.stringify(pkg.exports)).not.toMatch(/(?<!\.d)\.ts"/);
  });

  it("plain Node imports createLoupeAgent, the graph builder and createLoupeTool, and they answer through the scripted server", async ({ skip }) => {
    if (skipReason) skip(skipReason);
    const model = await answeringServer();
    servers.push(model);
    const script = `
import { readFileSync } from "node:fs";
import { buildAgentGraph, createLoupeAgent, createLoupeTool } from "loupe";
const [modelUrl, image, dataDir] = process.argv.slice(2);
const out = { loaded: [typeof createLoupeAgent, typeof buildAgentGraph, typeof createLoupeTool], graphEntry: import.meta.resolve("loupe/graph") };
const { agent, deps } = createLoupeAgent({ config: { modelUrl, dataDir }, env: {} });
try {
  out.builder = typeof buildAgentGraph(deps).compile;
  const result = await agent.invoke({ question: "What does the sign say?", imageSources: [image] });
  out.agentAnswer = result.final?.answer;
} finally {
  await deps.close();
}
if (typeof createLoupeTool === "function") {
  const tool = createLoupeTool({ config: { modelUrl, dataDir }, env: {} });
  out.toolName = tool.name;
  out.toolAnswer = await tool.invoke({ question: "What does the sign say?", images: ["data:image/jpeg;base64," + readFileSync(image).toString("base64")] });
}
process.stdout.write(JSON.stringify(out));
`;
    writeFileSync(join(project, "check.mjs"), script);
    const node = await run(process.execPath, ["check.mjs", model.url, image, join(tmp.dir, "data")], project, plainEnv());
    timings.push(`library check ${(node.ms / 1000).toFixed(1)} s`);
    expect(node.stderr).not.toMatch(/^\s+at /m);
    expect(node.code).toBe(0);
    const out = JSON.parse(node.stdout) as Record<string, unknown>;
    expect(out.loaded).toEqual(["function", "function", "function"]);
    expect(out.builder).toBe("function");
    expect(String(out.graphEntry)).toMatch(/node_modules\/loupe\/dist\/src\/server\/graphs\.js$/);
    expect(out.agentAnswer).toBe(ANSWER);
    expect(out.toolName).toBe("loupe");
    expect(String(out.toolAnswer)).toContain(ANSWER);
    // Both runs reached the model with the image.
    expect(model.chatRequests().length).toBe(2);
    // The code ran from the installed copy, not through a link to this checkout.
    expect(lstatSync(join(project, "node_modules", "loupe")).isSymbolicLink()).toBe(false);
  });

  it("a TypeScript consumer type-checks against the shipped .d.ts files", async ({ skip }) => {
    if (skipReason) skip(skipReason);
    writeFileSync(
      join(project, "consumer.ts"),
      `import { buildAgentGraph, createLoupeAgent, createLoupeTool, type AgentOutputValue, type LoupeAgentOptions, type LoupeConfig } from "loupe";
import { agent as served } from "loupe/graph";

const options: LoupeAgentOptions = { config: { modelUrl: "http://127.0.0.1:8000/v1" }, env: {} };
const { agent, deps, config } = createLoupeAgent(options);
const url: string = config.modelUrl;
const settings: LoupeConfig = config;
const graph = buildAgentGraph(deps);
const tool = createLoupeTool({ config: { modelUrl: url } });
const toolName: string = tool.name;

export async function answer(question: string): Promise<string | undefined> {
  const out: AgentOutputValue = await agent.invoke({ question, imageSources: ["https://example.org/a.jpg"] });
  return out.final?.answer;
}

// The types are real, not any: each of these must be an error.
// @ts-expect-error modelUrl is a string
createLoupeAgent({ config: { modelUrl: 42 } });
// @ts-expect-error the input has no field "questions"
void agent.invoke({ questions: "typo" });
// @ts-expect-error final.answer is a string
const wrong: number | undefined = (await agent.invoke({ question: "q" })).final?.answer;

export { graph, served, settings, toolName, wrong };
`,
    );
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ["node"],
          // @types/node from the checkout: a TypeScript project on Node has it.
          typeRoots: [join(ROOT, "node_modules", "@types")],
        },
        files: ["consumer.ts"],
      }),
    );
    const tsc = await run(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], project, plainEnv());
    timings.push(`tsc on a consumer ${(tsc.ms / 1000).toFixed(1)} s`);
    expect(tsc.stdout + tsc.stderr).toBe("");
    expect(tsc.code).toBe(0);
  });

  it("`npx loupe --help` works, and the installed command answers with plain Node", async ({ skip }) => {
    if (skipReason) skip(skipReason);
    const help = await run("npx", ["--offline", "--no-install", "loupe", "--help"], project, { ...npmEnv(), ...plainEnv() });
    timings.push(`npx loupe --help ${(help.ms / 1000).toFixed(1)} s`);
    expect(help.stderr).not.toMatch(/error|^\s+at /im);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: loupe /m);
    expect(help.stdout).toMatch(/^\s+ask \[options\]/m);

    const model = await answeringServer();
    servers.push(model);
    const bin = join(project, "node_modules", ".bin", "loupe");
    const ask = await run(bin, ["ask", "--json", "--model-url", model.url, "--image", image, "--data-dir", join(tmp.dir, "cli-data"), "What does the sign say?"], project, plainEnv());
    timings.push(`loupe ask ${(ask.ms / 1000).toFixed(1)} s`);
    expect(ask.stderr).not.toMatch(/^\s+at /m);
    expect(ask.code).toBe(0);
    expect(JSON.parse(ask.stdout).answer).toBe(ANSWER);
  });
});

