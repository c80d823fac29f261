// Signed, unguessable URLs for store images (<prefix>/<sha256>-<hmac>.<ext>): minted here for reverse image
// search and API clients, checked by the image route (src/server/image-route.ts) that serves them.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { StoredImage } from "./images.js";
import type { ImageMime } from "./state.js";

const EXT_MIME: Record<string, ImageMime> = { jpg: "image/jpeg", png: "image/png", webp: "image/webp", gif: "image/gif" };
const MIME_EXT: Record<ImageMime, string> = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif" };
const TOKEN_HEX = 32;

export interface SignedImageUrls {
  /** Path the URLs live under, e.g. "/images". */
  readonly prefix: string;
  /** The path of an image, e.g. /images/ab12…-9f3c….jpg. */
  pathFor(image: Pick<StoredImage, "sha256" | "mime">): string;
  /** The full URL of an image under a public base URL (which may itself have a path). */
  urlFor(image: Pick<StoredImage, "sha256" | "mime">, baseUrl: string): string;
  /** The image a path names when its signature is right; null for a wrong or forged path under the prefix. */
  verify(pathname: string): Pick<StoredImage, "sha256" | "mime"> | null;
}

/**
 * The secret that signs image URLs: LOUPE_PUBLIC_IMAGE_SECRET when set, else a random one kept in
 * the data directory (so `loupe ask` and `loupe serve-images` on the same data directory agree).
 * Workers on several machines must share LOUPE_PUBLIC_IMAGE_SECRET.
 */
export function imageRouteSecret(dataDir: string, explicit?: string): string {
  if (explicit) {
    if (explicit.length < 16) throw new Error("LOUPE_PUBLIC_IMAGE_SECRET must be at least 16 characters");
    return explicit;
  }
  const dir = resolve(dataDir);
  const file = join(dir, "image-route.secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dir, { recursive: true });
  const secret = randomBytes(32).toString("hex");
  try {
    writeFileSync(file, secret, { mode: 0o600, flag: "wx" });
    return secret;
  } catch {
    // Another process wrote it first: use theirs.
    return readFileSync(file, "utf8").trim();
  }
}

export function signedImageUrls(secret: string, prefixOption = "/images"): SignedImageUrls {
  if (secret.length < 16) throw new Error("the image route secret must be at least 16 characters");
  const prefix = `/${prefixOption.replace(/^\/+|\/+$/g, "")}`;
  const tokenOf = (sha256: string) => createHmac("sha256", secret).update(sha256).digest("hex").slice(0, TOKEN_HEX);
  const pattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/([0-9a-f]{64})-([0-9a-f]{${TOKEN_HEX}})\\.(jpg|png|webp|gif)$`);
  const pathFor: SignedImageUrls["pathFor"] = (image) => `${prefix}/${image.sha256}-${tokenOf(image.sha256)}.${MIME_EXT[image.mime]}`;
  return {
    prefix,
    pathFor,
    urlFor: (image, baseUrl) => `${baseUrl.replace(/\/+$/, "")}${pathFor(image)}`,
    verify(pathname) {
      const match = pattern.exec(pathname);
      if (!match) return null;
      const [, sha256, token, ext] = match as unknown as [string, string, string, string];
      if (!timingSafeEqual(Buffer.from(tokenOf(sha256)), Buffer.from(token))) return null;
      return { sha256, mime: EXT_MIME[ext]! };
    },
  };
}
