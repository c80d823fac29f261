// Serper, SerpAPI and SearXNG against loopback fakes of their real APIs: request formats, results,
// and what 401/403, 429, 5xx, timeouts and empty answers turn into.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageRouteSecret } from "../../src/core/image-urls.js";
import { createImageRoute, serveImageRoute } from "../../src/server/image-route.js";
import { ImageStore, type StoredImage } from "../../src/core/images.js";
import {
  FAKE_SERPAPI_API_KEY,
  FAKE_SERPER_API_KEY,
  startFakeSearxng,
  startFakeSerpApi,
  startFakeSerper,
  type FakeSearchServer,
} from "../../test/fixtures/fake-search-servers.js";
import { SearchProviderError, type SearchProvider } from "./provider.js";
import { resilientProvider } from "./resilience.js";
import { createSearxngProvider } from "./searxng.js";
import { createSerpApiLensProvider } from "./serpapi.js";
import { createSerperProviders } from "./serper.js";

let dir: string;
let store: ImageStore;
let image: StoredImage;
let bytes: Buffer;
let route: ReturnType<typeof createImageRoute>;
let routeServer: Awaited<ReturnType<typeof serveImageRoute>>;
const servers: FakeSearchServer[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "loupe-providers-"));
  store = new ImageStore(join(dir, "images"));
  bytes = await sharp({ create: { width: 64, height: 48, channels: 3, background: "#3366aa" } }).png().toBuffer();
  image = await store.put(bytes);
  route = createImageRoute({ store, secret: imageRouteSecret(dir) });
  routeServer = await serveImageRoute(route, { port: 0 });
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await routeServer.close();
  await rm(dir, { recursive: true, force: true });
});

async function track(server: Promise<FakeSearchServer>): Promise<FakeSearchServer> {
  const s = await server;
  servers.push(s);
  return s;
}

const publicImageUrl = (img: { sha256: string; mime: string }) => route.urlFor(img as StoredImage, routeServer.url);
const imageArg = () => ({ bytes, mime: image.mime, sha256: image.sha256 });
const fast = { retries: 2, retryBaseMs: 5, ratePerSecond: 1000, concurrency: 4 };

function serper(url: string, apiKey = FAKE_SERPER_API_KEY, timeoutMs = 5000) {
  const [text, lens] = createSerperProviders({ apiKey, baseUrl: url, publicImageUrl, timeoutMs });
  return { text: resilientProvider(text!, fast), lens: resilientProvider(lens!, fast) };
}

async function failure(p: Promise<unknown>): Promise<SearchProviderError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SearchProviderError);
  return err as SearchProviderError;
}

describe("Serper", () => {
  it("text search posts {q, num} with the key in X-API-KEY and returns organic results and images", async () => {
    const server = await track(
      startFakeSerper({ search: { "eiffel tower height": [{ title: "Eiffel Tower", link: "https://en.wikipedia.org/wiki/Eiffel_Tower", snippet: "330 m tall" }] } }),
    );
    const { text } = serper(server.url);
    const res = await text.textSearch!("eiffel tower height", { maxResults: 3 });
    expect(res.hits).toEqual([{ title: "Eiffel Tower", url: "https://en.wikipedia.org/wiki/Eiffel_Tower", snippet: "330 m tall" }]);
    const req = server.requests[0]!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe("/search");
    expect(req.headers["x-api-key"]).toBe(FAKE_SERPER_API_KEY);
    expect(req.headers["content-type"]).toContain("application/json");
    expect(req.body).toEqual({ q: "eiffel tower height", num: 3 });
  });

  it("Lens posts {url} with a signed public URL of the image, which the service can download", async () => {
    const server = await track(startFakeSerper({ lens: { [image.sha256]: [{ title: "Blue square", link: "https://example.com/blue", imageUrl: "https://example.com/blue.png" }] } }));
    const { lens } = serper(server.url);
    const res = await lens.imageSearch!(imageArg(), { maxResults: 5 });
    expect(res.hits).toEqual([{ title: "Blue square", url: "https://example.com/blue", snippet: "Source: example.com" }]);
    expect(res.images).toEqual([{ url: "https://example.com/blue.png", description: "Blue square" }]);
    const req = server.requests[0]!;
    expect(req.path).toBe("/lens");
    expect(Object.keys(req.body)).toEqual(["url"]);
    expect(req.body.url).toBe(route.urlFor(image, routeServer.url));
    expect(req.body.url).toMatch(new RegExp(`/images/${image.sha256}-[0-9a-f]{32}\\.png$`));
    expect(server.imageFetches).toEqual([expect.objectContaining({ ok: true, contentType: "image/png", sha256: image.sha256 })]);
  });

  it("a wrong key fails at once (no retry) naming SERPER_API_KEY, without the key in the message", async () => {
    const server = await track(startFakeSerper());
    const { text } = serper(server.url, "wrong-key-abcdef");
    const err = await failure(text.textSearch!("q", { maxResults: 3 }));
    expect(err.message).toMatch(/Serper refused the request \(HTTP 403.*set a valid SERPER_API_KEY/);
    expect(err.message).not.toContain("wrong-key-abcdef");
    expect(server.requests).toHaveLength(1);
  });

  it("429 and 5xx are retried with backoff, then succeed", async () => {
    const server = await track(
      startFakeSerper({
        search: { q: [{ title: "T", link: "https://t.example/", snippet: "s" }] },
        fault: (_path, i) => (i === 0 ? { status: 429, headers: { "retry-after": "0" } } : i === 1 ? { status: 503 } : undefined),
      }),
    );
    const { text } = serper(server.url);
    const res = await text.textSearch!("q", { maxResults: 3 });
    expect(res.hits).toHaveLength(1);
    expect(server.requests).toHaveLength(3);
  });

  it("a 429 that persists fails after the retries with a rate-limit message", async () => {
    const server = await track(startFakeSerper({ fault: () => ({ status: 429 }) }));
    const err = await failure(serper(server.url).text.textSearch!("q", { maxResults: 3 }));
    expect(err.message).toMatch(/rate limit reached \(HTTP 429\)/);
    expect(server.requests).toHaveLength(1 + fast.retries);
  });

  it("a provider that does not answer times out (not retried) with a message the model can act on", async () => {
    const server = await track(startFakeSerper({ fault: () => "hang" }));
    const started = Date.now();
    const err = await failure(serper(server.url, FAKE_SERPER_API_KEY, 300).text.textSearch!("q", { maxResults: 3 }));
    expect(err.message).toMatch(/^Serper did not answer within 300 ms \(http:\/\/127\.0\.0\.1:\d+\); try again later/);
    expect(err.kind).toBe("timeout");
    expect(server.requests).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("empty results are an empty list, not an error", async () => {
    const server = await track(startFakeSerper());
    const { text, lens } = serper(server.url);
    expect(await text.textSearch!("nothing here", { maxResults: 3 })).toEqual({ hits: [], images: [] });
    expect((await lens.imageSearch!(imageArg(), { maxResults: 3 })).hits).toEqual([]);
  });

  it("without a public image base URL, Lens says which variable to set", async () => {
    const server = await track(startFakeSerper());
    const [, lens] = createSerperProviders({ apiKey: FAKE_SERPER_API_KEY, baseUrl: server.url });
    const err = await failure(lens!.imageSearch!(imageArg(), { maxResults: 3 }));
    expect(err.message).toContain("LOUPE_PUBLIC_IMAGE_BASE_URL");
    expect(server.requests).toHaveLength(0);
  });
});

describe("SerpAPI google_lens", () => {
  function serpapi(url: string, apiKey = FAKE_SERPAPI_API_KEY) {
    return resilientProvider(createSerpApiLensProvider({ apiKey, baseUrl: url, publicImageUrl, timeoutMs: 5000 }), fast);
  }

  it("GETs /search.json with engine=google_lens, the image URL and api_key, and reads visual_matches", async () => {
    const server = await track(startFakeSerpApi({ lens: { "*": [{ title: "Match", link: "https://m.example/page", source: "M", imageUrl: "https://m.example/i.jpg" }] } }));
    const res = await serpapi(server.url).imageSearch!(imageArg(), { maxResults: 5 });
    expect(res.hits).toEqual([{ title: "Match", url: "https://m.example/page", snippet: "Source: M" }]);
    const req = server.requests[0]!;
    expect(req.method).toBe("GET");
    expect(req.path).toBe("/search.json");
    expect(server.imageFetches[0]).toEqual(expect.objectContaining({ ok: true, sha256: image.sha256 }));
  });

  it("no matches (a 200 with an error string) is an empty result", async () => {
    const server = await track(startFakeSerpApi());
    expect((await serpapi(server.url).imageSearch!(imageArg(), { maxResults: 5 })).hits).toEqual([]);
  });

  it("a wrong key fails at once naming SERPAPI_API_KEY; the key in the query string never reaches the message", async () => {
    const server = await track(startFakeSerpApi());
    const err = await failure(serpapi(server.url, "bad-serpapi-key-123").imageSearch!(imageArg(), { maxResults: 5 }));
    expect(err.message).toMatch(/SerpAPI refused the request \(HTTP 401.*set a valid SERPAPI_API_KEY/);
    expect(err.message).not.toContain("bad-serpapi-key-123");
    expect(server.requests).toHaveLength(1);
  });

  it("5xx is retried", async () => {
    const server = await track(startFakeSerpApi({ lens: { "*": [{ title: "M", link: "https://m.example/" }] }, fault: (_p, i) => (i < 2 ? { status: 502 } : undefined) }));
    expect((await serpapi(server.url).imageSearch!(imageArg(), { maxResults: 5 })).hits).toHaveLength(1);
    expect(server.requests).toHaveLength(3);
  });
});

describe("SearXNG", () => {
  it("GETs /search?q=…&format=json and reads results", async () => {
    const server = await track(startFakeSearxng({ search: { "loupe agent": [{ title: "Loupe", link: "https://loupe.example/", snippet: "An agent" }] } }));
    const provider = createSearxngProvider({ baseUrl: server.url, timeoutMs: 5000 });
    const res = await provider.textSearch!("loupe agent", { maxResults: 5 });
    expect(res.hits).toEqual([{ title: "Loupe", url: "https://loupe.example/", snippet: "An agent" }]);
    expect(server.requests[0]!.method).toBe("GET");
    expect(server.requests[0]!.path).toBe("/search");
    expect(server.requests[0]!.headers.accept).toBe("application/json");
  });

  it("JSON output disabled (403) says how to enable it", async () => {
    const server = await track(startFakeSearxng({ jsonEnabled: false }));
    const err = await failure(createSearxngProvider({ baseUrl: server.url }).textSearch!("x", { maxResults: 5 }));
    expect(err.message).toContain('add "json" to search.formats');
  });

  it("an unreachable instance is an error naming it, not a crash", async () => {
    const server = await startFakeSearxng();
    await server.close();
    const err = await failure(createSearxngProvider({ baseUrl: server.url }).textSearch!("x", { maxResults: 5 }));
    expect(err.message).toMatch(/SearXNG could not be reached at http:\/\/127\.0\.0\.1:\d+/);
  });
});

describe("resilientProvider", () => {
  it("keeps at most `concurrency` calls in flight and spaces their starts by the rate limit", async () => {
    let inFlight = 0;
    let peak = 0;
    const starts: number[] = [];
    const slow: SearchProvider = {
      name: "slow",
      async textSearch() {
        starts.push(performance.now());
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 30));
        inFlight--;
        return { hits: [], images: [] };
      },
    };
    const limited = resilientProvider(slow, { concurrency: 2, ratePerSecond: 50 });
    await Promise.all(Array.from({ length: 6 }, (_, i) => limited.textSearch!(`q${i}`, { maxResults: 1 })));
    expect(peak).toBe(2);
    expect(starts).toHaveLength(6);
    // 50/s: starts at least ~20 ms apart (timers may fire a little early; never much).
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(15);
  });
});

describe("image route", () => {
  it("serves an image at its signed URL and refuses a forged or unknown one", async () => {
    const good = await fetch(route.urlFor(image, routeServer.url));
    expect(good.status).toBe(200);
    expect(good.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await good.arrayBuffer()).equals(bytes)).toBe(true);
    const forged = route.urlFor(image, routeServer.url).replace(/-[0-9a-f]{32}\./, `-${"0".repeat(32)}.`);
    expect((await fetch(forged)).status).toBe(404);
    expect((await fetch(`${routeServer.url}/images/${image.sha256}.png`)).status).toBe(404);
    expect((await fetch(`${routeServer.url}/elsewhere`)).status).toBe(404);
    const other = createImageRoute({ store, secret: "another-secret-0123456789" });
    expect((await fetch(other.urlFor(image, routeServer.url))).status).toBe(404);
  });
});
