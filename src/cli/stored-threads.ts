// Reading a finished run's threads and images back, for `loupe report` and `loupe export`.
import { resolveConfig, type LoupeConfig } from "../core/config.js";
import type { ImageStore } from "../core/images.js";
import type { ThreadReader } from "../eval/trajectory.js";
import { withAgent } from "../run/session.js";

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
