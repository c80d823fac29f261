// Reads an input image given as a file path, an http(s) URL or a data: URL.
import { readFile } from "node:fs/promises";
import { ImageInputError } from "./images.js";

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
