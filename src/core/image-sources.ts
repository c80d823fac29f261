// Reads an input image given as a file path, an http(s) URL or a data: URL.
import { readFile } from "node:fs/promises";
import { guardedFetch } from "./http.js";
import { ImageInputError, type ImageRef } from "./images.js";

const MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024;

export async function readImageSource(source: string, signal?: AbortSignal): Promise<Buffer> {
  if (source.startsWith("data:")) {
    const match = /^data:([^;,]*)(;base64)?,([\s\S]*)$/.exec(source);
    if (!match) throw new ImageInputError(`cannot read image data URL: it is not of the form data:image/...;base64,...`);
    return match[2] ? Buffer.from(match[3]!, "base64") : Buffer.from(decodeURIComponent(match[3]!));
  }
  if (/^https?:\/\//i.test(source)) {
    let res: Response;
    try {
      res = await fetch(source, { signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(30_000)]) : AbortSignal.timeout(30_000) });
    } catch (err) {
      throw new ImageInputError(`cannot download image ${source}: ${(err as Error).message}`);
    }
    if (!res.ok) throw new ImageInputError(`cannot download image ${source}: HTTP ${res.status}`);
    const declared = Number(res.headers.get("content-length") ?? 0);
    if (declared > MAX_DOWNLOAD_BYTES) throw new ImageInputError(`image ${source} is ${declared} bytes, over the ${MAX_DOWNLOAD_BYTES}-byte limit`);
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > MAX_DOWNLOAD_BYTES) throw new ImageInputError(`image ${source} is over the ${MAX_DOWNLOAD_BYTES}-byte limit`);
    return bytes;
  }
  try {
    return await readFile(source.startsWith("file://") ? new URL(source) : source);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : code === "EACCES" ? "permission denied" : (err as Error).message;
    throw new ImageInputError(`cannot read image ${source}: ${why}`);
  }
}

/** How an input image source is kept in graph state once stored: a data: URL (image bytes) becomes a short note naming the stored image. */
export function sourceForState(source: string, stored: Pick<ImageRef, "id" | "sha256">): string {
  return source.startsWith("data:") ? `(data: URL, ${source.length} characters: stored as ${stored.id}, sha256 ${stored.sha256})` : source;
}

/**
 * The reader for a server's clients: data: URLs, and http(s) URLs fetched through the SSRF guard
 * (no private or loopback addresses unless listed in allowHosts). File paths on the server are refused.
 */
export function urlImageReader(options: { allowHosts?: string[] } = {}) {
  return async (source: string, signal?: AbortSignal): Promise<Buffer> => {
    if (source.startsWith("data:")) return readImageSource(source, signal);
    if (!/^https?:\/\//i.test(source)) {
      const shown = source.length > 80 ? `${source.slice(0, 77)}...` : source;
      throw new ImageInputError(`image "${shown}" is not a URL: give images as http(s) URLs or data: URLs (the server does not read its own files)`);
    }
    try {
      return (await guardedFetch(source, { signal, timeoutMs: 30_000, maxBytes: MAX_DOWNLOAD_BYTES, allowHosts: options.allowHosts, headers: { accept: "image/*" } })).body;
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ImageInputError(`cannot download image ${source}: ${(err as Error).message}`);
    }
  };
}
