// Serper (google.serper.dev): Google web search for text_search and Google Lens for image_search
// (what R1V4 used). Lens fetches the image from a URL, so sub-images are served at signed public URLs.
import type { RelatedImage, SearchHit, SearchProvider } from "./provider.js";
import { SearchProviderError } from "./provider.js";
import { requestJson, type ProviderHttpOptions } from "./resilience.js";

export const SERPER_DEFAULT_URL = "https://google.serper.dev";

/** Where a Lens API can fetch an image from; throws a SearchProviderError when no public URL is configured. */
export type PublicImageUrl = (image: { sha256: string; mime: string }) => string;

export interface SerperOptions {
  apiKey: string;
  /** Base URL override (LOUPE_SERPER_URL). */
  baseUrl?: string;
  timeoutMs?: number;
  /** Where Lens fetches an image; without it, image_search answers with how to configure one. */
  publicImageUrl?: PublicImageUrl;
  /** Country and language of results (Serper's gl and hl). */
  gl?: string;
  hl?: string;
}

type Json = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === "string" ? v : "");
const rows = (v: unknown): Json[] => (Array.isArray(v) ? (v.filter((r) => r && typeof r === "object") as Json[]) : []);

/** Visual matches of a Lens answer as hits (title, page URL, source) and their images. */
export function lensMatches(items: Json[], maxResults: number): { hits: SearchHit[]; images: RelatedImage[] } {
  const usable = items.filter((m) => str(m.link)).slice(0, maxResults);
  return {
    hits: usable.map((m) => ({
      title: str(m.title) || str(m.link),
      url: str(m.link),
      snippet: str(m.source) ? `Source: ${str(m.source)}` : "",
    })),
    images: usable
      .map((m) => ({ url: str(m.imageUrl) || str(m.image) || str(m.thumbnailUrl) || str(m.thumbnail), description: str(m.title) || undefined }))
      .filter((i) => /^https?:\/\//.test(i.url)),
  };
}

export function createSerperProviders(options: SerperOptions): SearchProvider[] {
  const base = (options.baseUrl ?? SERPER_DEFAULT_URL).replace(/\/+$/, "");
  const http = (provider: string): ProviderHttpOptions => ({
    provider,
    label: "Serper",
    keyVariable: "SERPER_API_KEY",
    secrets: [options.apiKey],
    timeoutMs: options.timeoutMs ?? 30_000,
  });
  const post = (provider: string, path: string, body: Json, signal?: AbortSignal) =>
    requestJson(http(provider), `${base}${path}`, {
      method: "POST",
      headers: { "x-api-key": options.apiKey, "content-type": "application/json" },
      body: JSON.stringify({ ...body, ...(options.gl ? { gl: options.gl } : {}), ...(options.hl ? { hl: options.hl } : {}) }),
      signal,
    }) as Promise<Json>;

  const text: SearchProvider = {
    name: "serper",
    async textSearch(query, { maxResults, signal }) {
      const res = await post("serper", "/search", { q: query, num: maxResults }, signal);
      const hits = rows(res.organic)
        .filter((r) => str(r.link))
        .slice(0, maxResults)
        .map((r) => ({ title: str(r.title) || str(r.link), url: str(r.link), snippet: str(r.snippet) }));
      const images = rows(res.images)
        .map((i) => ({ url: str(i.imageUrl), description: str(i.title) || undefined }))
        .filter((i) => i.url);
      return { hits, images };
    },
  };
  const lens: SearchProvider = {
    name: "serper-lens",
    async imageSearch(image, { maxResults, signal }) {
      if (!options.publicImageUrl) throw noPublicUrlError("serper-lens");
      const res = await post("serper-lens", "/lens", { url: options.publicImageUrl(image) }, signal);
      return lensMatches(rows(res.organic ?? res.visual_matches ?? res.visualMatches), maxResults);
    },
  };
  return [text, lens];
}

/** The error image_search gives when a Lens provider has a key but no public URL to send. */
export function noPublicUrlError(provider: string): SearchProviderError {
  return new SearchProviderError(
    provider,
    "reverse image search needs a public URL for the image: set LOUPE_PUBLIC_IMAGE_BASE_URL to where `loupe serve-images` is reachable from the internet",
    undefined,
    "config",
  );
}
