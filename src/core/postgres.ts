// Postgres for many workers (LOUPE_DATABASE_URL): one connection pool, automatic idempotent schema set-up, and the image blob table.
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import pg from "pg";
import { redactDatabaseUrl } from "./config.js";
import type { ImageBlobStore, StoredImage } from "./images.js";

/** The database cannot be reached (refused, unknown host, timeout, authentication, missing database). */
export class DatabaseUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DatabaseUnavailableError";
  }
}

/** Node network error codes and PostgreSQL SQLSTATEs that mean "no usable connection", not "bad query". */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE"]);
function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === "string" ? e.code : "";
  if (NETWORK_CODES.has(code)) return true;
  // 08: connection exception; 28: invalid authorization; 3D000: no such database; 57P0x: shutting down / cannot connect now.
  if (/^(08|28)/.test(code) || code === "3D000" || /^57P0[1-3]$/.test(code)) return true;
  const message = typeof e?.message === "string" ? e.message : "";
  return /Connection terminated|timeout exceeded when trying to connect|connection timeout/i.test(message);
}

/**
 * Tables Loupe keeps next to LangGraph's checkpoint tables. Creating them is idempotent; the
 * checkpoint tables come from PostgresSaver.setup(), which records its migrations.
 */
const LOUPE_SCHEMA = `
CREATE TABLE IF NOT EXISTS loupe_images (
  sha256     TEXT PRIMARY KEY,
  mime       TEXT NOT NULL,
  width      INTEGER NOT NULL,
  height     INTEGER NOT NULL,
  bytes      BYTEA NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS loupe_search_cache (
  key         TEXT PRIMARY KEY,
  provider    TEXT NOT NULL,
  operation   TEXT NOT NULL,
  input       TEXT NOT NULL,
  value       TEXT NOT NULL,
  max_results INTEGER,
  created_at  BIGINT NOT NULL,
  expires_at  BIGINT
);
CREATE INDEX IF NOT EXISTS loupe_search_cache_expires_at ON loupe_search_cache (expires_at);
`;

/** Key of the advisory lock that serialises schema set-up between workers starting at once. */
const SCHEMA_LOCK = 0x6c6f757065; // "loupe"

/**
 * Creates every table Loupe needs (checkpoints, images, search cache) if missing. Safe to run
 * any number of times, also by several workers at once (they take turns under an advisory lock,
 * since concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalogs).
 */
export async function setUpSchema(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [SCHEMA_LOCK]);
    try {
      // PostgresSaver.setup() takes its own connection from the pool; the lock is held by this session.
      await new PostgresSaver(pool).setup();
      await client.query(LOUPE_SCHEMA);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [SCHEMA_LOCK]);
    }
  } finally {
    client.release();
  }
}

export interface LoupeDatabaseOptions {
  /** Most connections this process opens (default 8). */
  maxConnections?: number;
  /** How long to wait for a connection before calling the database unreachable (default 10 s). */
  connectTimeoutMs?: number;
}

/**
 * One process's handle on the shared database: a pool, a schema set up once on first use, and
 * queries whose connection failures become a DatabaseUnavailableError naming the URL (never the password).
 */
export class LoupeDatabase {
  readonly pool: pg.Pool;
  /** The URL without its password, for messages. */
  readonly where: string;
  private schema?: Promise<void>;
  private readonly connectTimeoutMs: number;

  constructor(
    private readonly url: string,
    options: LoupeDatabaseOptions = {},
  ) {
    this.where = redactDatabaseUrl(url);
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.pool = new pg.Pool({
      connectionString: url,
      max: Math.max(2, options.maxConnections ?? 8),
      connectionTimeoutMillis: this.connectTimeoutMs,
    });
    // An idle connection dropped by the server must not crash the process; the next query reconnects.
    this.pool.on("error", () => {});
  }

  /** Sets up the schema (once per process; retried after a failure). */
  ready(): Promise<void> {
    this.schema ??= this.guard(() => setUpSchema(this.pool)).catch((err) => {
      this.schema = undefined;
      throw err;
    });
    return this.schema;
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    await this.ready();
    return this.guard(() => this.pool.query<R>(text, values));
  }

  /**
   * A connection of its own, outside the pool, for session state held as long as a run (a thread's
   * advisory lock, which the server frees when the connection closes). The caller ends it.
   */
  async connectSession(applicationName: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: this.connectTimeoutMs, application_name: applicationName });
    // A connection dropped by the server must not crash the process.
    client.on("error", () => {});
    await this.guard(() => client.connect());
    return client;
  }

  /** Closes the pool; never throws. */
  async end(): Promise<void> {
    await this.pool.end().catch(() => {});
  }

  private async guard<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      const reason = ((err as Error).message || (err as { code?: string }).code || String(err)).split("\n")[0];
      throw new DatabaseUnavailableError(
        `cannot reach the database at ${this.where} (${reason}); check LOUPE_DATABASE_URL and that PostgreSQL is running and accepts connections`,
      );
    }
  }
}

/** Image bytes in the shared database, so a worker on another machine can read what this one stored. */
export class PostgresImageBlobs implements ImageBlobStore {
  constructor(private readonly db: LoupeDatabase) {}

  describe(): string {
    return `the database at ${this.db.where}`;
  }

  async put(image: StoredImage, bytes: Buffer): Promise<void> {
    await this.db.query(
      `INSERT INTO loupe_images (sha256, mime, width, height, bytes) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (sha256) DO NOTHING`,
      [image.sha256, image.mime, image.width, image.height, bytes],
    );
  }

  async get(sha256: string): Promise<Buffer | undefined> {
    const { rows } = await this.db.query<{ bytes: Buffer }>("SELECT bytes FROM loupe_images WHERE sha256 = $1", [sha256]);
    return rows[0]?.bytes;
  }
}
