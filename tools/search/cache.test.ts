// Tests for the search cache: the four modes, TTL, key normalisation, partial hits, the MMSearch import, and no secrets on disk.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageStore, sha256Hex } from "../../src/core/images.ts";
import {
  CacheMissError,
  SearchCache,
  cacheOnlyProvider,
  cachedProvider,
  normalizeQuery,
  normalizeUrl,
  parseTtl,
  type CacheMode,
} from "./cache.ts";
import { importMmsearchResults, parseMmsearchImageSearchResult, type ImageSearchAnswer } from "./mmsearch-import.ts";
import type { SearchProvider } from "./provider.ts";

const OPTS = { maxResults: 3 };

/** A provider that records its calls; every answer carries a serial number so a refetch is visible. */
function fakeProvider(name = "fake", extra: Record<string, unknown> = {}) {
  const calls = { text: [] as string[], visit: [] as string[][], image: [] as string[] };
  let serial = 0;
  const provider: SearchProvider = {
    name,
    ...extra,
    async textSearch(query, { maxResults }) {
      calls.text.push(query);
      const n = ++serial;
      return {
        hits: Array.from({ length: maxResults }, (_, i) => ({ title: `${query} #${i}`, url: `https://example.com/${i}?q=${encodeURIComponent(query)}`, snippet: `answer ${n}` })),
        images: [{ url: "https://img.example.com/1.jpg", description: "a picture" }],
      };
    },
    async webVisit(urls, { goal }) {
      calls.visit.push(urls);
      const n = ++serial;
      return {
        pages: urls.filter((u) => !u.includes("broken")).map((url) => ({ url, title: `Page ${url}`, text: `text of ${url} toward ${goal ?? "nothing"} (${n})` })),
        failed: urls.filter((u) => u.includes("broken")).map((url) => ({ url, error: "HTTP 500" })),
      };
    },
    async imageSearch(image) {
      calls.image.push(image.sha256);
      const n = ++serial;
      return { hits: [{ title: "Eiffel Tower", url: "https://en.wikipedia.org/wiki/Eiffel_Tower", snippet: `lens ${n}` }] };
    },
  };
  const total = () => calls.text.length + calls.visit.length + calls.image.length;
  return { provider, calls, total };
}

function image(bytes: Buffer) {
  return { bytes, mime: "image/png", sha256: sha256Hex(bytes) };
}

let dir: string;
let path: string;
const open: SearchCache[] = [];

function newCache(options: ConstructorParameters<typeof SearchCache>[1] = {}): SearchCache {
  const cache = new SearchCache(path, options);
  open.push(cache);
  return cache;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "loupe-cache-"));
  path = join(dir, "data", "search-cache.sqlite");
});

afterEach(async () => {
  for (const cache of open.splice(0)) cache.close();
  await rm(dir, { recursive: true, force: true });
});

describe("read-write", () => {
  it("caches a text search: the second call is a hit and the provider is called once", async () => {
    const cache = newCache();
    const { provider, calls } = fakeProvider();
    const search = cachedProvider(provider, cache, "read-write");
    const first = await search.textSearch!("eiffel tower height", OPTS);
    const second = await search.textSearch!("eiffel tower height", OPTS);
    expect(second).toEqual(first);
    expect(calls.text).toEqual(["eiffel tower height"]);
    expect(cache.counters).toEqual({ hits: 1, misses: 1, writes: 1 });
    expect(cache.stats()).toMatchObject({ entries: 1, expired: 0, hits: 1, misses: 1, writes: 1 });
  });

  it("shares one provider call between concurrent identical misses", async () => {
    const { provider, calls } = fakeProvider();
    const search = cachedProvider(provider, newCache(), "read-write");
    const [a, b] = await Promise.all([search.textSearch!("louvre", OPTS), search.textSearch!("louvre", OPTS)]);
    expect(a).toEqual(b);
    expect(calls.text).toHaveLength(1);
  });

  it("serves an answer fetched with more results to a request for fewer, and refetches for more", async () => {
    const cache = newCache();
    const { provider, calls } = fakeProvider();
    const search = cachedProvider(provider, cache, "read-write");
    await search.textSearch!("notre dame", { maxResults: 5 });
    expect((await search.textSearch!("notre dame", { maxResults: 2 })).hits).toHaveLength(2);
    expect(calls.text).toHaveLength(1);
    expect((await search.textSearch!("notre dame", { maxResults: 8 })).hits).toHaveLength(8);
    expect(calls.text).toHaveLength(2);
  });

  it("does not cache provider failures", async () => {
    let attempts = 0;
    const flaky: SearchProvider = {
      name: "flaky",
      async textSearch() {
        if (++attempts === 1) throw new Error("HTTP 503");
        return { hits: [], images: [] };
      },
    };
    const cache = newCache();
    const search = cachedProvider(flaky, cache, "read-write");
    await expect(search.textSearch!("q", OPTS)).rejects.toThrow("HTTP 503");
    await search.textSearch!("q", OPTS);
    await search.textSearch!("q", OPTS);
    expect(attempts).toBe(2);
  });
});

describe("replay", () => {
  it("returns the recorded value with zero provider calls", async () => {
    const recorder = fakeProvider();
    const recorded = await cachedProvider(recorder.provider, newCache(), "read-write").textSearch!("mont blanc", OPTS);
    const replayer = fakeProvider();
    const replayed = await cachedProvider(replayer.provider, newCache(), "replay").textSearch!("mont blanc", OPTS);
    expect(replayed).toEqual(recorded);
    expect(replayer.total()).toBe(0);
  });

  it("turns a miss into a CacheMissError the model can read, with zero provider calls", async () => {
    const { provider, total } = fakeProvider();
    const search = cachedProvider(provider, newCache(), "replay");
    const err = await search.textSearch!("  foo ", OPTS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CacheMissError);
    expect((err as Error).message).toBe('no cached result for text_search "foo" (replay mode: the cache is read-only and makes no network calls)');
    await expect(search.webVisit!(["https://example.com/x"], { goal: "find the date" })).rejects.toThrow(
      'no cached result for web_visit "https://example.com/x" with goal "find the date"',
    );
    await expect(search.imageSearch!(image(Buffer.from("pixels")), OPTS)).rejects.toThrow(/no cached result for image_search of image sha256:[0-9a-f]{12} \(replay mode/);
    expect(total()).toBe(0);
  });
});

describe("record and live", () => {
  it("record always calls the provider and overwrites the entry", async () => {
    const cache = newCache();
    const { provider, calls } = fakeProvider();
    const first = await cachedProvider(provider, cache, "read-write").textSearch!("q", OPTS);
    const rerecorded = await cachedProvider(provider, cache, "record").textSearch!("q", OPTS);
    expect(calls.text).toHaveLength(2);
    expect(rerecorded.hits[0]!.snippet).not.toBe(first.hits[0]!.snippet);
    const after = await cachedProvider(provider, cache, "replay").textSearch!("q", OPTS);
    expect(after).toEqual(rerecorded);
    expect(calls.text).toHaveLength(2);
    expect(cache.stats().entries).toBe(1);
  });

  it("live never touches the cache file", async () => {
    const cache = newCache();
    const { provider, calls } = fakeProvider();
    const search = cachedProvider(provider, cache, "live");
    await search.textSearch!("q", OPTS);
    await search.textSearch!("q", OPTS);
    await search.webVisit!(["https://example.com/a"], {});
    expect(calls.text).toHaveLength(2);
    expect(existsSync(path)).toBe(false);
    expect(cache.counters).toEqual({ hits: 0, misses: 0, writes: 0 });
  });
});

describe("TTL", () => {
  it("treats expired entries as misses, except in replay, which still serves them", async () => {
    let now = 1_000_000;
    const cache = newCache({ ttlMs: 60_000, now: () => now });
    const { provider, calls } = fakeProvider();
    const search = cachedProvider(provider, cache, "read-write");
    await search.textSearch!("q", OPTS);
    now += 59_000;
    await search.textSearch!("q", OPTS);
    expect(calls.text).toHaveLength(1);
    now += 2_000;
    expect(cache.stats().expired).toBe(1);
    const refreshed = await search.textSearch!("q", OPTS);
    expect(calls.text).toHaveLength(2);

    now += 10 * 60_000;
    const replayed = await cachedProvider(provider, cache, "replay").textSearch!("q", OPTS);
    expect(replayed).toEqual(refreshed);
    expect(calls.text).toHaveLength(2);
    expect(cache.prune()).toBe(1);
    expect(cache.stats().entries).toBe(0);
  });

  it("parses TTL settings", () => {
    expect(parseTtl("7d")).toBe(7 * 86_400_000);
    expect(parseTtl("90s")).toBe(90_000);
    expect(parseTtl("1500")).toBe(1500);
    expect(parseTtl("0")).toBeNull();
    expect(parseTtl("never")).toBeNull();
    expect(() => parseTtl("soon")).toThrow(/not a duration/);
  });
});

describe("keys", () => {
  it("normalises queries and URLs so equivalent inputs hit", async () => {
    expect(normalizeQuery("  Eiffel \n  TOWER ")).toBe("eiffel tower");
    expect(normalizeUrl("HTTPS://Example.COM:443/Path?b=2&a=1#section")).toBe("https://example.com/Path?a=1&b=2");
    expect(normalizeUrl("http://example.com:8080/?")).toBe("http://example.com:8080/");

    const { provider, calls } = fakeProvider();
    const search = cachedProvider(provider, newCache(), "read-write");
    await search.textSearch!("Eiffel Tower", OPTS);
    await search.textSearch!("  eiffel   TOWER ", OPTS);
    expect(calls.text).toHaveLength(1);

    await search.webVisit!(["https://example.com/a?x=1&y=2"], { goal: "Opening hours" });
    await search.webVisit!(["HTTPS://EXAMPLE.com:443/a?y=2&x=1#top"], { goal: " opening  hours" });
    expect(calls.visit).toHaveLength(1);
    // Another goal is another answer; the path stays case-sensitive.
    await search.webVisit!(["https://example.com/a?x=1&y=2"], { goal: "ticket prices" });
    await search.webVisit!(["https://example.com/A?x=1&y=2"], { goal: "opening hours" });
    expect(calls.visit).toHaveLength(3);
  });

  it("visits only the URLs not cached yet, and keeps the requested order", async () => {
    const { provider, calls } = fakeProvider();
    const cache = newCache();
    const search = cachedProvider(provider, cache, "read-write");
    await search.webVisit!(["https://a.example/"], { goal: "g" });
    const both = await search.webVisit!(["https://b.example/", "https://a.example/", "https://broken.example/"], { goal: "g" });
    expect(calls.visit).toEqual([["https://a.example/"], ["https://b.example/", "https://broken.example/"]]);
    expect(both.pages.map((p) => p.url)).toEqual(["https://b.example/", "https://a.example/"]);
    expect(both.failed).toEqual([{ url: "https://broken.example/", error: "HTTP 500" }]);

    // Replay: what is cached is served, the rest is reported per URL; nothing cached at all is a miss.
    const replay = cachedProvider(fakeProvider().provider, cache, "replay");
    const partial = await replay.webVisit!(["https://a.example/", "https://c.example/"], { goal: "g" });
    expect(partial.pages.map((p) => p.url)).toEqual(["https://a.example/"]);
    expect(partial.failed).toHaveLength(1);
    expect(partial.failed[0]!.error).toMatch(/^no cached result for web_visit "https:\/\/c.example\/"/);
    await expect(replay.webVisit!(["https://broken.example/"], { goal: "g" })).rejects.toBeInstanceOf(CacheMissError);
  });

  it("keys image searches by the image's sha256", async () => {
    const { provider, calls } = fakeProvider();
    const search = cachedProvider(provider, newCache(), "read-write");
    const first = await search.imageSearch!(image(Buffer.from("same pixels")), OPTS);
    const again = await search.imageSearch!(image(Buffer.from("same pixels")), OPTS);
    expect(again).toEqual(first);
    expect(calls.image).toHaveLength(1);
    await search.imageSearch!(image(Buffer.from("other pixels")), OPTS);
    expect(calls.image).toHaveLength(2);
  });

  it("keeps providers apart", async () => {
    const cache = newCache();
    const tavily = fakeProvider("tavily");
    const searx = fakeProvider("searxng");
    await cachedProvider(tavily.provider, cache, "read-write").textSearch!("q", OPTS);
    await cachedProvider(searx.provider, cache, "read-write").textSearch!("q", OPTS);
    expect(searx.calls.text).toHaveLength(1);
  });
});

describe("MMSearch import", () => {
  it("reads the shapes image_search_result comes in", () => {
    const listed = [{ title: "Eiffel Tower - Wikipedia", link: "https://en.wikipedia.org/wiki/Eiffel_Tower", snippet: "Landmark in Paris", thumbnail: "t.jpg" }];
    const expected = { kind: "hits", hits: [{ title: "Eiffel Tower - Wikipedia", url: "https://en.wikipedia.org/wiki/Eiffel_Tower", snippet: "Landmark in Paris" }] };
    expect(parseMmsearchImageSearchResult(listed)).toEqual(expected);
    expect(parseMmsearchImageSearchResult(JSON.stringify(listed))).toEqual(expected);
    expect(parseMmsearchImageSearchResult({ visual_matches: listed })).toEqual(expected);
    expect(parseMmsearchImageSearchResult({ title: ["Eiffel Tower - Wikipedia"], url: ["https://en.wikipedia.org/wiki/Eiffel_Tower"], snippet: ["Landmark in Paris"] })).toEqual(expected);
    expect(parseMmsearchImageSearchResult([{ source: "Wikipedia", url: "https://w.example/" }])).toEqual({ kind: "hits", hits: [{ title: "Wikipedia", url: "https://w.example/", snippet: "" }] });
    expect(parseMmsearchImageSearchResult(null).kind).toBe("none");
    expect(parseMmsearchImageSearchResult("[not json").kind).toBe("none");
    expect(parseMmsearchImageSearchResult({ bytes: new Uint8Array([0xff, 0xd8, 0xff]), path: null })).toMatchObject({ kind: "screenshot" });
  });

  it("makes a later replay image_search of that image hit, with no provider configured", async () => {
    const cache = newCache({ ttlMs: 1000, now: () => 0 });
    const store = new ImageStore(join(dir, "images"));
    const query = image(Buffer.from("the query image as stored"));
    const other = image(Buffer.from("a second question's image"));
    const screenshotBytes = await sharp({ create: { width: 32, height: 24, channels: 3, background: "#808080" } }).png().toBuffer();
    const summary = await importMmsearchResults(
      cache,
      [
        { imageSha256: query.sha256, results: JSON.stringify([{ title: "Eiffel Tower", link: "https://en.wikipedia.org/wiki/Eiffel_Tower", snippet: "Paris" }]) },
        { imageSha256: other.sha256, results: { bytes: screenshotBytes, path: "lens.png" } },
        { imageSha256: sha256Hex("text-only question"), results: null },
      ],
      "serper-lens",
      { images: store },
    );
    expect(summary).toMatchObject({ imported: 2, screenshots: 1 });
    expect(summary.skipped).toHaveLength(1);

    // Later and past the TTL: imported benchmark data never expires, and serves any maxResults.
    const later = new SearchCache(path, { ttlMs: 1000, now: () => 10_000_000 });
    open.push(later);
    const lens = cachedProvider(cacheOnlyProvider("serper-lens", ["imageSearch"]), later, "read-write");
    const found = await lens.imageSearch!(query, { maxResults: 10 });
    expect(found.hits).toEqual([{ title: "Eiffel Tower", url: "https://en.wikipedia.org/wiki/Eiffel_Tower", snippet: "Paris" }]);

    const replay = cachedProvider(cacheOnlyProvider("serper-lens", ["imageSearch"]), later, "replay");
    const shot = (await replay.imageSearch!(other, OPTS)) as ImageSearchAnswer;
    expect(shot.hits).toEqual([]);
    expect(shot.screenshot).toMatchObject({ sha256: sha256Hex(screenshotBytes), mime: "image/png", width: 32, height: 24 });
    expect(await store.read(shot.screenshot!)).toEqual(screenshotBytes);

    // A crop of the image was never searched by the benchmark: a readable miss, not a call.
    await expect(replay.imageSearch!(image(Buffer.from("a crop")), OPTS)).rejects.toBeInstanceOf(CacheMissError);
  });
});

describe("secrets", () => {
  it("never writes an API key to the database", async () => {
    const SECRET = "tvly-FAKE-SECRET-0123456789";
    const { provider } = fakeProvider("tavily", { options: { apiKey: SECRET }, apiKey: SECRET });
    const echoing: SearchProvider = {
      name: `serpapi-${SECRET}`,
      async textSearch(query) {
        return { hits: [{ title: query, url: `https://serpapi.example/search?api_key=${SECRET}`, snippet: `key ${SECRET}` }], images: [] };
      },
    };
    const cache = newCache();
    for (const mode of ["read-write", "record"] satisfies CacheMode[]) {
      const search = cachedProvider(provider, cache, mode, { secrets: [SECRET] });
      await search.textSearch!("who built the eiffel tower", OPTS);
      await search.webVisit!(["https://example.com/eiffel"], { goal: "architect" });
      await search.imageSearch!(image(Buffer.from("tower")), OPTS);
      await cachedProvider(echoing, cache, mode, { secrets: [SECRET] }).textSearch!(`query with ${SECRET}`, OPTS);
    }
    expect(cache.stats().entries).toBe(4);
    cache.close();
    const files = [path, `${path}-wal`, `${path}-shm`].filter(existsSync);
    const bytes = Buffer.concat(await Promise.all(files.map((f) => readFile(f))));
    expect(bytes.includes("who built the eiffel tower")).toBe(true);
    expect(bytes.includes(SECRET)).toBe(false);
    expect(bytes.includes("FAKE-SECRET")).toBe(false);
  });
});

describe("a cache that fails", () => {
  const broken = { counters: { hits: 0, misses: 0, writes: 0 } as { hits: number; misses: number; writes: number; writeFailures?: number } };
  const failing = {
    ...broken,
    async get(): Promise<undefined> {
      throw new Error("connection terminated");
    },
    async put(): Promise<void> {
      throw new Error("connection terminated");
    },
    close() {},
  };

  it("never loses a paid answer: a failed read is a miss, a failed write is counted and the answer returned", async () => {
    const { provider, calls } = fakeProvider("tavily");
    const cached = cachedProvider(provider, failing, "read-write");
    const answer = await cached.textSearch!("q", OPTS);
    expect(answer.hits).toHaveLength(3);
    expect(calls.text).toEqual(["q"]);
    expect(failing.counters.writeFailures).toBe(1);
  });

  it("in replay mode a failed read is an error (the cache is all there is)", async () => {
    const { provider, calls } = fakeProvider("tavily");
    await expect(cachedProvider(provider, failing, "replay").textSearch!("q", OPTS)).rejects.toThrow("connection terminated");
    expect(calls.text).toEqual([]);
  });
});
