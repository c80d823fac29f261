// Input images from the network stay within their limits: a download stops at the size limit (memory stays flat) and a slow one at the time limit, each refused in one line naming the URL and the limit.
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readImageSource, urlImageReader } from "../src/core/image-sources.js";

const ROOT = resolve(import.meta.dirname, "..");
const MiB = 1024 * 1024;
/** Far more than any limit; a reader that ignores its limit buffers this much before the server stops sending. */
const SENT_AT_MOST = 320 * MiB;

let server: Server;
let base: string;
let host: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === "/endless.png") {
      // A chunked body with no declared length that goes on (up to SENT_AT_MOST, then it stalls).
      res.writeHead(200, { "content-type": "image/png" });
      const chunk = Buffer.alloc(256 * 1024, 0x89);
      let sent = 0;
      const pump = () => {
        while (sent < SENT_AT_MOST) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
      };
      res.on("close", () => (sent = Infinity));
      pump();
    } else if (req.url === "/slow.png") {
      res.writeHead(200, { "content-type": "image/png" });
      res.write(Buffer.alloc(1024));
      // ... and nothing more.
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  base = `http://${host}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/**
 * Reads `url` with both readers (the CLI's readImageSource and the server's urlImageReader) in a
 * fresh Node process, so its peak RSS is the download's own: growth = peak RSS after − RSS before.
 */
async function readInChild(url: string): Promise<Array<{ reader: string; message: string; ms: number; rssGrowth: number }>> {
  const script = `
    import { readFileSync } from "node:fs";
    const { readImageSource, urlImageReader } = await import(${JSON.stringify(join(ROOT, "src/core/image-sources.ts"))});
    const status = (key) => Number(new RegExp("^" + key + ":\\\\s+(\\\\d+)", "m").exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
    const readers = { cli: readImageSource, server: urlImageReader({ allowHosts: [${JSON.stringify(host)}] }) };
    const out = [];
    for (const [reader, read] of Object.entries(readers)) {
      globalThis.gc?.();
      const before = status("VmRSS");
      const t0 = performance.now();
      let message = "no error";
      try { await read(${JSON.stringify(url)}); } catch (err) { message = err.message; }
      out.push({ reader, message, ms: performance.now() - t0, rssGrowth: status("VmHWM") - before });
    }
    process.stdout.write(JSON.stringify(out));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", script], {
    cwd: ROOT,
    timeout: 90_000,
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout);
}

describe("image downloads", () => {
  it("stops an endless chunked body at the size limit, quickly, naming the URL and the limit; memory stays small", async () => {
    const url = `${base}/endless.png`;
    const results = await readInChild(url);
    expect(results.map((r) => r.reader)).toEqual(["cli", "server"]);
    for (const r of results) {
      expect(r.message.startsWith(`cannot download image ${url}: the response is over the ${64 * MiB}-byte limit for an image; `), r.message).toBe(true);
      expect(r.message, r.reader).not.toContain("\n");
      expect(r.ms, r.reader).toBeLessThan(10_000);
      // The limit is 64 MiB: what was read up to it, and nothing like the 320 MiB sent.
      expect(r.rssGrowth, r.reader).toBeLessThan(192 * MiB);
    }
  }, 120_000);

  it("refuses a URL that stops sending at the time limit, naming the URL and the limit", async () => {
    const url = `${base}/slow.png`;
    const expected = `cannot download image ${url}: no complete response within 0.4 s (the time limit for an image download)`;
    const t0 = performance.now();
    await expect(readImageSource(url, undefined, { timeoutMs: 400 })).rejects.toThrow(expected);
    await expect(urlImageReader({ allowHosts: [host], timeoutMs: 400 })(url)).rejects.toThrow(expected);
    expect(performance.now() - t0).toBeLessThan(5_000);
  }, 10_000);

  it("reports a refused address and an error status in one line each", async () => {
    await expect(urlImageReader()(`${base}/slow.png`)).rejects.toThrow(
      new RegExp(`^cannot download image ${base}/slow\\.png: refused to fetch it: 127\\.0\\.0\\.1 is a loopback address`),
    );
    await expect(readImageSource(`${base}/missing.png`)).rejects.toThrow(`cannot download image ${base}/missing.png: HTTP 404 Not Found`);
  });
});
