// The search cache in Postgres (LOUPE_DATABASE_URL): the same entries and rules as the SQLite cache, shared by every worker.
import type { LoupeDatabase } from "../../src/core/postgres.js";
import { usableEntry, type CacheEntry, type CacheEntryMeta, type CacheLookup, type CacheRow, type SearchCacheStore } from "./cache.js";

export interface PostgresSearchCacheOptions {
  /** How long a new entry stays fresh, in ms (null: forever). */
  ttlMs?: number | null;
  now?: () => number;
}

/** Rows of loupe_search_cache (BIGINT columns arrive as strings from pg). */
interface PgRow extends Omit<CacheRow, "created_at" | "expires_at"> {
  created_at: string;
  expires_at: string | null;
}

export class PostgresSearchCache implements SearchCacheStore {
  readonly ttlMs: number | null;
  readonly counters = { hits: 0, misses: 0, writes: 0 };
  private readonly now: () => number;

  constructor(
    private readonly db: LoupeDatabase,
    options: PostgresSearchCacheOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? null;
    this.now = options.now ?? Date.now;
  }

  async get(key: string, lookup: CacheLookup = {}): Promise<CacheEntry | undefined> {
    const { rows } = await this.db.query<PgRow>("SELECT * FROM loupe_search_cache WHERE key = $1", [key]);
    const row = rows[0];
    const entry = usableEntry(
      row && { ...row, created_at: Number(row.created_at), expires_at: row.expires_at === null ? null : Number(row.expires_at) },
      lookup,
      this.now(),
    );
    if (entry) this.counters.hits++;
    else this.counters.misses++;
    return entry;
  }

  async put(key: string, value: unknown, meta: CacheEntryMeta): Promise<void> {
    const createdAt = this.now();
    const expiresAt = meta.expiresAt !== undefined ? meta.expiresAt : this.ttlMs === null ? null : createdAt + this.ttlMs;
    await this.db.query(
      `INSERT INTO loupe_search_cache (key, provider, operation, input, value, max_results, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (key) DO UPDATE SET provider = EXCLUDED.provider, operation = EXCLUDED.operation, input = EXCLUDED.input,
         value = EXCLUDED.value, max_results = EXCLUDED.max_results, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at`,
      [key, meta.provider, meta.operation, meta.input, JSON.stringify(value), meta.maxResults ?? null, createdAt, expiresAt],
    );
    this.counters.writes++;
  }

  /** Deletes expired entries; returns how many. */
  async prune(): Promise<number> {
    const result = await this.db.query("DELETE FROM loupe_search_cache WHERE expires_at IS NOT NULL AND expires_at <= $1", [this.now()]);
    return result.rowCount ?? 0;
  }

  /** The database is closed by its owner (the agent's dependencies). */
  close(): void {}
}
