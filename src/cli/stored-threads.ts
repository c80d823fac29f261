// Reading a finished run's threads and images back, for `loupe report` and `loupe export`.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { resolveConfig, type LoupeConfig } from "../core/config.js";
import type { ImageStore } from "../core/images.js";
import { MANIFEST_FILE, readManifest, type RunManifest } from "../eval/summary.js";
import type { ThreadReader } from "../eval/trajectory.js";
import { withAgent } from "../run/session.js";
import { UsageError } from "./errors.js";

export interface StoredThreads {
  /** The compiled agent over the run's checkpointer: it reads thread states. */
  reader: ThreadReader;
  images: ImageStore;
}

/** Settings to read threads back from `dataDir` (else the environment's), or Postgres when the environment names one; no search runs. */
export function readerSettings(dataDir: string | undefined): LoupeConfig {
  return resolveConfig({ dataDir, searchCache: "live" });
}

/** Runs `work` with the threads and images of `settings`' stores, closed however it ends. No secrets: nothing is asked of a model. */
export function withStoredThreads<T>(settings: LoupeConfig, work: (stored: StoredThreads) => Promise<T>): Promise<T> {
  return withAgent(settings, {}, ({ agent, deps }) => work({ reader: agent, images: deps.images }));
}

/** The manifest of the evaluation run in `runDir`; a usage error, before anything is opened or made, when the directory is not one. */
export function runManifest(runDir: string): RunManifest {
  if (!existsSync(join(runDir, MANIFEST_FILE))) throw new UsageError(`${runDir} is not an evaluation run (no ${MANIFEST_FILE}); give the --out directory of a loupe eval run`);
  return readManifest(runDir);
}
