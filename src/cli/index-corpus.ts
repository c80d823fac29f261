// `loupe index`: builds or updates the local search index (SQLite FTS5) over a folder, where `loupe ask` finds it.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { resolveConfig } from "../core/config.js";
import { corpusPath } from "../runtime/deps.js";
import { runIndexCommand } from "../../tools/search/corpus.js";

export async function runIndex(dir: string, flags: { corpus?: string; dataDir?: string }): Promise<void> {
  const settings = resolveConfig({ corpus: flags.corpus, dataDir: flags.dataDir });
  const target = corpusPath(settings);
  mkdirSync(dirname(target), { recursive: true });
  const code = await runIndexCommand(dir, target, (line) => process.stderr.write(`${line}\n`));
  if (code !== 0) process.exitCode = code;
}
