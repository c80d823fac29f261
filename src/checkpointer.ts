// Checkpointers: LangGraph's SQLite saver in the data directory (embedded, no server; the default), or PostgresSaver with LOUPE_DATABASE_URL.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { BaseCheckpointSaver } from "@langchain/langgraph";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import type { LoupeConfig } from "./config.js";
import { LoupeDatabase } from "./postgres.js";

export function checkpointPath(config: Pick<LoupeConfig, "dataDir">): string {
  return join(resolve(config.dataDir), "checkpoints.sqlite");
}

/** The SQLite checkpointer in the data directory. */
export function createCheckpointer(config: Pick<LoupeConfig, "dataDir">): SqliteSaver {
  mkdirSync(resolve(config.dataDir), { recursive: true });
  return SqliteSaver.fromConnString(checkpointPath(config));
}

export interface OpenCheckpointer {
  saver: BaseCheckpointSaver;
  /** Where threads are kept, for messages: the SQLite file, or the database URL without its password. */
  where: string;
  close(): Promise<void>;
}

/**
 * The configured checkpointer: PostgresSaver when config.databaseUrl is set (its schema, and
 * Loupe's tables, set up on the spot, so an unreachable database fails here with a clear
 * message), else SQLite in the data directory. Pass the dependencies' database to share its pool.
 */
export async function openCheckpointer(
  config: Pick<LoupeConfig, "dataDir" | "databaseUrl">,
  database?: LoupeDatabase,
): Promise<OpenCheckpointer> {
  if (!config.databaseUrl) {
    const saver = createCheckpointer(config);
    const close = async () => {
      saver.db.close();
    };
    return { saver, where: checkpointPath(config), close };
  }
  const db = database ?? new LoupeDatabase(config.databaseUrl);
  const close = async () => {
    if (!database) await db.end();
  };
  try {
    await db.ready();
  } catch (err) {
    await close();
    throw err;
  }
  return { saver: new PostgresSaver(db.pool), where: db.where, close };
}
