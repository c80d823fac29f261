#!/usr/bin/env node
// `npm run dev`: LangGraph Studio's dev server (the graph API from langgraph.json) on loopback, without opening a browser or sending CLI telemetry.
// Port: LOUPE_DEV_PORT, else PORT, else 2024. Host: LOUPE_DEV_HOST (default 127.0.0.1). Other flags pass through, e.g. `npm run dev -- --no-reload`.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

// The project's .env (which the server reads too) may set the port; variables already set win.
const dotEnv = fileURLToPath(new URL("../.env", import.meta.url));
if (existsSync(dotEnv)) process.loadEnvFile(dotEnv);

const cli = fileURLToPath(import.meta.resolve("@langchain/langgraph-cli/package.json").replace(/package\.json$/, "dist/cli/cli.mjs"));
const port = process.env.LOUPE_DEV_PORT || process.env.PORT || "2024";
const host = process.env.LOUPE_DEV_HOST || "127.0.0.1";
if (!/^\d+$/.test(port)) {
  process.stderr.write(`loupe dev: the port must be a number (LOUPE_DEV_PORT / PORT), got "${port}"\n`);
  process.exit(2);
}
const child = spawn(process.execPath, [cli, "dev", "--port", port, "--host", host, "--no-browser", ...process.argv.slice(2)], {
  stdio: "inherit",
  env: { LANGGRAPH_CLI_NO_ANALYTICS: "1", BROWSER: "none", ...process.env },
});
// Once the server answers, say where the live page is (src/ui, served at /ui by the graph API's own app).
const shownHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
const base = `http://${shownHost}:${port}`;
(async () => {
  for (let i = 0; i < 600 && child.exitCode === null; i++) {
    const ok = await fetch(`${base}/ok`).then((r) => r.ok, () => false);
    if (ok) {
      process.stdout.write(`\nloupe: the live page is at ${base}/ui (the graph API at ${base})\n\n`);
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
})();
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
// A signal to `npm run dev` may stop npm and its shell without reaching this process (npm does not
// always forward it): when the parent is gone, stop the server too instead of leaving it listening.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) child.kill("SIGTERM");
}, 1000).unref();
