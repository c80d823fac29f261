// The search cache: a content-addressed SQLite store every provider call goes through, with live / read-write / replay / record modes.
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { z } from "zod/v4";
import { sha256Hex } from "../../src/core/images.js";
import type { PageContent, PageFailure, SearchProvider } from "./provider.js";
import { scrubber } from "./resilience.js";

export const CACHE_MODES = ["live", "read-write", "replay", "record"] as const;
/**
 * live: no cache at all. read-write (default): serve hits, fetch and store misses.
 * replay: cache only, never a network call; a miss is a CacheMissError the model reads.
 * record: always call the provider and overwrite the entry.
 */
export type CacheMode = (typeof CACHE_MODES)[number];

/** The cache's operations, named as the model's tools are so a miss message reads naturally. */
export type CacheOperation = "text_search" | "web_visit" | "image_search";

/** Replay mode found nothing for a call; its message is meant to be shown to the model as the observation. */
export class CacheMissError extends Error {
  readonly operation: CacheOperation;
  readonly input: string;
  constructor(operation: CacheOperation, input: string) {
    super(`no cached result for ${operation} ${input} (replay mode: the cache is read-only and makes no network calls)`);
    this.name = "CacheMissError";
    this.operation = operation;
    this.input = input;
  }
}

export function searchCachePath(dataDir: string): string {
  return join(resolve(dataDir), "search-cache.sqlite");
}

/** Parses a TTL such as `0`/`never` (no expiry), `3600000` (ms), `90s`, `15m`, `12h` or `7d` into ms (null: never expires). */
export function parseTtl(text: string): number | null {
  if (/^\s*(never|off|none)\s*$/i.test(text)) return null;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(text);
  if (!match) throw new Error(`"${text}" is not a duration: use milliseconds or a number with ms, s, m, h or d (e.g. 7d), or 0 for no expiry`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(match[2] ?? "ms").toLowerCase() as "ms"];
  const ms = Math.round(Number(match[1]) * unit);
  return ms === 0 ? null : ms;
}

// ---------------------------------------------------------------------------------------------
// Keys

/** Lowercased, trimmed, whitespace collapsed: "  Eiffel  Tower " and "eiffel tower" are one query. */
export function normalizeQuery(query: string): string {
  return query.normalize("NFKC").trim().replace(/\s+/g, " ").toLowerCase();
}

/**
 * One spelling per page: lowercase scheme and host, no fragment, no default port, query
 * parameters sorted. What is not a URL is kept as given (trimmed), so it still keys consistently.
 */
export function normalizeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    return url.trim();
  }
  // The URL parser already lowercases scheme and host and drops the scheme's default port.
  parsed.hash = "";
  parsed.searchParams.sort();
  return parsed.href.replace(/\?$/, "");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Bump when normalisation or value shapes change, so old entries stop matching instead of misleading. */
const KEY_VERSION = 1;

/**
 * What identifies one cached answer. maxResults is deliberately absent: an answer fetched with
 * more results serves a request for fewer (see SearchCache.get), and imported benchmark results,
 * which come with no maxResults, serve any request.
 */
export interface CacheKeyParts {
  provider: string;
  operation: CacheOperation;
  /** The normalised input: query, URL or image sha256. */
  input: string;
  goal?: string;
}

export function cacheKey(parts: CacheKeyParts): string {
  return sha256Hex(canonicalJson({ v: KEY_VERSION, ...parts }));
}

export function textSearchKey(provider: string, query: string): string {
  return cacheKey({ provider, operation: "text_search", input: normalizeQuery(query) });
}

export function webVisitKey(provider: string, url: string, goal?: string): string {
  const g = goal === undefined ? "" : normalizeQuery(goal);
  return cacheKey({ provider, operation: "web_visit", input: normalizeUrl(url), goal: g || undefined });
}

export function imageSearchKey(provider: string, imageSha256: string): string {
  return cacheKey({ provider, operation: "image_search", input: imageSha256.toLowerCase() });
}

// ---------------------------------------------------------------------------------------------
// Store

export interface CacheEntryMeta {
  provider: string;
  operation: CacheOperation;
  /** Human-readable input for people inspecting the database (the key itself is a hash). */
  input: string;
  /** maxResults the answer was fetched with; null: the answer is complete (e.g. imported benchmark data). */
  maxResults?: number | null;
  /** Epoch ms after which the entry is stale; default: now + the cache's TTL; null: never. */
  expiresAt?: number | null;
}

export interface CacheEntry extends Required<CacheEntryMeta> {
  key: string;
  value: unknown;
  createdAt: number;
}

export interface CacheLookup {
  /** The caller wants this many results; an entry fetched with fewer is a miss unless allowFewer. */
  maxResults?: number;
  allowExpired?: boolean;
  allowFewer?: boolean;
}

export interface SearchCacheOptions {
  /** Entries written from now on expire after this many ms; undefined/null: never. */
  ttlMs?: number | null;
  /** Clock, for tests. */
  now?: () => number;
}

export interface SearchCacheStats {
  path: string;
  entries: number;
  expired: number;
  hits: number;
  misses: number;
  writes: number;
}

/**
 * What the caching provider needs of a cache. The SQLite SearchCache answers synchronously; the
 * Postgres one (cache-postgres.ts, with LOUPE_DATABASE_URL) asynchronously.
 */
export interface SearchCacheStore {
  /** Lookups that found a usable entry, lookups that did not, entries written (this process). */
  readonly counters: { hits: number; misses: number; writes: number; writeFailures?: number };
  get(key: string, lookup?: CacheLookup): CacheEntry | undefined | Promise<CacheEntry | undefined>;
  put(key: string, value: unknown, meta: CacheEntryMeta): void | Promise<void>;
  close(): void | Promise<void>;
}

/** A stored row, as both the SQLite and the Postgres cache read it. */
export interface CacheRow {
  key: string;
  provider: string;
  operation: CacheOperation;
  input: string;
  value: string;
  max_results: number | null;
  created_at: number;
  expires_at: number | null;
}
type Row = CacheRow;

/** The entry a row holds if it is usable for this lookup, else undefined. */
export function usableEntry(row: CacheRow | undefined, lookup: CacheLookup, now: number): CacheEntry | undefined {
  const usable =
    row !== undefined &&
    (lookup.allowExpired || row.expires_at === null || row.expires_at > now) &&
    (lookup.allowFewer || lookup.maxResults === undefined || satisfies(row, lookup.maxResults));
  if (!usable) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(row.value);
  } catch {
    return undefined;
  }
  if (value === undefined) return undefined;
  return {
    key: row.key,
    provider: row.provider,
    operation: row.operation,
    input: row.input,
    value,
    maxResults: row.max_results,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS search_cache (
  key         TEXT PRIMARY KEY,
  provider    TEXT NOT NULL,
  operation   TEXT NOT NULL,
  input       TEXT NOT NULL,
  value       TEXT NOT NULL,
  max_results INTEGER,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER
);
CREATE INDEX IF NOT EXISTS search_cache_expires_at ON search_cache (expires_at);
`;

/**
 * A SQLite file of search answers (WAL, so parallel benchmark workers can share one).
 * The file is opened on first use: a cache that is never consulted (live mode) never creates it.
 *
 * Expiry is per entry, fixed when it is written (imported benchmark results never expire);
 * a TTL change applies to entries written afterwards.
 */
export class SearchCache implements SearchCacheStore {
  readonly path: string;
  readonly ttlMs: number | null;
  /** Lookups that found a usable entry, lookups that did not, entries written. */
  readonly counters = { hits: 0, misses: 0, writes: 0 };
  private readonly now: () => number;
  private handle?: Database.Database;

  constructor(path: string, options: SearchCacheOptions = {}) {
    this.path = path;
    this.ttlMs = options.ttlMs ?? null;
    this.now = options.now ?? Date.now;
  }

  private get db(): Database.Database {
    if (!this.handle) {
      if (this.path !== ":memory:") mkdirSync(dirname(resolve(this.path)), { recursive: true });
      const db = new Database(this.path, { timeout: 10_000 });
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.exec(SCHEMA);
      this.handle = db;
    }
    return this.handle;
  }

  /** The entry under key if it is usable for this lookup (counted as a hit), else undefined (a miss). */
  get(key: string, lookup: CacheLookup = {}): CacheEntry | undefined {
    const row = this.db.prepare<[string], Row>("SELECT * FROM search_cache WHERE key = ?").get(key);
    const entry = usableEntry(row, lookup, this.now());
    if (entry) this.counters.hits++;
    else this.counters.misses++;
    return entry;
  }

  /** Stores (or overwrites) the answer under key. */
  put(key: string, value: unknown, meta: CacheEntryMeta): void {
    const createdAt = this.now();
    const expiresAt = meta.expiresAt !== undefined ? meta.expiresAt : this.ttlMs === null ? null : createdAt + this.ttlMs;
    this.db
      .prepare(
        `INSERT OR REPLACE INTO search_cache (key, provider, operation, input, value, max_results, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(key, meta.provider, meta.operation, meta.input, JSON.stringify(value), meta.maxResults ?? null, createdAt, expiresAt);
    this.counters.writes++;
  }

  /** Deletes expired entries; returns how many. */
  prune(): number {
    return this.db.prepare("DELETE FROM search_cache WHERE expires_at IS NOT NULL AND expires_at <= ?").run(this.now()).changes;
  }

  stats(): SearchCacheStats {
    const row = this.db
      .prepare<[number], { entries: number; expired: number | null }>(
        "SELECT COUNT(*) AS entries, SUM(expires_at IS NOT NULL AND expires_at <= ?) AS expired FROM search_cache",
      )
      .get(this.now())!;
    return { path: this.path, entries: row.entries, expired: row.expired ?? 0, ...this.counters };
  }

  close(): void {
    this.handle?.close();
    this.handle = undefined;
  }
}

/** An answer fetched with maxResults m serves a request for n ≤ m, or any n if the provider ran out before m. */
function satisfies(row: Row, wanted: number): boolean {
  if (row.max_results === null || row.max_results >= wanted) return true;
  try {
    const hits = (JSON.parse(row.value) as { hits?: unknown[] }).hits;
    return Array.isArray(hits) && hits.length < row.max_results;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The caching provider

const hitSchema = z.object({ title: z.string(), url: z.string(), snippet: z.string() });
const textValueSchema = z.object({
  hits: z.array(hitSchema),
  images: z.array(z.object({ url: z.string(), description: z.string().optional() })),
});
const pageValueSchema = z.object({
  url: z.string(),
  title: z.string().optional(),
  text: z.string(),
  image: z.object({ base64: z.string(), mime: z.string() }).optional(),
});
const imageValueSchema = z.looseObject({ hits: z.array(hitSchema) });

export interface CachedProviderOptions {
  /**
   * Secrets (API keys) to scrub from anything written: a provider could echo its key in a
   * result URL or a name. They are replaced by *** before hashing or storing.
   */
  secrets?: Array<string | undefined>;
}

/** The cache as one wrapped provider uses it; secrets are scrubbed from what it keys and writes. */
interface ProviderCache {
  /** The provider's name as keys and entries carry it (scrubbed). */
  name: string;
  replay: boolean;
  scrub: (text: string) => string;
  /** Parsed cached value, or undefined when absent, stale or unreadable (then it is fetched again). */
  lookup<T>(key: string, schema: z.ZodType<T>, maxResults?: number): Promise<T | undefined>;
  /** Writes an answer; a failed write loses only the saving, never the answer the provider (and the user's money) gave. */
  store(key: string, value: unknown, meta: Omit<CacheEntryMeta, "provider">): Promise<void>;
  /** Concurrent identical misses share one provider call. */
  once<T>(key: string, fetch: () => Promise<T>): Promise<T>;
}

function providerCache(providerName: string, cache: SearchCacheStore, mode: Exclude<CacheMode, "live">, options: CachedProviderOptions): ProviderCache {
  const scrub = scrubber(options.secrets);
  const name = scrub(providerName);
  const replay = mode === "replay";
  const inflight = new Map<string, Promise<unknown>>();
  return {
    name,
    replay,
    scrub,
    async lookup<T>(key: string, schema: z.ZodType<T>, maxResults?: number): Promise<T | undefined> {
      if (mode === "record") return undefined;
      let entry: CacheEntry | undefined;
      try {
        entry = await cache.get(key, { maxResults, allowExpired: replay, allowFewer: replay });
      } catch (err) {
        // A cache that cannot be read (a database hiccup) is a miss, unless the cache is all there is.
        if (replay) throw err;
        return undefined;
      }
      if (!entry) return undefined;
      const parsed = schema.safeParse(entry.value);
      if (parsed.success) return parsed.data;
      // Written by an older or foreign version: not usable, so it counts as a miss.
      cache.counters.hits--;
      cache.counters.misses++;
      return undefined;
    },
    async store(key, value, meta) {
      try {
        await cache.put(key, JSON.parse(scrub(JSON.stringify(value))), { ...meta, provider: name, input: scrub(meta.input) });
      } catch {
        cache.counters.writeFailures = (cache.counters.writeFailures ?? 0) + 1;
      }
    },
    once<T>(key: string, fetch: () => Promise<T>): Promise<T> {
      const pending = inflight.get(key) as Promise<T> | undefined;
      if (pending) return pending;
      const started = fetch().finally(() => inflight.delete(key));
      inflight.set(key, started);
      return started;
    },
  };
}

type TextSearch = NonNullable<SearchProvider["textSearch"]>;
type WebVisit = NonNullable<SearchProvider["webVisit"]>;
type ImageSearch = NonNullable<SearchProvider["imageSearch"]>;

function cachedTextSearch(textSearch: TextSearch, c: ProviderCache): TextSearch {
  return async (query, requestOptions) => {
    const key = textSearchKey(c.name, c.scrub(query));
    const { maxResults } = requestOptions;
    const cached = await c.lookup(key, textValueSchema, maxResults);
    if (cached) return { hits: cached.hits.slice(0, maxResults), images: cached.images };
    if (c.replay) throw new CacheMissError("text_search", JSON.stringify(query.trim()));
    return c.once(`${key}:${maxResults}`, async () => {
      const fresh = await textSearch(query, requestOptions);
      await c.store(key, { hits: fresh.hits, images: fresh.images }, { operation: "text_search", input: normalizeQuery(query), maxResults });
      return fresh;
    });
  };
}

function cachedImageSearch(imageSearch: ImageSearch, c: ProviderCache): ImageSearch {
  return async (image, requestOptions) => {
    const sha = (image.sha256 || sha256Hex(image.bytes)).toLowerCase();
    const key = imageSearchKey(c.name, sha);
    const { maxResults } = requestOptions;
    const cached = await c.lookup(key, imageValueSchema, maxResults);
    if (cached) return { ...cached, hits: cached.hits.slice(0, maxResults) };
    if (c.replay) throw new CacheMissError("image_search", `of image sha256:${sha.slice(0, 12)}`);
    return c.once(`${key}:${maxResults}`, async () => {
      const fresh = await imageSearch({ ...image, sha256: sha }, requestOptions);
      await c.store(key, fresh, { operation: "image_search", input: `sha256:${sha}`, maxResults });
      return fresh;
    });
  };
}

/** A web_visit's URLs by cache key (one per distinct key), and which of them the cache holds. */
interface PageLookup {
  requests: Map<string, string>;
  found: Map<string, PageContent>;
  missing: Array<[key: string, url: string]>;
}

async function lookUpPages(c: ProviderCache, urls: string[], goal: string | undefined): Promise<PageLookup> {
  const requests = new Map<string, string>();
  for (const url of urls) {
    const key = webVisitKey(c.name, c.scrub(url), goal === undefined ? undefined : c.scrub(goal));
    if (!requests.has(key)) requests.set(key, url);
  }
  const found = new Map<string, PageContent>();
  const missing: Array<[key: string, url: string]> = [];
  // One lookup per URL, all at once (with Postgres each is a round trip).
  const looked = await Promise.all([...requests].map(async ([key, url]) => [key, url, await c.lookup(key, pageValueSchema)] as const));
  for (const [key, url, page] of looked) {
    if (page) found.set(key, page);
    else missing.push([key, url]);
  }
  return { requests, found, missing };
}

/**
 * Visits the URLs the cache did not hold and stores each page under the key of the URL it answers;
 * pages that answer none of them are returned as extra.
 */
async function fetchMissingPages(
  webVisit: WebVisit,
  c: ProviderCache,
  { found, missing }: PageLookup,
  requestOptions: Parameters<WebVisit>[1],
): Promise<{ extra: PageContent[]; failed: PageFailure[] }> {
  const { goal } = requestOptions;
  const fresh = await c.once(`${missing.map(([key]) => key).join(",")}`, () =>
    webVisit(missing.map(([, url]) => url), requestOptions),
  );
  const unmatched = [...fresh.pages];
  const writes: Array<Promise<void>> = [];
  for (const [key, url] of missing) {
    const i = matchPage(unmatched, url, missing.length === 1 && fresh.pages.length === 1);
    if (i < 0) continue;
    const [page] = unmatched.splice(i, 1);
    found.set(key, page!);
    const goalText = goal?.trim() ? ` (goal: ${normalizeQuery(goal)})` : "";
    writes.push(c.store(key, page, { operation: "web_visit", input: `${normalizeUrl(url)}${goalText}`, maxResults: null }));
  }
  await Promise.all(writes);
  return { extra: unmatched, failed: fresh.failed };
}

/** web_visit through the cache: cached pages are served, the others visited in one call (replay mode: see cachedProvider). */
function cachedWebVisit(webVisit: WebVisit, c: ProviderCache): WebVisit {
  return async (urls, requestOptions) => {
    const { goal } = requestOptions;
    const describeInput = (url: string) => `${JSON.stringify(url)}${goal?.trim() ? ` with goal ${JSON.stringify(goal.trim())}` : ""}`;
    const lookup = await lookUpPages(c, urls, goal);
    const { requests, found, missing } = lookup;
    const failed: PageFailure[] = [];
    const extra: PageContent[] = [];
    if (c.replay && missing.length) {
      if (!found.size) throw new CacheMissError("web_visit", missing.map(([, url]) => describeInput(url)).join(", "));
      for (const [, url] of missing) failed.push({ url, error: new CacheMissError("web_visit", describeInput(url)).message });
    } else if (missing.length) {
      const fetched = await fetchMissingPages(webVisit, c, lookup, requestOptions);
      extra.push(...fetched.extra);
      failed.push(...fetched.failed);
    }
    const pages = [...requests.keys()].flatMap((key) => (found.has(key) ? [found.get(key)!] : []));
    return { pages: [...pages, ...extra], failed };
  };
}

/**
 * Wraps a provider so each of its calls goes through the cache. Caching is per unit of work —
 * one query, one (URL, goal), one image — so a web_visit of [a, b] with a cached fetches only b.
 *
 * In replay mode a web_visit with some URLs cached returns those pages and lists the others as
 * failed (with the miss message); only when none is cached does it throw CacheMissError.
 * Provider failures (exceptions, pages that could not be read) are never cached.
 */
export function cachedProvider(
  provider: SearchProvider,
  cache: SearchCacheStore,
  mode: CacheMode,
  options: CachedProviderOptions = {},
): SearchProvider {
  if (mode === "live") return provider;
  const c = providerCache(provider.name, cache, mode, options);
  const wrapped: SearchProvider = { name: provider.name };
  if (provider.textSearch) wrapped.textSearch = cachedTextSearch(provider.textSearch.bind(provider), c);
  if (provider.webVisit) wrapped.webVisit = cachedWebVisit(provider.webVisit.bind(provider), c);
  if (provider.imageSearch) wrapped.imageSearch = cachedImageSearch(provider.imageSearch.bind(provider), c);
  return wrapped;
}

/** Which returned page answers a requested URL: the same URL, the same normalised URL, or the only page of a one-URL visit. */
function matchPage(pages: PageContent[], url: string, onlyOne: boolean): number {
  const exact = pages.findIndex((p) => p.url === url);
  if (exact >= 0) return exact;
  const normal = normalizeUrl(url);
  const same = pages.findIndex((p) => normalizeUrl(p.url) === normal);
  if (same >= 0) return same;
  return onlyOne && pages.length === 1 ? 0 : -1;
}

/**
 * A stand-in for a provider that is not configured (no API key), for replay runs: it answers
 * only from the cache under the real provider's name and fails if ever actually called.
 */
export function cacheOnlyProvider(name: string, operations: Array<"textSearch" | "webVisit" | "imageSearch">): SearchProvider {
  const refuse = (): never => {
    throw new Error(`${name} is not configured; only cached results (replay mode) are available`);
  };
  const provider: SearchProvider = { name };
  if (operations.includes("textSearch")) provider.textSearch = async () => refuse();
  if (operations.includes("webVisit")) provider.webVisit = async () => refuse();
  if (operations.includes("imageSearch")) provider.imageSearch = async () => refuse();
  return provider;
}
