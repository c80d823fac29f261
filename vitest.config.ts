import { defineConfig } from "vitest/config";

// Two projects: in-process unit tests beside the code (one module graph shared across files, so
// LangGraph, sharp and the tools load once), and the cross-module tests under test/ (spawned CLIs,
// servers, databases), each file in a fresh process.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["nodes/**/*.test.ts", "tools/**/*.test.ts", "src/**/*.test.ts"], isolate: false },
      },
      {
        extends: true,
        test: { name: "e2e", include: ["test/**/*.test.ts"] },
      },
    ],
  },
});
