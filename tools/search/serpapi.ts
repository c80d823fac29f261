// SerpAPI's google_lens engine for image_search (SERPAPI_API_KEY, LOUPE_SERPAPI_URL).
import type { SearchProvider } from "./provider.js";
import { requestJson } from "./resilience.js";
import { lensMatches, noPublicUrlError, type PublicImageUrl } from "./serper.js";

export const SERPAPI_DEFAULT_URL = "https://serpapi.com";

export interface SerpApiOptions {
  apiKey: string;
  baseUrl?: string;
  timeoutMs?: number;
  publicImageUrl?: PublicImageUrl;
  hl?: string;
  country?: string;
}

export function createSerpApiLensProvider(options: SerpApiOptions): SearchProvider {
  const base = (options.baseUrl ?? SERPAPI_DEFAULT_URL).replace(/\/+$/, "");
  return {
    name: "serpapi-lens",
    async imageSearch(image, { maxResults, signal }) {
      if (!options.publicImageUrl) throw noPublicUrlError("serpapi-lens");
      const url = new URL(`${base}/search.json`);
      url.searchParams.set("engine", "google_lens");
      url.searchParams.set("url", options.publicImageUrl(image));
      if (options.hl) url.searchParams.set("hl", options.hl);
      if (options.country) url.searchParams.set("country", options.country);
      url.searchParams.set("api_key", options.apiKey);
      const res = (await requestJson(
        { provider: "serpapi-lens", label: "SerpAPI", keyVariable: "SERPAPI_API_KEY", secrets: [options.apiKey], timeoutMs: options.timeoutMs ?? 30_000 },
        url,
        { headers: { accept: "application/json" }, signal },
      )) as Record<string, unknown>;
      // SerpAPI reports "no results" as a 200 with an `error` string and no matches.
      const matches = Array.isArray(res.visual_matches) ? (res.visual_matches as Array<Record<string, unknown>>) : [];
      return lensMatches(matches, maxResults);
    },
  };
}
