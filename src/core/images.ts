// Content-addressed image store: image bytes live here, graph state holds only ImageRef records.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";

import type { ImageMime, ImageRef } from "./state.js";

export type { ImageMime, ImageRef };

/** An image in the store, before it has an id in a run. */
export interface StoredImage {
  sha256: string;
  mime: ImageMime;
  width: number;
  height: number;
}

/** What an image's header says, checked against the store's pixel limit. */
export interface ProbedImage {
  mime: ImageMime;
  width: number;
  height: number;
  orientation?: number;
}

export interface DecodedImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** The user gave an image that cannot be used (unreadable, too large, not an image). */
export class ImageInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageInputError";
  }
}

const EXT: Record<ImageMime, string> = {
  "image/jpeg": "jpg",
  "image/png": "png",
  "image/webp": "webp",
  "image/gif": "gif",
};

const FORMAT_MIME: Record<string, ImageMime> = {
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  gif: "image/gif",
};

export const DEFAULT_MAX_INPUT_PIXELS = 200_000_000;

/**
 * The input images of one question may hold at most this many times the per-image limit
 * (LOUPE_MAX_INPUT_PIXELS) together: each is decoded in full for its crops, so without a total a
 * request of many images just under the limit holds gigabytes of pixels at once.
 */
export const INPUT_PIXELS_TOTAL_FACTOR = 2;

/**
 * Where image bytes are kept beyond this machine (Postgres with LOUPE_DATABASE_URL), so a worker
 * with an empty data directory can read every image another worker stored. The local files
 * then act as a cache in front of it.
 */
export interface ImageBlobStore {
  put(image: StoredImage, bytes: Buffer): Promise<void>;
  get(sha256: string): Promise<Buffer | undefined>;
  /** Where the bytes are, for messages (no secrets). */
  describe(): string;
}

export interface ImageStoreOptions {
  /** Refuse images with more pixels than this (decompression-bomb guard). */
  maxInputPixels?: number;
  /** Shared store every image is also written to, and read from when the local file is missing. */
  blobs?: ImageBlobStore;
  /** Bytes of decoded pixels kept in memory so a large source is decoded once, not once per crop. */
  decodedCacheBytes?: number;
}

export function sha256Hex(bytes: Buffer | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export class ImageStore {
  readonly dir: string;
  readonly maxInputPixels: number;
  readonly blobs?: ImageBlobStore;
  private readonly decodedCacheBytes: number;
  private readonly decodedCache = new Map<string, Promise<DecodedImage>>();
  private readonly decodedSizes = new Map<string, number>();
  private decodedTotal = 0;
  private readonly known = new Map<string, StoredImage>();

  constructor(dir: string, options: ImageStoreOptions = {}) {
    this.dir = dir;
    this.maxInputPixels = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
    this.blobs = options.blobs;
    this.decodedCacheBytes = options.decodedCacheBytes ?? 512 * 1024 * 1024;
  }

  pathOf(image: Pick<StoredImage, "sha256" | "mime">): string {
    return join(this.dir, image.sha256.slice(0, 2), `${image.sha256}.${EXT[image.mime]}`);
  }

  /** Most pixels the input images of one question may hold together. */
  get maxTotalInputPixels(): number {
    return INPUT_PIXELS_TOTAL_FACTOR * this.maxInputPixels;
  }

  /** Reads an image's size and format from its header, refusing what is not an image or is too large to decode. */
  async probe(bytes: Buffer): Promise<ProbedImage> {
    let meta: Awaited<ReturnType<ReturnType<typeof sharp>["metadata"]>>;
    try {
      // The header only: nothing is decoded, so the size is checked here, with a message saying it,
      // rather than by sharp's own limit (whose "Input image exceeds pixel limit" would win).
      meta = await sharp(bytes, { limitInputPixels: false }).metadata();
    } catch (err) {
      throw new ImageInputError(`not a readable image (${(err as Error).message})`);
    }
    const mime = meta.format ? FORMAT_MIME[meta.format] : undefined;
    if (!mime || !meta.width || !meta.height) {
      throw new ImageInputError(
        `unsupported image format "${meta.format ?? "unknown"}": use JPEG, PNG, WebP or GIF`,
      );
    }
    const pixels = meta.width * meta.height;
    if (pixels > this.maxInputPixels) {
      throw new ImageInputError(
        `image is ${meta.width}×${meta.height} (${pixels.toLocaleString("en-US")} pixels), over the limit of ${this.maxInputPixels.toLocaleString("en-US")} pixels; downscale it or raise LOUPE_MAX_INPUT_PIXELS`,
      );
    }
    return { mime, width: meta.width, height: meta.height, orientation: meta.orientation };
  }

  /**
   * Refuses the input images of one question, from their headers (before any is decoded), when
   * together they hold more than maxTotalInputPixels.
   */
  checkTotalInputPixels(images: ReadonlyArray<Pick<ProbedImage, "width" | "height">>): void {
    const total = images.reduce((sum, image) => sum + image.width * image.height, 0);
    if (total <= this.maxTotalInputPixels) return;
    const times = INPUT_PIXELS_TOTAL_FACTOR === 2 ? "twice" : `${INPUT_PIXELS_TOTAL_FACTOR} times`;
    throw new ImageInputError(
      `the ${images.length} input images hold ${total.toLocaleString("en-US")} pixels in all, over the limit of ${this.maxTotalInputPixels.toLocaleString("en-US")} pixels for one question (${times} LOUPE_MAX_INPUT_PIXELS); send fewer or smaller images, or raise LOUPE_MAX_INPUT_PIXELS`,
    );
  }

  /**
   * Adds a user-supplied image: validates it, applies its EXIF orientation so the pixels the
   * model sees are upright, and stores it.
   */
  async ingest(bytes: Buffer, probed?: ProbedImage): Promise<StoredImage> {
    probed ??= await this.probe(bytes);
    if (probed.orientation && probed.orientation !== 1) {
      const oriented = sharp(bytes, { limitInputPixels: this.maxInputPixels }).rotate();
      const out =
        probed.mime === "image/jpeg"
          ? await oriented.jpeg({ quality: 95 }).toBuffer()
          : await oriented.png().toBuffer();
      return this.put(out);
    }
    if (probed.mime === "image/gif") {
      // Model servers take JPEG/PNG/WebP reliably; a GIF's first frame is kept as PNG.
      return this.put(await sharp(bytes, { limitInputPixels: this.maxInputPixels }).png().toBuffer());
    }
    return this.put(bytes, probed);
  }

  /** Stores bytes under their sha256 (idempotent) and returns the record. */
  async put(bytes: Buffer, probed?: { mime: ImageMime; width: number; height: number }): Promise<StoredImage> {
    const sha = sha256Hex(bytes);
    const cached = this.known.get(sha);
    if (cached) return cached;
    const { mime, width, height } = probed ?? (await this.probe(bytes));
    const record: StoredImage = { sha256: sha, mime, width, height };
    const path = this.pathOf(record);
    const exists = await stat(path).then(
      (s) => s.size === bytes.length,
      () => false,
    );
    if (!exists) await this.writeLocal(record, bytes);
    await this.blobs?.put(record, bytes);
    this.known.set(sha, record);
    return record;
  }

  private async writeLocal(image: Pick<StoredImage, "sha256" | "mime">, bytes: Buffer): Promise<void> {
    const path = this.pathOf(image);
    await mkdir(join(this.dir, image.sha256.slice(0, 2)), { recursive: true });
    // Unique per write: two runs in one process may store the same image at the same moment.
    const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  }

  async read(image: Pick<StoredImage, "sha256" | "mime">): Promise<Buffer> {
    let localError: Error;
    try {
      return await readFile(this.pathOf(image));
    } catch (err) {
      localError = err as Error;
    }
    if (this.blobs) {
      const bytes = await this.blobs.get(image.sha256);
      if (bytes) {
        // Kept locally too, so the next read of it is a file read.
        await this.writeLocal(image, bytes).catch(() => {});
        return bytes;
      }
      throw new Error(
        `image ${image.sha256.slice(0, 12)} is in neither ${this.blobs.describe()} nor the local image cache at ${this.dir}; was it stored by a worker using another database?`,
      );
    }
    throw new Error(
      `image ${image.sha256.slice(0, 12)} is missing from the image store at ${this.dir} (${localError.message}); was the data directory moved or cleaned?`,
    );
  }

  /**
   * The exact bytes to show the model for an image: the image itself when it fits the pixel
   * budget, else a deterministic downscale. Chosen once, when the image first enters the
   * conversation, and referenced by sha256 from then on, so old turns are never re-encoded.
   *
   * The downscale is made from the encoded bytes, so a large JPEG is decoded at a reduced size
   * (libjpeg's shrink-on-load) instead of in full: a 12 MP photo's 1 MP view costs about half its
   * full decode. With `prefetch` (input images, which the model is about to crop), the full decode
   * then starts in the background and is usually done before the model's first reply comes back
   * (see BENCHMARKS.md, latency).
   */
  async modelView(image: StoredImage, maxPixels: number, options: { prefetch?: boolean } = {}): Promise<StoredImage> {
    const sendable = image.mime !== "image/gif";
    if (sendable && image.width * image.height <= maxPixels) return image;
    const scale = Math.min(1, Math.sqrt(maxPixels / (image.width * image.height)));
    const width = Math.max(1, Math.floor(image.width * scale));
    const height = Math.max(1, Math.floor(image.height * scale));
    const bytes = await this.read(image);
    const source = sharp(bytes, { limitInputPixels: this.maxInputPixels });
    const { hasAlpha } = await source.metadata();
    const resized = source.resize(width, height, { fit: "fill", kernel: "lanczos3" });
    const view =
      image.mime === "image/png" && hasAlpha
        ? await resized.png({ compressionLevel: 6 }).toBuffer()
        : await resized.jpeg({ quality: 90, mozjpeg: false }).toBuffer();
    const stored = await this.put(view);
    // Started after the view, not alongside it: the view is on the way to the model's first
    // request, the full decode only on the way to the first crop.
    if (sendable && options.prefetch) this.decoded(image).catch(() => undefined);
    return stored;
  }

  /** Raw pixels of an image, decoded once and kept in a bounded in-memory cache. */
  decoded(image: StoredImage): Promise<DecodedImage> {
    const hit = this.decodedCache.get(image.sha256);
    if (hit) {
      // Refresh its place in the LRU order.
      this.decodedCache.delete(image.sha256);
      this.decodedCache.set(image.sha256, hit);
      return hit;
    }
    const pending = this.read(image).then(async (bytes) => {
      const { data, info } = await sharp(bytes, { limitInputPixels: this.maxInputPixels })
        .raw()
        .toBuffer({ resolveWithObject: true });
      const decoded: DecodedImage = {
        data,
        width: info.width,
        height: info.height,
        channels: info.channels as DecodedImage["channels"],
      };
      this.decodedSizes.set(image.sha256, data.length);
      this.decodedTotal += data.length;
      this.evict(image.sha256);
      return decoded;
    });
    pending.catch(() => this.decodedCache.delete(image.sha256));
    this.decodedCache.set(image.sha256, pending);
    return pending;
  }

  private evict(keep: string): void {
    for (const key of this.decodedCache.keys()) {
      if (this.decodedTotal <= this.decodedCacheBytes) break;
      if (key === keep) continue;
      const size = this.decodedSizes.get(key);
      if (size === undefined) continue; // still decoding
      this.decodedCache.delete(key);
      this.decodedSizes.delete(key);
      this.decodedTotal -= size;
    }
  }
}
