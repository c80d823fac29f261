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

describe("layers", () => {
  let planted: { dir: string; cleanup: () => Promise<void> };

  beforeAll(async () => {
    planted = await tempDir("loupe-layers-");
    await copyFile(join(ROOT, ".dependency-cruiser.cjs"), join(planted.dir, ".dependency-cruiser.cjs"));
    await copyFile(join(ROOT, "tsconfig.json"), join(planted.dir, "tsconfig.json"));
    const files: Record<string, string> = {
      "src/core/state.ts": "export const core = 1;\n",
      "tools/crop.ts": 'import { core } from "../src/core/state.js";\nexport const crop = core;\n',
      "nodes/planner.ts": 'import { crop } from "../tools/crop.js";\nexport const planner = crop;\n',
      "graphs/agent.ts": 'import { planner } from "../nodes/planner.js";\nexport const agent = planner;\n',
      "test/fixture.ts": "export const fixture = 1;\n",
    };
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(planted.dir, path)), { recursive: true });
      await writeFile(join(planted.dir, path), text);
    }
  });
  afterAll(() => planted.cleanup());

  it("the project's imports run one way", async () => {
    const { code, output } = await cruise(ROOT, SHIPPED);
    expect(output).toContain("no dependency violations found");
    expect(code).toBe(0);
  });

  it("a correctly layered tree passes, so the planted cases below fail for their import alone", async () => {
    const { code, output } = await cruise(planted.dir, ["src", "tools", "nodes", "graphs"]);
    expect(output).toContain("no dependency violations found");
    expect(code).toBe(0);
  });

  const plants: Array<[string, string, string]> = [
    ["a tool importing a node", "tools/upward.ts", 'import { planner } from "../nodes/planner.js";\nexport const x = planner;\n'],
    ["the core importing a tool", "src/core/upward.ts", 'import { crop } from "../../tools/crop.js";\nexport const x = crop;\n'],
    ["a node importing a graph", "nodes/upward.ts", 'import { agent } from "../graphs/agent.js";\nexport const x = agent;\n'],
    ["a graph importing a tool", "graphs/upward.ts", 'import { crop } from "../tools/crop.js";\nexport const x = crop;\n'],
    ["the runtime importing a node", "src/runtime/upward.ts", 'import type { planner } from "../../nodes/planner.js";\nexport type X = typeof planner;\n'],
    ["shipped code importing a test fixture", "src/cli/upward.ts", 'import { fixture } from "../../test/fixture.js";\nexport const x = fixture;\n'],
  ];
  for (const [what, path, text] of plants) {
    it(`fails on ${what}`, async () => {
      const file = join(planted.dir, path);
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, text);
      try {
        const { code, output } = await cruise(planted.dir, ["src", "tools", "nodes", "graphs"]);
        expect(code).not.toBe(0);
        expect(output).toContain(path);
        expect(output).toMatch(/1 dependency violations \(1 errors/);
      } finally {
        await import("node:fs/promises").then((fs) => fs.rm(file));
      }
    });
  }
});
