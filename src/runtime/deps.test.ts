// A run's context over the server's settings: what a graph API client may and may not change.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, resolveConfig } from "../core/config.js";
import { runSettings, type AgentDeps } from "../core/agent-deps.js";
import { createDeps } from "./deps.js";

let dir: string;
const made: AgentDeps[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "loupe-deps-"));
});
afterAll(async () => {
  for (const deps of made) await deps.close();
  await rm(dir, { recursive: true, force: true });
});

function depsWith(extra: Record<string, unknown> = {}): AgentDeps {
  const deps = createDeps(resolveConfig({ modelUrl: "http://127.0.0.1:8000/v1", dataDir: dir, searchCache: "live", ...extra }, {}), {});
  made.push(deps);
  return deps;
}

describe("runSettings", () => {
  it("takes a run's budgets and model name from its context", () => {
    const settings = runSettings(depsWith(), { maxToolCalls: 3, model: "other-model", modelUrl: "http://127.0.0.1:8000/v1/" });
    expect(settings.maxToolCalls).toBe(3);
    expect(settings.model).toBe("other-model");
  });

  it("refuses a context pointing the model at another origin (the cloud metadata address, a LAN host)", () => {
    const deps = depsWith();
    for (const modelUrl of ["http://169.254.169.254/latest/", "http://10.0.0.7:8000/v1", "http://127.0.0.1:9999/v1"]) {
      expect(() => runSettings(deps, { modelUrl })).toThrow(ConfigError);
      expect(() => runSettings(deps, { modelUrl })).toThrow(/may point only at the configured model server \(http:\/\/127\.0\.0\.1:8000\); add .* to LOUPE_MODEL_URL_ALLOW/);
    }
  });

  it("accepts an origin the server allows, and a context cannot widen the allowance itself", () => {
    const deps = depsWith({ modelUrlAllow: "http://gpu-2:8000, http://gpu-3:8000/" });
    expect(runSettings(deps, { modelUrl: "http://gpu-3:8000/v1" }).modelUrl).toBe("http://gpu-3:8000/v1");
    expect(() => runSettings(deps, { modelUrl: "http://evil.example/v1", modelUrlAllow: "http://evil.example" })).toThrow(/LOUPE_MODEL_URL_ALLOW/);
  });
});
