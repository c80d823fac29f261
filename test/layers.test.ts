// The layers' import rules (.dependency-cruiser.cjs) hold for the tree, and a planted upward import fails them.
import { execFile } from "node:child_process";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "./helpers.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "..");
const DEPCRUISE = join(ROOT, "node_modules", ".bin", "depcruise");
const SHIPPED = ["graphs", "nodes", "tools", "src", "bin", "scripts", "examples"];

async function cruise(cwd: string, dirs: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(DEPCRUISE, [...dirs, "--config", join(cwd, ".dependency-cruiser.cjs")], { cwd });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

const LAYERED: Record<string, string> = {
  "src/core/state.ts": "export const core = 1;\n",
  "tools/crop.ts": 'import { core } from "../src/core/state.js";\nexport const crop = core;\n',
  "nodes/planner.ts": 'import { crop } from "../tools/crop.js";\nexport const planner = crop;\n',
  "graphs/agent.ts": 'import { planner } from "../nodes/planner.js";\nexport const agent = planner;\n',
  "test/fixture.ts": "export const fixture = 1;\n",
  "src/cli/main.ts": 'import { agent } from "../../graphs/agent.js";\nexport const cli = agent;\n',
  "src/index.ts": 'export const face = 1;\n',
};

/** Upward imports, one per rule, planted together in a copy of the layered tree. */
const PLANTS: Array<[string, string, string]> = [
  ["a tool importing a node", "tools/upward.ts", 'import { planner } from "../nodes/planner.js";\nexport const x = planner;\n'],
  ["the core importing a tool", "src/core/upward.ts", 'import { crop } from "../../tools/crop.js";\nexport const x = crop;\n'],
  ["a node importing a graph", "nodes/upward.ts", 'import { agent } from "../graphs/agent.js";\nexport const x = agent;\n'],
  ["a graph importing a tool", "graphs/upward.ts", 'import { crop } from "../tools/crop.js";\nexport const x = crop;\n'],
  ["the runtime importing a node (type only)", "src/runtime/upward.ts", 'import type { planner } from "../../nodes/planner.js";\nexport type X = typeof planner;\n'],
  ["shipped code importing a test fixture", "src/cli/upward.ts", 'import { fixture } from "../../test/fixture.js";\nexport const x = fixture;\n'],
  ["src/run importing the CLI", "src/run/upward.ts", 'import { cli } from "../cli/main.js";\nexport const x = cli;\n'],
  ["evaluation importing the CLI", "src/eval/upward.ts", 'import { cli } from "../cli/main.js";\nexport const x = cli;\n'],
  ["the server importing the CLI", "src/server/upward.ts", 'import { cli } from "../cli/main.js";\nexport const x = cli;\n'],
  ["a file outside the known layers", "src/elsewhere/upward.ts", 'import { core } from "../core/state.js";\nexport const x = core;\n'],
  ["an import that does not resolve", "tools/unresolved.ts", 'import { nothing } from "../src/core/missing.js";\nexport const x = nothing;\n'],
  ["the CLI importing the package's face", "src/cli/face.ts", 'import { face } from "../index.js";\nexport const x = face;\n'],
  ["the page's browser code importing the core", "src/ui/upward.ts", 'import { core } from "../core/state.js";\nexport const x = core;\n'],
];

async function plantTree(files: Record<string, string>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const tree = await tempDir("loupe-layers-");
  await copyFile(join(ROOT, ".dependency-cruiser.cjs"), join(tree.dir, ".dependency-cruiser.cjs"));
  await copyFile(join(ROOT, "tsconfig.json"), join(tree.dir, "tsconfig.json"));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(tree.dir, path)), { recursive: true });
    await writeFile(join(tree.dir, path), text);
  }
  return tree;
}

describe("layers", () => {
  const trees: Array<{ cleanup: () => Promise<void> }> = [];
  let layered: { code: number; output: string };
  let planted: { code: number; output: string };

  beforeAll(async () => {
    const clean = await plantTree(LAYERED);
    const dirty = await plantTree({ ...LAYERED, ...Object.fromEntries(PLANTS.map(([, path, text]) => [path, text])) });
    trees.push(clean, dirty);
    [layered, planted] = await Promise.all([cruise(clean.dir, ["src", "tools", "nodes", "graphs"]), cruise(dirty.dir, ["src", "tools", "nodes", "graphs"])]);
  });
  afterAll(() => Promise.all(trees.map((t) => t.cleanup())));

  it("the project's imports run one way", async () => {
    const { code, output } = await cruise(ROOT, SHIPPED);
    expect(output).toContain("no dependency violations found");
    expect(code).toBe(0);
  });

  it("a correctly layered tree passes, so the planted imports below fail for themselves alone", () => {
    expect(layered.output).toContain("no dependency violations found");
    expect(layered.code).toBe(0);
  });

  it(`the planted tree fails with exactly ${PLANTS.length} violations`, () => {
    expect(planted.code).not.toBe(0);
    expect(planted.output).toContain(`${PLANTS.length} dependency violations (${PLANTS.length} errors`);
  });

  for (const [what, path] of PLANTS) {
    it(`fails on ${what}`, () => {
      expect(planted.output).toMatch(new RegExp(`error [\\w-]+: ${path.replace(/[.]/g, "\\.")} →`));
    });
  }
});
