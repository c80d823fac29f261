// The default checkpointer: LangGraph's SQLite saver in the data directory (embedded, no server).
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import type { LoupeConfig } from "./config.js";

export function checkpointPath(config: Pick<LoupeConfig, "dataDir">): string {
  return join(resolve(config.dataDir), "checkpoints.sqlite");
}

export function createCheckpointer(config: Pick<LoupeConfig, "dataDir">): SqliteSaver {
  mkdirSync(resolve(config.dataDir), { recursive: true });
  return SqliteSaver.fromConnString(checkpointPath(config));
}
