// `npm run demo` as a new user runs it: the recorded 15-tool-call trajectory through the real CLI, offline.
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { baseEnv } from "./helpers.js";

const ROOT = resolve(import.meta.dirname, "..");

describe("npm run demo", () => {
  it("replays the trajectory through the CLI and prints the cited answer", async () => {
    const child = spawn(process.execPath, [resolve(ROOT, "bin", "loupe-demo.mjs")], { cwd: ROOT, env: baseEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((done) => child.on("close", done));
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("LOUPE-42");
    expect(stdout).toContain("https://example.org/harbour-signs");
  });
});
