// Imports MMSearch's benchmark-provided reverse image search results into the search cache, so MMSearch runs offline.
import type { StoredImage } from "../../src/core/images.js";
import { imageSearchKey, type SearchCacheStore } from "./cache.js";
import type { SearchHit } from "./provider.js";

/**
 * One benchmark question's image search result. imageSha256 must be the sha256 of the image as
 * the agent's image store holds it (what `ImageStore.ingest(bytes)` returns), since that is
 * what an image_search call on img_0 is keyed by.
 */
export interface MmsearchImportRow {
  imageSha256: string;
  results: unknown;
}

/**
 * What a cached image search answer may hold. MMSearch's end2end split ships its Google Lens
 * result as a screenshot (an image column), not as a list of hits; that screenshot is put in the
 * image store and referenced here so the search node can show it to the model.
 */
export interface ImageSearchAnswer {
  hits: SearchHit[];
  screenshot?: StoredImage;
}

export type MmsearchImageSearchResult =
  | { kind: "hits"; hits: SearchHit[] }
  | { kind: "screenshot"; bytes: Buffer }
  | { kind: "none"; reason: string };

export interface MmsearchImportOptions {
  /** Where screenshots go (the agent's ImageStore); needed only when results are images. */
  images?: { put(bytes: Buffer): Promise<StoredImage> };
}

export interface MmsearchImportSummary {
  /** Entries written: one per row with a result. */
  imported: number;
  /** Of those, how many were screenshots rather than hit lists. */
  screenshots: number;
  skipped: Array<{ imageSha256: string; reason: string }>;
}

const LIST_KEYS = ["visual_matches", "image_results", "organic", "results", "items", "matches", "data"];
const URL_KEYS = ["url", "link", "source_url", "page_url", "href"];
const TITLE_KEYS = ["title", "name"];
const SNIPPET_KEYS = ["snippet", "description", "content", "text", "body"];

function firstString(obj: Record<string, unknown>, keys: string[]): string | undefined {
  for (const key of keys) {
    const value = obj[key];
    if (typeof value === "string" && value.trim()) return value.trim();
  }
  return undefined;
}

function isUrl(text: string): boolean {
  return /^https?:\/\//i.test(text.trim());
}

function toHit(item: unknown): SearchHit | undefined {
  if (typeof item === "string") return isUrl(item) ? { title: item.trim(), url: item.trim(), snippet: "" } : undefined;
  if (!item || typeof item !== "object") return undefined;
  const obj = item as Record<string, unknown>;
  const source = typeof obj.source === "string" ? obj.source.trim() : undefined;
  const url = firstString(obj, URL_KEYS) ?? (source && isUrl(source) ? source : undefined);
  if (!url) return undefined;
  const title = firstString(obj, TITLE_KEYS) ?? (source && !isUrl(source) ? source : url);
  return { title, url, snippet: firstString(obj, SNIPPET_KEYS) ?? "" };
}

function looksLikeJson(text: string): boolean {
  return /^\s*[[{]/.test(text);
}

/**
 * Reads one `image_search_result` value in any shape it is found in: the screenshot MMSearch
 * ships (an image struct `{bytes, path}` or raw bytes), a list of `{title, url|link, snippet}`,
 * a JSON string of either, an object holding such a list (`visual_matches`, `results`, …), or
 * columns of lists (`{title: [...], link: [...]}`).
 */
export function parseMmsearchImageSearchResult(raw: unknown): MmsearchImageSearchResult {
  if (raw === null || raw === undefined) return { kind: "none", reason: "no image_search_result (a question without an image?)" };
  if (raw instanceof Uint8Array) {
    const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    const head = bytes.subarray(0, 64).toString("utf8");
    if (looksLikeJson(head)) return parseMmsearchImageSearchResult(bytes.toString("utf8"));
    return bytes.length ? { kind: "screenshot", bytes } : { kind: "none", reason: "empty image bytes" };
  }
  if (typeof raw === "string") {
    const text = raw.trim();
    if (!text) return { kind: "none", reason: "empty image_search_result" };
    const dataUrl = /^data:image\/[\w.+-]+;base64,(.*)$/s.exec(text);
    if (dataUrl) return { kind: "screenshot", bytes: Buffer.from(dataUrl[1]!, "base64") };
    if (!looksLikeJson(text)) return { kind: "none", reason: "image_search_result is text that is neither JSON nor an image" };
    try {
      return parseMmsearchImageSearchResult(JSON.parse(text));
    } catch (err) {
      return { kind: "none", reason: `image_search_result is not valid JSON (${(err as Error).message})` };
    }
  }
  if (Array.isArray(raw)) return { kind: "hits", hits: raw.map(toHit).filter((h): h is SearchHit => h !== undefined) };
  if (typeof raw === "object") {
    const obj = raw as Record<string, unknown>;
    if ("bytes" in obj) {
      if (obj.bytes instanceof Uint8Array) return parseMmsearchImageSearchResult(obj.bytes);
      return { kind: "none", reason: `image_search_result image has no bytes${typeof obj.path === "string" ? ` (only a path: ${obj.path})` : ""}` };
    }
    for (const key of LIST_KEYS) {
      if (Array.isArray(obj[key])) return parseMmsearchImageSearchResult(obj[key]);
    }
    const urls = URL_KEYS.map((k) => obj[k]).find(Array.isArray);
    if (urls) {
      const column = (keys: string[]) => keys.map((k) => obj[k]).find(Array.isArray) ?? [];
      const titles = column(TITLE_KEYS);
      const snippets = column(SNIPPET_KEYS);
      return parseMmsearchImageSearchResult(urls.map((url, i) => ({ url, title: titles[i], snippet: snippets[i] })));
    }
    const single = toHit(obj);
    if (single) return { kind: "hits", hits: [single] };
  }
  return { kind: "none", reason: `unrecognised image_search_result (${typeof raw})` };
}

/**
 * Stores each row's result under the key `cachedProvider` uses for an image_search of that
 * image by `provider`, as a complete answer that never expires (benchmark data does not age),
 * so a replay or read-write run finds it and serves it for any maxResults.
 */
export async function importMmsearchResults(
  cache: Pick<SearchCacheStore, "put">,
  rows: MmsearchImportRow[],
  provider = "serper-lens",
  options: MmsearchImportOptions = {},
): Promise<MmsearchImportSummary> {
  const summary: MmsearchImportSummary = { imported: 0, screenshots: 0, skipped: [] };
  for (const row of rows) {
    const sha = row.imageSha256?.toLowerCase() ?? "";
    if (!/^[0-9a-f]{64}$/.test(sha)) {
      summary.skipped.push({ imageSha256: row.imageSha256, reason: "imageSha256 is not a sha256 hex digest" });
      continue;
    }
    const parsed = parseMmsearchImageSearchResult(row.results);
    let answer: ImageSearchAnswer;
    if (parsed.kind === "none") {
      summary.skipped.push({ imageSha256: sha, reason: parsed.reason });
      continue;
    } else if (parsed.kind === "screenshot") {
      if (!options.images) {
        throw new Error("MMSearch image_search_result holds screenshots: pass options.images (the image store) to import them");
      }
      try {
        answer = { hits: [], screenshot: await options.images.put(parsed.bytes) };
      } catch (err) {
        summary.skipped.push({ imageSha256: sha, reason: `screenshot is not a usable image (${(err as Error).message})` });
        continue;
      }
      summary.screenshots++;
    } else {
      answer = { hits: parsed.hits };
    }
    await cache.put(imageSearchKey(provider, sha), answer, {
      provider,
      operation: "image_search",
      input: `sha256:${sha} (imported from MMSearch)`,
      maxResults: null,
      expiresAt: null,
    });
    summary.imported++;
  }
  return summary;
}
