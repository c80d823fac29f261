// Reads an input image given as a file path, an http(s) URL or a data: URL; downloads within a size and a time limit.
import { fileURLToPath } from "node:url";
import { readFile } from "node:fs/promises";
import { ENV_VARS } from "./config.js";
import { FetchError, guardedFetch, type GuardedFetchOptions } from "./http.js";
import { ImageInputError, type ImageRef } from "./images.js";

/** The limits of one image download: the body is read as a stream and the download stopped once past either. */
export interface DownloadLimits {
  /** For the whole download, redirects included (default 30 s). */
  timeoutMs?: number;
  /** Of the body (default 64 MiB). */
  maxBytes?: number;
}

export const IMAGE_DOWNLOAD_LIMITS = { timeoutMs: 30_000, maxBytes: 64 * 1024 * 1024 } as const;

/**
 * An image source as messages and logs show it: a data: URL by its type and size, never its bytes
 * (a request's images must not end up whole in an error or a log line); anything else as given, cut
 * when very long.
 */
export function describeSource(source: string): string {
  if (!source.startsWith("data:")) return source.length > 200 ? `${source.slice(0, 197)}...` : source;
  const comma = source.indexOf(",");
  const header = comma < 0 ? "" : source.slice(5, Math.min(comma, 5 + 100));
  const type = /^[\w.+-]+\/[\w.+-]+/.exec(header)?.[0] ?? "unknown type";
  const payload = comma < 0 ? source.length : source.length - comma - 1;
  if (!/;base64$/i.test(header)) return `(data:${type} URL, ${payload.toLocaleString("en-US")} characters)`;
  const padding = source.endsWith("==") ? 2 : source.endsWith("=") ? 1 : 0;
  return `(data:${type} URL, ${Math.max(0, Math.floor((payload * 3) / 4) - padding).toLocaleString("en-US")} bytes)`;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

interface Download {
  limits: DownloadLimits;
  /** What a person can do instead when the download is too slow or too large (the CLI and the server differ). */
  instead: { slow: string; large: string };
  guard: Pick<GuardedFetchOptions, "allowPrivate" | "allowHosts">;
}

/** Why a download failed, in one line: what went wrong, the limit it hit, and what to do about it. */
function downloadProblem(err: unknown, source: string, timeoutMs: number, download: Download): string {
  if (!(err instanceof FetchError)) return ((err as Error)?.message ?? String(err)).split("\n")[0]!;
  const where = err.url !== source ? ` (at ${err.url}, after a redirect)` : "";
  switch (err.kind) {
    case "timeout":
      return `no complete response within ${seconds(timeoutMs)} (the time limit for an image download)${where}; check the URL, or ${download.instead.slow}`;
    case "too_large":
      return `${err.detail} for an image${where}; ${download.instead.large}`;
    case "blocked":
      return `refused to fetch it${where}: ${err.detail}; if the host is yours, add it to ${ENV_VARS.webAllowHosts}`;
    case "network":
    case "dns":
      return `${err.detail}${where}; check the URL, or ${download.instead.slow}`;
    default:
      return `${err.detail}${where}`;
  }
}

async function downloadImage(source: string, download: Download, signal?: AbortSignal): Promise<Buffer> {
  const timeoutMs = download.limits.timeoutMs ?? IMAGE_DOWNLOAD_LIMITS.timeoutMs;
  const maxBytes = download.limits.maxBytes ?? IMAGE_DOWNLOAD_LIMITS.maxBytes;
  try {
    return (await guardedFetch(source, { ...download.guard, signal, timeoutMs, maxBytes, headers: { accept: "image/*" } })).body;
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ImageInputError(`cannot download image ${describeSource(source)}: ${downloadProblem(err, source, timeoutMs, download)}`);
  }
}

function readDataUrl(source: string): Buffer {
  const match = /^data:([^;,]*)(;base64)?,([\s\S]*)$/.exec(source);
  if (!match) throw new ImageInputError(`cannot read image ${describeSource(source)}: it is not of the form data:image/...;base64,...`);
  return match[2] ? Buffer.from(match[3]!, "base64") : Buffer.from(decodeURIComponent(match[3]!));
}

/**
 * The CLI's reader: files, data: URLs and http(s) URLs. The person running it chose the URL, so
 * private and loopback hosts may be fetched (cloud metadata addresses stay refused).
 */
export async function readImageSource(source: string, signal?: AbortSignal, limits: DownloadLimits = {}): Promise<Buffer> {
  if (source.startsWith("data:")) return readDataUrl(source);
  if (/^https?:\/\//i.test(source)) {
    const instead = { slow: "download the image and give its file path", large: "download and downscale the image, and give its file path" };
    return downloadImage(source, { limits, instead, guard: { allowPrivate: true } }, signal);
  }
  try {
    return await readFile(source.startsWith("file://") ? new URL(source) : source);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : code === "EACCES" ? "permission denied" : (err as Error).message;
    throw new ImageInputError(`cannot read image ${describeSource(source)}: ${why}`);
  }
}

/** How an input image source is kept in graph state once stored: a data: URL (image bytes) becomes a short note naming the stored image. */
/** The file path an input image was given as (a `file:` URL as its path), or undefined for a URL. */
export function filePathOf(source: string): string | undefined {
  if (source.startsWith("file://")) return fileURLToPath(source);
  return /^[a-z][a-z0-9+.-]*:/i.test(source) ? undefined : source;
}

export function sourceForState(source: string, stored: Pick<ImageRef, "id" | "sha256">): string {
  return source.startsWith("data:") ? `(data: URL, ${source.length} characters: stored as ${stored.id}, sha256 ${stored.sha256})` : source;
}

/**
 * The reader for a server's clients: data: URLs, and http(s) URLs fetched through the SSRF guard
 * (no private or loopback addresses unless listed in allowHosts). File paths on the server are refused.
 */
export function urlImageReader(options: { allowHosts?: string[] } & DownloadLimits = {}) {
  const { allowHosts, ...limits } = options;
  return async (source: string, signal?: AbortSignal): Promise<Buffer> => {
    if (source.startsWith("data:")) return readDataUrl(source);
    if (!/^https?:\/\//i.test(source)) {
      const shown = source.length > 80 ? `${source.slice(0, 77)}...` : source;
      throw new ImageInputError(`image "${shown}" is not a URL: give images as http(s) URLs or data: URLs (the server does not read its own files)`);
    }
    const instead = { slow: "send the image as a data: URL", large: "send a downscaled copy as a data: URL" };
    return downloadImage(source, { limits, instead, guard: { allowHosts } }, signal);
  };
}
