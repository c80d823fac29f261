// The SearchProvider interface every search backend implements, and the search tools' argument contract.
import { z } from "zod/v4";

export interface SearchHit {
  title: string;
  url: string;
  snippet: string;
}

export interface RelatedImage {
  url: string;
  description?: string;
}

/** A search result given as a picture of the results page (MMSearch ships Lens results so), held in the image store. */
export interface ResultScreenshot {
  sha256: string;
  mime: "image/jpeg" | "image/png" | "image/webp" | "image/gif";
  width: number;
  height: number;
}

export interface PageContent {
  url: string;
  title?: string;
  text: string;
  /** The URL was an image (a related image, a Lens thumbnail): its bytes, to become a new image the model can look at. */
  image?: { base64: string; mime: string };
}

export interface PageFailure {
  url: string;
  error: string;
}

export interface SearchRequestOptions {
  maxResults: number;
  signal?: AbortSignal;
}

/** A search backend. Each operation is optional: a provider declares what it can do. */
export interface SearchProvider {
  readonly name: string;
  textSearch?(query: string, options: SearchRequestOptions): Promise<{ hits: SearchHit[]; images: RelatedImage[] }>;
  webVisit?(urls: string[], options: { goal?: string; signal?: AbortSignal }): Promise<{ pages: PageContent[]; failed: PageFailure[] }>;
  imageSearch?(image: { bytes: Buffer; mime: string; sha256: string }, options: SearchRequestOptions): Promise<{ hits: SearchHit[]; images?: RelatedImage[]; screenshot?: ResultScreenshot }>;
}

/** A provider failed for a reason the model cannot fix (auth, quota, outage); shown to it as an error observation. */
export class SearchProviderError extends Error {
  readonly provider: string;
  readonly status?: number;
  /** What kind of failure: decides whether it is retried (rate, server, network) or not (auth, request, timeout). */
  readonly kind?: "auth" | "rate" | "server" | "network" | "timeout" | "request" | "config";
  /** A 429's Retry-After, in ms. */
  readonly retryAfterMs?: number;
  constructor(provider: string, message: string, status?: number, kind?: SearchProviderError["kind"], retryAfterMs?: number) {
    super(message);
    this.name = "SearchProviderError";
    this.provider = provider;
    this.status = status;
    this.kind = kind;
    this.retryAfterMs = retryAfterMs;
  }
}

export const searchToolSchemas = {
  text_search: z.object({
    queries: z.array(z.string().min(1)).min(1).max(5).describe("One to five search queries"),
  }),
  web_visit: z.object({
    urls: z.array(z.string().url()).min(1).max(5).describe("One to five page URLs to read"),
    goal: z.string().optional().describe("What you want to learn from the pages"),
  }),
  image_search: z.object({
    image_paths: z.array(z.string()).min(1).max(3).describe("Image ids to reverse-search, e.g. [\"img_0\"] or a crop [\"img_3\"]"),
  }),
} as const;
export type SearchToolName = keyof typeof searchToolSchemas;
export const SEARCH_TOOL_NAMES = Object.keys(searchToolSchemas) as SearchToolName[];

const DESCRIPTIONS: Record<SearchToolName, string> = {
  text_search: "Search the web. Returns numbered results with title, URL and snippet, and related images.",
  web_visit: "Read web pages. Returns the readable text of each page (with its URL, for citing); give a goal to focus on what you need. An image URL (a related image or a reverse-search match) is fetched as a new image you can look at and crop.",
  image_search: "Reverse image search: find web pages that contain an image or a crop of it (e.g. to identify a landmark, product or person).",
};

export function searchToolSpecs(names: SearchToolName[]) {
  return names.map((name) => {
    const { $schema: _ignored, ...parameters } = z.toJSONSchema(searchToolSchemas[name]) as Record<string, unknown>;
    return { name, description: DESCRIPTIONS[name], parameters };
  });
}

/** The search tools a set of providers can serve; with none, the model is not offered search at all. */
export function availableSearchTools(providers: SearchProvider[]): SearchToolName[] {
  const names: SearchToolName[] = [];
  if (providers.some((p) => p.textSearch)) names.push("text_search");
  if (providers.some((p) => p.webVisit)) names.push("web_visit");
  if (providers.some((p) => p.imageSearch)) names.push("image_search");
  return names;
}
