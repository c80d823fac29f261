// `loupe report`: rebuilds an evaluation run's report.html from its results and checkpointed trajectories.
import { resolve } from "node:path";
import { writeReport } from "../eval/report.js";
import { readerSettings, runManifest, withStoredThreads } from "./stored-threads.js";

export async function runReport(runDir: string, flags: { dataDir?: string }): Promise<void> {
  const manifest = runManifest(runDir);
  const path = await withStoredThreads(readerSettings(flags.dataDir ?? manifest.dataDir), (stored) => writeReport(resolve(runDir), stored));
  process.stdout.write(`${path}\n`);
}
