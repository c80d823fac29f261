// Serves images from the image store at unguessable URLs: what reverse image search (Lens APIs
// fetch the image from a public URL) and graph API clients (sub-images made during a run) need.
// The route is a web-standard fetch handler, so it runs standalone (`loupe serve-images`) or mounted
// in another server (the LangGraph server's custom `http.app`).
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join, resolve } from "node:path";
import type { ImageMime, ImageStore, StoredImage } from "./images.js";

const EXT_MIME: Record<string, ImageMime> = { jpg: "image/jpeg", png: "image/png", webp: "image/webp", gif: "image/gif" };
const MIME_EXT: Record<ImageMime, string> = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif" };
const TOKEN_HEX = 32;

export interface ImageRouteOptions {
  store: ImageStore;
  /** Signs the URLs; anyone with it can mint URLs, so keep it out of logs (at least 16 characters). */
  secret: string;
  /** Path the route answers under (default "/images"). */
  prefix?: string;
}

export interface ImageRoute {
  readonly prefix: string;
  /** Answers GET/HEAD {prefix}/{sha256}-{token}.{ext}; returns undefined for any other path, so it can share a server. */
  handle(req: Request): Promise<Response | undefined>;
  /** The path of an image under the route, e.g. /images/ab12…-9f3c….jpg. */
  pathFor(image: Pick<StoredImage, "sha256" | "mime">): string;
  /** The full URL of an image under a public base URL (which may itself have a path). */
  urlFor(image: Pick<StoredImage, "sha256" | "mime">, baseUrl: string): string;
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

export function createImageRoute(options: ImageRouteOptions): ImageRoute {
  if (options.secret.length < 16) throw new Error("the image route secret must be at least 16 characters");
  const prefix = `/${(options.prefix ?? "/images").replace(/^\/+|\/+$/g, "")}`;
  const tokenOf = (sha256: string) => createHmac("sha256", options.secret).update(sha256).digest("hex").slice(0, TOKEN_HEX);
  const pattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/([0-9a-f]{64})-([0-9a-f]{${TOKEN_HEX}})\\.(jpg|png|webp|gif)$`);

  const pathFor: ImageRoute["pathFor"] = (image) => `${prefix}/${image.sha256}-${tokenOf(image.sha256)}.${MIME_EXT[image.mime]}`;

  return {
    prefix,
    pathFor,
    urlFor(image, baseUrl) {
      return `${baseUrl.replace(/\/+$/, "")}${pathFor(image)}`;
    },
    async handle(req) {
      const url = new URL(req.url);
      if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return undefined;
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
      }
      const match = pattern.exec(url.pathname);
      const notFound = () => new Response("not found\n", { status: 404, headers: { "content-type": "text/plain" } });
      if (!match) return notFound();
      const [, sha256, token, ext] = match as unknown as [string, string, string, string];
      const expected = Buffer.from(tokenOf(sha256));
      if (!timingSafeEqual(expected, Buffer.from(token))) return notFound();
      let bytes: Buffer;
      try {
        bytes = await options.store.read({ sha256, mime: EXT_MIME[ext]! });
      } catch {
        return notFound();
      }
      return new Response(req.method === "HEAD" ? null : new Uint8Array(bytes), {
        status: 200,
        headers: {
          "content-type": EXT_MIME[ext]!,
          "content-length": String(bytes.length),
          // Content-addressed: the bytes behind a URL never change.
          "cache-control": "public, max-age=31536000, immutable",
          "x-robots-tag": "noindex",
          "x-content-type-options": "nosniff",
        },
      });
    },
  };
}

/** Serves a route on node:http (for `loupe serve-images` and tests); resolves once listening. */
export async function serveImageRoute(route: ImageRoute, options: { port: number; host?: string }): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createServer(async (req, res) => {
    try {
      const request = new Request(new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`), { method: req.method });
      const response = (await route.handle(request)) ?? new Response("not found\n", { status: 404 });
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(response.body ? Buffer.from(await response.arrayBuffer()) : undefined);
    } catch (err) {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(`error: ${(err as Error).message}\n`);
    }
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "127.0.0.1", () => resolveListen());
  });
  const address = server.address() as { port: number; address: string; family: string };
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    server,
    url: `http://${host}:${address.port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
