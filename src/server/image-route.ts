// Serves images from the image store at their signed URLs (src/core/image-urls.ts): what reverse image
// search (Lens APIs fetch the image from a public URL) and graph API clients (sub-images made during a run) need.
// The route is a web-standard fetch handler, so it runs standalone (`loupe serve-images`) or mounted
// in another server (the LangGraph server's custom `http.app`).
import { createServer, type Server } from "node:http";
import type { ImageStore } from "../core/images.js";
import { signedImageUrls, type SignedImageUrls } from "../core/image-urls.js";

export interface ImageRouteOptions {
  store: ImageStore;
  /** Signs the URLs; anyone with it can mint URLs, so keep it out of logs (at least 16 characters). */
  secret: string;
  /** Path the route answers under (default "/images"). */
  prefix?: string;
}

export interface ImageRoute extends Omit<SignedImageUrls, "verify"> {
  /** Answers GET/HEAD {prefix}/{sha256}-{token}.{ext}; returns undefined for any other path, so it can share a server. */
  handle(req: Request): Promise<Response | undefined>;
}

export function createImageRoute(options: ImageRouteOptions): ImageRoute {
  const urls = signedImageUrls(options.secret, options.prefix);
  const { prefix } = urls;
  return {
    prefix,
    pathFor: urls.pathFor,
    urlFor: urls.urlFor,
    async handle(req) {
      const url = new URL(req.url);
      if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return undefined;
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
      }
      const notFound = () => new Response("not found\n", { status: 404, headers: { "content-type": "text/plain" } });
      const image = urls.verify(url.pathname);
      if (!image) return notFound();
      let bytes: Buffer;
      try {
        bytes = await options.store.read(image);
      } catch {
        return notFound();
      }
      return new Response(req.method === "HEAD" ? null : new Uint8Array(bytes), {
        status: 200,
        headers: {
          "content-type": image.mime,
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
