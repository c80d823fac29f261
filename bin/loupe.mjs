#!/usr/bin/env node
// Entry point of the `loupe` command. Which code it runs:
// - installed from npm (the package holds dist/ and no src/): the compiled dist/ with plain Node;
// - in a checkout of the repository (src/cli/main.ts beside bin/): the TypeScript sources through
//   tsx's loader, so an edit counts at once without `npm run build` (the tests spawn this file and
//   must exercise the sources, however stale dist/ is). LOUPE_USE_DIST=1 runs dist/ there too, as
//   the package does (`npm run build` first); so does a checkout where tsx is not installed.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const sources = new URL("../src/cli/main.ts", import.meta.url);
const compiled = new URL("../dist/src/cli/main.js", import.meta.url);

async function load() {
  if (process.env.LOUPE_USE_DIST !== "1" && existsSync(sources)) {
    let register;
    try {
      ({ register } = await import("tsx/esm/api"));
    } catch (err) {
      if (err?.code !== "ERR_MODULE_NOT_FOUND" || !existsSync(compiled)) throw err;
    }
    if (register) {
      register();
      return import(sources.href);
    }
  }
  if (!existsSync(compiled)) {
    process.stderr.write(`loupe: ${fileURLToPath(compiled)} is missing: run \`npm run build\` (or unset LOUPE_USE_DIST to run the sources)\n`);
    process.exit(1);
  }
  return import(compiled.href);
}

const { main } = await load();
process.exitCode = await main(process.argv);
