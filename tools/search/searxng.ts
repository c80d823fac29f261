// A self-hosted SearXNG metasearch instance for text_search (LOUPE_SEARXNG_URL, JSON API), so search
// costs nothing per query. SearXNG answers JSON only when `json` is listed in search.formats.
import { SearchProviderError, type SearchProvider } from "./provider.js";
import { requestJson } from "./resilience.js";

export interface SearxngOptions {
  baseUrl: string;
  timeoutMs?: number;
  /** Result language (SearXNG's `language`), e.g. "en". */
  language?: string;
}

export function createSearxngProvider(options: SearxngOptions): SearchProvider {
  const base = options.baseUrl.replace(/\/+$/, "");
  const http = { provider: "searxng", label: "SearXNG", timeoutMs: options.timeoutMs ?? 30_000 };
  return {
    name: "searxng",
    async textSearch(query, { maxResults, signal }) {
      const url = new URL(`${base}/search`);
      url.searchParams.set("q", query);
      url.searchParams.set("format", "json");
      url.searchParams.set("pageno", "1");
      if (options.language) url.searchParams.set("language", options.language);
      let res: Record<string, unknown>;
      try {
        res = (await requestJson(http, url, { headers: { accept: "application/json" }, signal })) as Record<string, unknown>;
      } catch (err) {
        if (err instanceof SearchProviderError && err.status === 403) {
          throw new SearchProviderError("searxng", `SearXNG at ${base} refused JSON output (HTTP 403); add "json" to search.formats in its settings.yml`, 403, "auth");
        }
        throw err;
      }
      const results = Array.isArray(res.results) ? (res.results as Array<Record<string, unknown>>) : [];
      const text = (v: unknown) => (typeof v === "string" ? v : "");
      const hits = results
        .filter((r) => text(r.url))
        .slice(0, maxResults)
        .map((r) => ({ title: text(r.title) || text(r.url), url: text(r.url), snippet: text(r.content) }));
      const images = results
        .filter((r) => /^https?:\/\//.test(text(r.img_src)))
        .slice(0, 5)
        .map((r) => ({ url: text(r.img_src), description: text(r.title) || undefined }));
      return { hits, images };
    },
  };
}
