// The search node on its own: text_search, web_visit and image_search through fake providers, and the errors the model reads.
import { describe, expect, it } from "vitest";
import { SearchProviderError, type SearchHit, type SearchProvider } from "../src/core/search-provider.js";
import type { ImageRef, PendingCall } from "../src/core/state.js";
import { createSearchNode } from "./search.js";
import { halfBlankPng, nodeFixture, pendingCall, storedInput, type NodeFixture, type NodeFixtureOptions } from "../test/node-fakes.js";

const hit = (n: number, snippet = `snippet ${n}`): SearchHit => ({ title: `Title ${n}`, url: `https://r${n}.example/`, snippet });

/** A provider that answers text searches from a table, recording what it was asked. */
function textProvider(name: string, answers: Record<string, SearchHit[] | Error>, asked: Array<{ query: string; maxResults: number }> = []): SearchProvider {
  return {
    name,
    textSearch: async (query, options) => {
      asked.push({ query, maxResults: options.maxResults });
      const answer = answers[query];
      if (answer instanceof Error) throw answer;
      return { hits: answer ?? [], images: [] };
    },
  };
}

async function runSearch(options: NodeFixtureOptions, call: PendingCall, images: (f: NodeFixture) => Promise<ImageRef[]> = async () => []) {
  const f = await nodeFixture(options);
  const update = await createSearchNode(f.deps)({ call, images: await images(f) }, f.config);
  expect(update.results).toHaveLength(1);
  return { f, result: update.results[0]! };
}

const textSearch = (...queries: string[]) => pendingCall("s1", "text_search", { queries }, "search");

describe("search: text_search", () => {
  it("numbers the results across queries, each URL once, with related images, and keeps the URLs for citing", async () => {
    const asked: Array<{ query: string; maxResults: number }> = [];
    const provider: SearchProvider = {
      name: "fake",
      textSearch: async (query, options) => {
        asked.push({ query, maxResults: options.maxResults });
        return query === "harbour sign"
          ? { hits: [hit(1, "  a   blue\nsign "), hit(2, "")], images: [{ url: "https://img.example/1.jpg", description: "the sign" }] }
          : { hits: [hit(2), hit(3)], images: [] };
      },
    };
    const { result } = await runSearch({ search: [provider], context: { searchMaxResults: 3 } }, textSearch("harbour sign", "harbour office"));
    expect(asked).toEqual([
      { query: "harbour sign", maxResults: 3 },
      { query: "harbour office", maxResults: 3 },
    ]);
    expect(result).toMatchObject({ callId: "s1", ok: true, resultCount: 3, images: [] });
    expect(result.text).toBe(
      [
        'Results for "harbour sign":',
        "[1] Title 1\nhttps://r1.example/\na blue sign",
        "",
        "[2] Title 2\nhttps://r2.example/",
        "",
        "Related image: https://img.example/1.jpg — the sign",
        "",
        'Results for "harbour office":',
        "[3] Title 3\nhttps://r3.example/\nsnippet 3",
      ].join("\n"),
    );
    expect(result.urls).toEqual([1, 2, 3].map((n) => ({ url: `https://r${n}.example/`, title: `Title ${n}` })));
  });

  it("merges every provider's answers in provider order", async () => {
    const { result } = await runSearch({ search: [textProvider("a", { q: [hit(1)] }), textProvider("b", { q: [hit(2), hit(1)] })] }, textSearch("q"));
    expect(result.urls.map((u) => u.url)).toEqual(["https://r1.example/", "https://r2.example/"]);
    expect(result.resultCount).toBe(2);
  });

  it("a search with no hits says so and counts zero results", async () => {
    const { result } = await runSearch({ search: [textProvider("a", {})] }, textSearch("nothing"));
    expect(result).toMatchObject({ ok: true, resultCount: 0, text: 'Results for "nothing":\n(no results)', urls: [] });
  });

  it("a failing provider is an error observation the model reads", async () => {
    const { f, result } = await runSearch({ search: [textProvider("a", { q: new SearchProviderError("a", "quota exceeded", 429, "rate") })] }, textSearch("q"));
    expect(result).toMatchObject({ callId: "s1", ok: false, text: "Error: text_search failed: quota exceeded", images: [], urls: [] });
    expect(f.events.at(-1)).toMatchObject({ event: "tool_end", ok: false, summary: "Error: text_search failed: quota exceeded" });
  });

  it("one failing query does not discard the others", async () => {
    const { result } = await runSearch({ search: [textProvider("a", { good: [hit(1)], bad: new Error("timeout") })] }, textSearch("bad", "good"));
    expect(result.ok).toBe(true);
    expect(result.text).toBe('Results for "bad": failed: timeout\n\nResults for "good":\n[1] Title 1\nhttps://r1.example/\nsnippet 1');
  });

  it("trims the observation to observationChars", async () => {
    const long = Array.from({ length: 20 }, (_, i) => hit(i + 1, "x".repeat(100)));
    const { result } = await runSearch({ search: [textProvider("a", { q: long })], context: { observationChars: 300 } }, textSearch("q"));
    expect(result.text).toHaveLength(300 + "… [truncated]".length);
    expect(result.text.endsWith("… [truncated]")).toBe(true);
    expect(result.resultCount).toBe(20);
  });

  it("without a provider that can search, says how to configure one", async () => {
    const { result } = await runSearch({ search: [{ name: "reader", webVisit: async () => ({ pages: [], failed: [] }) }] }, textSearch("q"));
    expect(result.text).toBe("Error: text_search failed: text_search is not configured: set TAVILY_API_KEY or build a local index with loupe index DIR");
  });

  it("emits tool_start and tool_end with the number of results", async () => {
    const { f } = await runSearch({ search: [textProvider("a", { q: [hit(1), hit(2)] })] }, textSearch("q"));
    expect(f.events.map((e) => e.event)).toEqual(["tool_start", "tool_end"]);
    expect(f.events[0]).toEqual({ event: "tool_start", callId: "s1", name: "text_search", arguments: { queries: ["q"] } });
    expect(f.events[1]).toMatchObject({ event: "tool_end", callId: "s1", name: "text_search", ok: true, summary: "2 results" });
  });
});

describe("search: web_visit", () => {
  it("shows each page's text with its URL, lists the pages that failed, and stores an image URL as a new image", async () => {
    const png = await halfBlankPng();
    const provider: SearchProvider = {
      name: "web",
      webVisit: async (urls) => ({
        pages: [
          { url: urls[0]!, title: "Office", text: "  Open 9 to 5.  " },
          { url: urls[1]!, text: "", image: { base64: png.toString("base64"), mime: "image/png" } },
        ],
        failed: [{ url: urls[2]!, error: "HTTP 404" }],
      }),
    };
    const call = pendingCall("w1", "web_visit", { urls: ["https://a.example/", "https://img.example/sign.png", "https://gone.example/"], goal: "opening hours" }, "search");
    const { f, result } = await runSearch({ search: [provider] }, call);
    const stored = await f.store.ingest(png);
    expect(result.text).toBe(
      "Goal: opening hours\nPage: https://a.example/\nTitle: Office\nOpen 9 to 5.\n\nImage: https://img.example/sign.png (400×300, shown below as a new image)\n\nCould not read https://gone.example/: HTTP 404",
    );
    expect(result.images).toEqual([{ ...stored, parent: null, op: "fetched from https://img.example/sign.png" }]);
    expect(result.urls).toEqual([{ url: "https://a.example/", title: "Office" }, { url: "https://img.example/sign.png", title: undefined }]);
    expect(result.resultCount).toBe(2);
  });
});

describe("search: image_search", () => {
  const imageSearch = pendingCall("i1", "image_search", { image_paths: ["img_0"] }, "search");

  it("hands the image's bytes to the first provider that answers", async () => {
    const seen: Buffer[] = [];
    const failing: SearchProvider = {
      name: "lens-a",
      imageSearch: async () => {
        throw new SearchProviderError("lens-a", "no public URL for images", undefined, "config");
      },
    };
    const answering: SearchProvider = {
      name: "lens-b",
      imageSearch: async (image) => {
        seen.push(image.bytes);
        return { hits: [hit(1)] };
      },
    };
    const { result } = await runSearch({ search: [failing, answering] }, imageSearch, async (f) => [await storedInput(f)]);
    expect(seen).toEqual([await halfBlankPng()]);
    expect(result).toMatchObject({ ok: true, resultCount: 1, text: "Matches for img_0:\n[1] Title 1\nhttps://r1.example/\nsnippet 1" });
  });

  it("when every provider fails, the error names each failure", async () => {
    const failing = (name: string): SearchProvider => ({
      name,
      imageSearch: async () => {
        throw new Error(`${name} is down`);
      },
    });
    const { result } = await runSearch({ search: [failing("a"), failing("b")] }, imageSearch, async (f) => [await storedInput(f)]);
    expect(result).toMatchObject({ ok: false, text: "Error: image_search failed: a is down; b is down" });
  });

  it("with no provider able to do it, an error observation says how to configure one", async () => {
    const { result } = await runSearch({ search: [textProvider("a", {})] }, imageSearch, async (f) => [await storedInput(f)]);
    expect(result).toMatchObject({
      ok: false,
      text: "Error: image_search failed: image_search is not configured: set SERPER_API_KEY or SERPAPI_API_KEY (with LOUPE_PUBLIC_IMAGE_BASE_URL)",
      images: [],
    });
  });
});
