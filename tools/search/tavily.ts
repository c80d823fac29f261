// Tavily search provider (@tavily/core): text search with related images, and extract for web_visit.
import type { TavilyClient } from "@tavily/core";
import { SearchProviderError, type PageContent, type PageFailure, type SearchProvider } from "./provider.js";

export interface TavilyOptions {
  apiKey: string;
  /** Base URL override (LOUPE_TAVILY_URL), e.g. a proxy or a test server. */
  baseUrl?: string;
  timeoutSeconds?: number;
}

function describe(err: unknown, apiKey: string): SearchProviderError {
  const e = err as { message?: string; response?: { status?: number }; status?: number };
  const status = e?.response?.status ?? e?.status;
  let message = (e?.message ?? String(err)).split("\n")[0]!.replaceAll(apiKey, "***");
  if (status === 401 || status === 403 || /unauthori[sz]ed|invalid api key/i.test(message)) {
    message = `Tavily refused the API key (HTTP ${status ?? 401}); set a valid TAVILY_API_KEY`;
  } else if (status === 429) {
    message = "Tavily rate limit reached (HTTP 429); try again later";
  }
  return new SearchProviderError("tavily", message, status);
}

export function createTavilyProvider(options: TavilyOptions): SearchProvider {
  // @tavily/core is loaded on the first call: it brings axios and js-tiktoken's rank tables (megabytes
  // of JavaScript), which every `loupe ask` would otherwise load, search or not.
  let loaded: Promise<TavilyClient> | undefined;
  const client = () =>
    (loaded ??= import("@tavily/core").then(({ tavily }) => tavily({ apiKey: options.apiKey, apiBaseURL: options.baseUrl?.replace(/\/+$/, "") })));
  const timeout = options.timeoutSeconds ?? 30;
  return {
    name: "tavily",
    async textSearch(query, { maxResults }) {
      try {
        const res = await (await client()).search(query, {
          maxResults,
          includeImages: true,
          includeImageDescriptions: true,
          timeout,
        });
        return {
          hits: (res.results ?? []).map((r) => ({ title: r.title ?? r.url, url: r.url, snippet: r.content ?? "" })),
          images: (res.images ?? []).map((img) =>
            typeof img === "string" ? { url: img } : { url: img.url, description: img.description },
          ),
        };
      } catch (err) {
        throw describe(err, options.apiKey);
      }
    },
    async webVisit(urls) {
      try {
        const res = await (await client()).extract(urls, { timeout });
        const pages: PageContent[] = (res.results ?? []).map((r) => ({ url: r.url, text: r.rawContent ?? "" }));
        const failed: PageFailure[] = (res.failedResults ?? []).map((f) => ({ url: f.url, error: f.error ?? "could not be read" }));
        return { pages, failed };
      } catch (err) {
        throw describe(err, options.apiKey);
      }
    },
  };
}
