// The SearchProvider port: what every search backend (tools/search/) implements and the nodes call.
import type { ImageMime } from "./state.js";

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
  mime: ImageMime;
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
