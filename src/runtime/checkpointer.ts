// Checkpointers: LangGraph's SQLite saver in the data directory (embedded, no server; the default), or PostgresSaver with LOUPE_DATABASE_URL.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { BaseCheckpointSaver } from "@langchain/langgraph";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import Database from "better-sqlite3";
import type { LoupeConfig } from "../core/config.js";
import { LoupeDatabase } from "../core/postgres.js";

export function checkpointPath(config: Pick<LoupeConfig, "dataDir">): string {
  return join(resolve(config.dataDir), "checkpoints.sqlite");
}

/** The SQLite checkpointer in the data directory. */
export function createCheckpointer(config: Pick<LoupeConfig, "dataDir">): SqliteSaver {
  mkdirSync(resolve(config.dataDir), { recursive: true });
  return LoupeSqliteSaver.fromConnString(checkpointPath(config));
}

type DeltaHistories = Awaited<ReturnType<BaseCheckpointSaver["getDeltaChannelHistory"]>>;
type AncestorRow = { id: string; type: string | null; checkpoint: Buffer };
type WriteRow = { id: string; task_id: string; channel: string; type: string | null; value: string | null };

/**
 * LangGraph's SqliteSaver, committing without an fsync each time (see setup), and reading delta channels (the agent's conversation, images and tool-call
 * records) with two queries instead of one `getTuple` per ancestor checkpoint. Same result as the
 * base implementation: for each channel, the writes stored at the target's ancestors (parent
 * first, up to and including the nearest one whose checkpoint holds a value for the channel, which
 * is the seed), oldest first, in the order `getTuple` returns a checkpoint's writes.
 */
export class LoupeSqliteSaver extends SqliteSaver {
  static override fromConnString(connStringOrLocalPath: string): LoupeSqliteSaver {
    return new LoupeSqliteSaver(new Database(connStringOrLocalPath));
  }

  /**
   * WAL with synchronous=NORMAL (SQLite's recommended pairing) instead of better-sqlite3's FULL:
   * no fsync on every commit, which cost ~0.8 ms per tool call (two checkpoints and their writes).
   * A committed checkpoint still survives the process being killed (SIGKILL, a crash): the data is
   * in the OS's cache and the WAL. Only a power loss or OS crash can lose the last few checkpoints,
   * and the thread then resumes from an earlier step (the image store does not fsync either).
   */
  protected override setup(): void {
    if (this.isSetup) return;
    super.setup();
    this.db.pragma("synchronous=NORMAL");
  }

  override async getDeltaChannelHistory(options: Parameters<BaseCheckpointSaver["getDeltaChannelHistory"]>[0]): Promise<DeltaHistories> {
    const { config, channels } = options;
    if (channels.length === 0) return {};
    this.setup();
    const threadId = config.configurable?.thread_id as string | undefined;
    const ns = (config.configurable?.checkpoint_ns as string | undefined) ?? "";
    if (!threadId) return super.getDeltaChannelHistory(options);
    const targetId = (config.configurable?.checkpoint_id as string | undefined) || this.latestCheckpointId(threadId, ns);
    if (!targetId) return Object.fromEntries(channels.map((ch) => [ch, { writes: [] }]));
    const chain = this.ancestorsOf(threadId, ns, targetId);
    const writesAt = this.channelWritesAt(threadId, ns, channels, chain);
    const { collected, seeds } = await this.walkAncestors(chain, writesAt, channels);
    return Object.fromEntries(
      channels.map((ch) => [ch, { writes: (collected.get(ch) ?? []).reverse(), ...(seeds.has(ch) ? { seed: seeds.get(ch) } : {}) }]),
    ) as DeltaHistories;
  }

  private latestCheckpointId(threadId: string, ns: string): string | undefined {
    const latest = this.db.prepare("SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT 1").get(threadId, ns) as { checkpoint_id: string } | undefined;
    return latest?.checkpoint_id;
  }

  /** The target's ancestors, parent first. */
  private ancestorsOf(threadId: string, ns: string, targetId: string): AncestorRow[] {
    return this.db
      .prepare(
        `WITH RECURSIVE chain(checkpoint_id, parent_checkpoint_id, depth) AS (
           SELECT checkpoint_id, parent_checkpoint_id, 0 FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
           UNION ALL
           SELECT c.checkpoint_id, c.parent_checkpoint_id, chain.depth + 1 FROM checkpoints c
             JOIN chain ON c.checkpoint_id = chain.parent_checkpoint_id AND c.thread_id = ? AND c.checkpoint_ns = ?
         )
         SELECT chain.checkpoint_id AS id, c.type AS type, c.checkpoint AS checkpoint FROM chain
           JOIN checkpoints c ON c.thread_id = ? AND c.checkpoint_ns = ? AND c.checkpoint_id = chain.checkpoint_id
         WHERE chain.depth > 0 ORDER BY chain.depth`,
      )
      .all(threadId, ns, targetId, threadId, ns, threadId, ns) as AncestorRow[];
  }

  /** The channels' writes stored at the ancestors, by checkpoint, each checkpoint's in `getTuple` order. */
  private channelWritesAt(threadId: string, ns: string, channels: string[], chain: AncestorRow[]): Map<string, WriteRow[]> {
    const marks = channels.map(() => "?").join(", ");
    const rows = this.db
      .prepare(
        `SELECT checkpoint_id AS id, task_id, channel, type, CAST(value AS TEXT) AS value FROM writes
         WHERE thread_id = ? AND checkpoint_ns = ? AND channel IN (${marks}) AND checkpoint_id IN (SELECT value FROM json_each(?))
         ORDER BY checkpoint_id, task_id, idx`,
      )
      .all(threadId, ns, ...channels, JSON.stringify(chain.map((c) => c.id))) as WriteRow[];
    const writesAt = new Map<string, WriteRow[]>();
    for (const row of rows) {
      const list = writesAt.get(row.id);
      if (list) list.push(row);
      else writesAt.set(row.id, [row]);
    }
    return writesAt;
  }

  /**
   * Walks up the ancestors collecting each channel's writes (newest first; the caller reverses
   * them, which restores each checkpoint's order) until a checkpoint holds a value for it (the seed).
   */
  private async walkAncestors(chain: AncestorRow[], writesAt: Map<string, WriteRow[]>, channels: string[]) {
    const collected = new Map<string, Array<[string, string, unknown]>>(channels.map((ch) => [ch, []]));
    const seeds = new Map<string, unknown>();
    const remaining = new Set(channels);
    for (const ancestor of chain) {
      if (remaining.size === 0) break;
      const own = writesAt.get(ancestor.id) ?? [];
      for (const w of [...own].reverse()) {
        if (remaining.has(w.channel)) collected.get(w.channel)?.push([w.task_id, w.channel, await this.serde.loadsTyped(w.type ?? "json", w.value ?? "")]);
      }
      for (const [ch, seed] of await this.seedsHeld(ancestor, remaining)) {
        seeds.set(ch, seed);
        remaining.delete(ch);
      }
    }
    return { collected, seeds };
  }

  /** The values a checkpoint holds for the remaining channels. */
  private async seedsHeld(ancestor: AncestorRow, remaining: Set<string>): Promise<Array<[string, unknown]>> {
    // Which channels this checkpoint holds a value for: a plain JSON.parse answers that, the
    // serializer's revival is only worth it for a checkpoint that holds a seed.
    const type = ancestor.type ?? "json";
    const plain = type === "json" ? (JSON.parse(ancestor.checkpoint.toString("utf8")) as { channel_values?: Record<string, unknown> }) : null;
    const held = [...remaining].filter((ch) => !plain || (plain.channel_values && Object.prototype.hasOwnProperty.call(plain.channel_values, ch)));
    if (held.length === 0) return [];
    const values = ((await this.serde.loadsTyped(type, ancestor.checkpoint)) as { channel_values?: Record<string, unknown> }).channel_values;
    return held.filter((ch) => values && Object.prototype.hasOwnProperty.call(values, ch)).map((ch) => [ch, values?.[ch]]);
  }
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
