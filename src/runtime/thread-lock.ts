// One thread, one runner: a lock per thread id, taken without waiting and freed when the run ends or its process dies (SQLite in the data directory, or a Postgres advisory lock).
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import type pg from "pg";
import type { LoupeConfig } from "../core/config.js";
import { LoupeDatabase } from "../core/postgres.js";

/** Taking a thread's lock: held (release it when the run ends), or not, with who holds it when that is known. */
export type ThreadLockAttempt = { held: true; release(): Promise<void> } | { held: false; holder?: string };

export interface ThreadLocks {
  /** Takes the thread's lock if no live process holds it; never waits for it. */
  tryAcquire(threadId: string): Promise<ThreadLockAttempt>;
}

/** A process that runs threads: its pid, when it started (tells a reused pid apart), and its machine. */
export interface LockOwner {
  pid: number;
  started: string | null;
  host: string;
}

/** When a process started, in clock ticks after boot (Linux's /proc); null where that cannot be read. */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22; the command name in parentheses before it may hold spaces, so count from its closing one.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

export function currentOwner(): LockOwner {
  return { pid: process.pid, started: processStart(process.pid), host: hostname() };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

type LockRow = LockOwner & { renewed_at: number };

/** How often a holder marks its lock as still in use, and after how long without that a lock from another machine is stale. */
const RENEW_MS = 15_000;
const REMOTE_STALE_MS = 60_000;

const LOCKS_SCHEMA = `CREATE TABLE IF NOT EXISTS thread_locks (
  thread_id  TEXT PRIMARY KEY,
  pid        INTEGER NOT NULL,
  started    TEXT,
  host       TEXT NOT NULL,
  renewed_at INTEGER NOT NULL
)`;

/**
 * Thread locks in `<data-dir>/locks.sqlite`: one row per running thread naming its owner. Node has
 * no OS file lock without native code, so a lock is a row, and a row whose owner is gone is stale
 * and taken over: on this machine that is known at once (its pid no longer exists, or belongs to
 * a process that started at another time, i.e. a reused pid), so a process killed by SIGKILL never
 * leaves its thread locked. A row from another machine (a data directory shared between
 * containers) cannot be checked that way: its holder renews it every 15 s, and it is stale after a
 * minute without that. Checking the row and writing ours happen in one IMMEDIATE transaction,
 * which SQLite serialises between processes, so two processes can never both take over one lock.
 */
export class SqliteThreadLocks implements ThreadLocks {
  private readonly path: string;

  constructor(
    private readonly dataDir: string,
    private readonly owner: LockOwner = currentOwner(),
    private readonly now: () => number = Date.now,
  ) {
    this.path = join(resolve(dataDir), "locks.sqlite");
  }

  async tryAcquire(threadId: string): Promise<ThreadLockAttempt> {
    mkdirSync(resolve(this.dataDir), { recursive: true });
    const db = new Database(this.path);
    let holder: LockRow | undefined;
    try {
      db.exec(LOCKS_SCHEMA);
      holder = db.transaction(() => this.claim(db, threadId)).immediate();
    } catch (err) {
      db.close();
      throw err;
    }
    if (holder) {
      db.close();
      return { held: false, holder: `pid ${holder.pid}${holder.host === this.owner.host ? "" : ` on ${holder.host}`}` };
    }
    const mine = [threadId, this.owner.pid, this.owner.host, this.owner.started] as const;
    const renew = setInterval(() => {
      try {
        db.prepare("UPDATE thread_locks SET renewed_at = ? WHERE thread_id = ? AND pid = ? AND host = ? AND started IS ?").run(this.now(), ...mine);
      } catch {
        // Busy for longer than the timeout: the next renewal comes well before the lock could go stale.
      }
    }, RENEW_MS);
    renew.unref();
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      clearInterval(renew);
      try {
        // Only our own row: after a takeover the row is another process's.
        db.prepare("DELETE FROM thread_locks WHERE thread_id = ? AND pid = ? AND host = ? AND started IS ?").run(...mine);
      } finally {
        db.close();
      }
    };
    return { held: true, release };
  }

  /** Inside the transaction: the live holder of the thread's lock, or undefined after writing ours. */
  private claim(db: Database.Database, threadId: string): LockRow | undefined {
    const row = db.prepare("SELECT pid, started, host, renewed_at FROM thread_locks WHERE thread_id = ?").get(threadId) as LockRow | undefined;
    if (row && !this.isStale(row)) return row;
    db.prepare("INSERT OR REPLACE INTO thread_locks (thread_id, pid, started, host, renewed_at) VALUES (?, ?, ?, ?, ?)").run(
      threadId,
      this.owner.pid,
      this.owner.started,
      this.owner.host,
      this.now(),
    );
    return undefined;
  }

  private isStale(row: LockRow): boolean {
    if (row.host !== this.owner.host) return this.now() - row.renewed_at > REMOTE_STALE_MS;
    if (!isAlive(row.pid)) return true;
    const started = row.started === null ? null : processStart(row.pid);
    return started !== null && started !== row.started;
  }
}

/** The thread's advisory lock key: the first 64 bits of the id's sha256, as PostgreSQL's signed bigint. */
export function advisoryKey(threadId: string): bigint {
  return createHash("sha256").update(threadId).digest().readBigInt64BE(0);
}

/**
 * Thread locks as PostgreSQL session-level advisory locks, so workers on any machine sharing the
 * database exclude each other. Each lock is taken on a connection of its own, held for the run:
 * ending the run closes it, and when the process dies the server sees the connection close and
 * frees the lock itself. The connection's application_name names the holder for the refusal message.
 */
export class PostgresThreadLocks implements ThreadLocks {
  constructor(
    private readonly database: Pick<LoupeDatabase, "connectSession">,
    private readonly owner: LockOwner = currentOwner(),
  ) {}

  async tryAcquire(threadId: string): Promise<ThreadLockAttempt> {
    const key = advisoryKey(threadId);
    const session = await this.database.connectSession(`loupe pid ${this.owner.pid} on ${this.owner.host}`);
    let ended: Promise<void> | undefined;
    const end = () => (ended ??= session.end().catch(() => {}));
    try {
      const { rows } = await session.query<{ held: boolean }>("SELECT pg_try_advisory_lock($1::bigint) AS held", [key.toString()]);
      if (rows[0]?.held) return { held: true, release: end };
      const holder = await holderOf(session, key);
      await end();
      return { held: false, holder };
    } catch (err) {
      await end();
      throw err;
    }
  }
}

/** Who holds a bigint advisory lock, from its connection's application_name (pg_locks splits the key in two unsigned halves). */
async function holderOf(session: pg.Client, key: bigint): Promise<string | undefined> {
  const unsigned = BigInt.asUintN(64, key);
  const { rows } = await session.query<{ name: string | null }>(
    `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = $1::oid AND l.objid = $2::oid
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [(unsigned >> 32n).toString(), (unsigned & 0xffffffffn).toString()],
  );
  return /^loupe (pid \d+.*)$/.exec(rows[0]?.name ?? "")?.[1];
}

/** The configured thread locks: advisory locks in the shared database with LOUPE_DATABASE_URL, else SQLite in the data directory. */
export function threadLocksFor(config: Pick<LoupeConfig, "dataDir" | "databaseUrl">): ThreadLocks {
  if (!config.databaseUrl) return new SqliteThreadLocks(config.dataDir);
  // Its pool stays unused (it opens no connection until used): connectSession connects outside it.
  return new PostgresThreadLocks(new LoupeDatabase(config.databaseUrl));
}
