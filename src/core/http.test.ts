// guardedFetch: the SSRF guard (literal addresses, resolved names, redirects), pinning, and the size and time caps.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createConnection, type AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { BlockedAddressError, FetchError, blockedAddressReason, guardedFetch, type GuardedFetchOptions, type HostResolver } from "./http.js";

interface TestServer {
  port: number;
  origin: string;
  host: string;
  requests: IncomingMessage[];
}

const servers: Array<ReturnType<typeof createServer>> = [];

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const requests: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    requests.push(req);
    handler(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { port, origin: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, requests };
}

/** Connections a test's connection layer refused: any at the end of a test fails it. */
const attempted: string[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  expect(attempted.splice(0), "connections attempted past the guard").toEqual([]);
});

/**
 * The connection layer for tests that name addresses off this machine: it connects only to this
 * file's loopback servers (`ports`) and fails every other use, so even a broken guard sends nothing.
 */
function loopbackOnly(...ports: number[]): NonNullable<GuardedFetchOptions["createConnection"]> {
  return (options) => {
    const { host, port } = options as { host?: string; port?: number | string };
    if (host === "127.0.0.1" && ports.includes(Number(port))) return createConnection(options as never);
    attempted.push(`${host}:${port}`);
    throw new Error(`test connection layer: refused a connection to ${host}:${port}`);
  };
}

/** A resolver that answers from a table and counts its calls, so no test touches real DNS. */
function resolver(table: Record<string, string[]>): HostResolver & { calls: string[] } {
  const calls: string[] = [];
  const lookup = async (hostname: string) => {
    calls.push(hostname);
    const addresses = table[hostname];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
  return Object.assign(lookup, { calls });
}

async function refusal(url: string, options: GuardedFetchOptions = {}): Promise<BlockedAddressError> {
  const err = await guardedFetch(url, { timeoutMs: 2000, createConnection: loopbackOnly(), ...options }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BlockedAddressError);
  return err as BlockedAddressError;
}

describe("guardedFetch refuses non-public addresses", () => {
  it("names the address and why, in one line", async () => {
    const err = await refusal("http://127.0.0.1/");
    expect(err.message).toBe(
      "refused to fetch http://127.0.0.1/: 127.0.0.1 is a loopback address (private, loopback, link-local and cloud metadata addresses are blocked)",
    );
    expect(err.kind).toBe("blocked");
    expect(err).toBeInstanceOf(FetchError);
  });

  it.each([
    ["http://169.254.169.254/latest/meta-data", "169.254.169.254 is the cloud metadata address"],
    ["http://[::1]/", "::1 is a loopback address"],
    ["http://0.0.0.0/", "0.0.0.0 is an unspecified address"],
    ["http://[::ffff:127.0.0.1]/", "::ffff:7f00:1 (127.0.0.1 in IPv6 form) is a loopback address"],
    ["http://[fe80::1]/", "fe80::1 is a link-local address"],
    ["http://[fd12:3456::1]/", "fd12:3456::1 is a unique-local (private) address"],
    ["http://10.1.2.3:8080/x", "10.1.2.3 is a private address"],
    ["http://172.20.0.1/", "172.20.0.1 is a private address"],
    ["http://192.168.1.1/", "192.168.1.1 is a private address"],
    ["http://100.64.1.1/", "100.64.1.1 is a carrier-grade NAT"],
    ["http://224.0.0.1/", "224.0.0.1 is a multicast address"],
    ["http://2130706433/", "127.0.0.1 is a loopback address"],
    ["https://0x7f.1/", "127.0.0.1 is a loopback address"],
  ])("%s", async (url, why) => {
    const err = await refusal(url);
    expect(err.message).toContain(why);
  });

  it("refuses metadata host names without resolving them", async () => {
    const lookup = resolver({});
    const err = await refusal("http://metadata.google.internal./computeMetadata/v1/", { lookup });
    expect(err.message).toContain("metadata.google.internal is a cloud metadata host name");
    expect(lookup.calls).toEqual([]);
  });

  it("refuses a public-looking name that resolves to a private address", async () => {
    const lookup = resolver({ "news.example.com": ["10.0.0.5"] });
    const err = await refusal("https://news.example.com/story", { lookup });
    expect(err.message).toContain("news.example.com resolves to 10.0.0.5, a private address");
    expect(err.address).toBe("10.0.0.5");
  });

  it("refuses a name when any one of its addresses is private", async () => {
    const lookup = resolver({ "mixed.example.com": ["93.184.216.34", "192.168.0.10"] });
    const err = await refusal("http://mixed.example.com/", { lookup });
    expect(err.message).toContain("192.168.0.10, a private address");
  });

  it("refuses localhost through the system resolver", async () => {
    const err = await refusal("http://localhost:9/");
    expect(err.message).toMatch(/localhost resolves to (127\.0\.0\.1|::1), a loopback address/);
  });

  it("allowPrivate lets loopback through but never the metadata address", async () => {
    const server = await serve((_req, res) => res.end("ok"));
    const res = await guardedFetch(`${server.origin}/`, { allowPrivate: true });
    expect(res.body.toString()).toBe("ok");
    await refusal("http://169.254.169.254/latest/meta-data", { allowPrivate: true });
  });

  it("refuses schemes other than http and https", async () => {
    for (const url of ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1/"]) {
      const err = await guardedFetch(url, { createConnection: loopbackOnly() }).catch((e: unknown) => e as FetchError);
      expect(err).toBeInstanceOf(FetchError);
      expect((err as FetchError).kind).toBe("url");
    }
  });

  it("classifies addresses: public ones pass, embedded and NAT64 forms are unwrapped", () => {
    expect(blockedAddressReason("93.184.216.34")).toBeUndefined();
    expect(blockedAddressReason("2606:4700:4700::1111")).toBeUndefined();
    expect(blockedAddressReason("::ffff:10.0.0.1")).toContain("private");
    expect(blockedAddressReason("64:ff9b::a9fe:a9fe")).toContain("cloud metadata");
    expect(blockedAddressReason("fd00:ec2::254")).toContain("cloud metadata");
    expect(blockedAddressReason("100.100.100.200")).toContain("cloud metadata");
  });
});

describe("the connection layer of these tests", () => {
  it("stops a request to a non-loopback address that the guard lets through, and reports it", async () => {
    const err = await guardedFetch("http://192.168.1.1/", { allowHosts: ["192.168.1.1"], timeoutMs: 2000, createConnection: loopbackOnly() }).catch((e: unknown) => e);
    expect((err as FetchError).kind).toBe("network");
    expect((err as FetchError).detail).toContain("test connection layer: refused a connection to 192.168.1.1:80");
    expect(attempted.splice(0)).toEqual(["192.168.1.1:80"]);
  });
});

describe("guardedFetch with an allowed host", () => {
  it("fetches it, connecting to the address it checked (the resolver is asked once)", async () => {
    const server = await serve((req, res) => {
      res.setHeader("content-type", "text/plain; charset=utf-8");
      res.end(`hello ${req.headers.host}`);
    });
    const lookup = resolver({ "docs.internal": ["127.0.0.1"] });
    const res = await guardedFetch(`http://docs.internal:${server.port}/page`, { allowHosts: [`docs.internal:${server.port}`], lookup });
    expect(res.status).toBe(200);
    expect(res.contentType).toBe("text/plain; charset=utf-8");
    expect(res.body.toString()).toBe(`hello docs.internal:${server.port}`);
    expect(lookup.calls).toEqual(["docs.internal"]);
  });

  it("follows redirects within allowed hosts and reports the final URL", async () => {
    const server = await serve((req, res) => {
      if (req.url === "/old") res.writeHead(301, { location: "/new" }).end();
      else res.end(`at ${req.url}`);
    });
    const res = await guardedFetch(`${server.origin}/old`, { allowHosts: [server.host] });
    expect(res.url).toBe(`${server.origin}/new`);
    expect(res.body.toString()).toBe("at /new");
  });

  it.each([
    ["a private address", "http://10.0.0.1/", "10.0.0.1 is a private address"],
    ["another loopback address", "http://127.0.0.2:{port}/", "127.0.0.2 is a loopback address"],
    ["a name resolving to a private address", "http://intranet.example.com/", "intranet.example.com resolves to 192.168.7.7"],
  ])("refuses a redirect to %s", async (_name, target, why) => {
    let location = "";
    const redirecting = await serve((_req, res) => res.writeHead(302, { location }).end());
    location = target.replace("{port}", String(redirecting.port));
    const lookup = resolver({ "intranet.example.com": ["192.168.7.7"] });
    const err = await refusal(`${redirecting.origin}/start`, { allowHosts: [redirecting.host], lookup, createConnection: loopbackOnly(redirecting.port) });
    expect(err.message).toContain(why);
    expect(err.url).toBe(new URL(location).href);
    expect(redirecting.requests).toHaveLength(1);
  });

  it("stops after maxRedirects", async () => {
    const server = await serve((req, res) => res.writeHead(302, { location: `/n${req.url!.length}` }).end());
    const err = await guardedFetch(`${server.origin}/`, { allowHosts: [server.host], maxRedirects: 2 }).catch((e: FetchError) => e);
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).kind).toBe("redirects");
    expect(server.requests).toHaveLength(3);
  });

  it("drops credentials when a redirect leaves the origin", async () => {
    const target = await serve((req, res) => res.end(String(req.headers.authorization ?? "none")));
    const start = await serve((_req, res) => res.writeHead(307, { location: `${target.origin}/` }).end());
    const res = await guardedFetch(`${start.origin}/`, { allowHosts: [start.host, target.host], headers: { Authorization: "Bearer secret" } });
    expect(res.body.toString()).toBe("none");
    expect(start.requests[0]!.headers.authorization).toBe("Bearer secret");
  });

  it("turns an error status into a FetchError with the status", async () => {
    const server = await serve((_req, res) => res.writeHead(404).end("missing"));
    const err = await guardedFetch(`${server.origin}/gone`, { allowHosts: [server.host] }).catch((e: FetchError) => e);
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).status).toBe(404);
    expect((err as FetchError).detail).toBe("HTTP 404 Not Found");
  });

  it("decompresses gzip bodies", async () => {
    const server = await serve((_req, res) => res.writeHead(200, { "content-encoding": "gzip" }).end(gzipSync("squeezed text")));
    const res = await guardedFetch(`${server.origin}/`, { allowHosts: [server.host] });
    expect(res.body.toString()).toBe("squeezed text");
  });
});

describe("guardedFetch limits", () => {
  const MiB = 1024 * 1024;

  it("refuses a body declared larger than maxBytes", async () => {
    const server = await serve((_req, res) => res.writeHead(200, { "content-length": 2 * MiB }).end(Buffer.alloc(2 * MiB)));
    const err = await guardedFetch(`${server.origin}/`, { allowHosts: [server.host], maxBytes: MiB }).catch((e: FetchError) => e);
    expect((err as FetchError).kind).toBe("too_large");
    expect((err as FetchError).message).toContain(`over the ${MiB}-byte limit`);
  });

  it("stops reading an undeclared body at maxBytes", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      for (let i = 0; i < 40; i++) res.write(Buffer.alloc(64 * 1024, 97));
      res.end();
    });
    const err = await guardedFetch(`${server.origin}/`, { allowHosts: [server.host], maxBytes: MiB }).catch((e: FetchError) => e);
    expect((err as FetchError).kind).toBe("too_large");
  });

  it("stops a gzip bomb at maxBytes of decoded body", async () => {
    const bomb = gzipSync(Buffer.alloc(8 * MiB));
    const server = await serve((_req, res) => res.writeHead(200, { "content-encoding": "gzip" }).end(bomb));
    const err = await guardedFetch(`${server.origin}/`, { allowHosts: [server.host], maxBytes: MiB }).catch((e: FetchError) => e);
    expect((err as FetchError).kind).toBe("too_large");
  });

  it("times out a server that never answers", async () => {
    const server = await serve(() => {});
    const started = Date.now();
    const err = await guardedFetch(`${server.origin}/`, { allowHosts: [server.host], timeoutMs: 300 }).catch((e: FetchError) => e);
    expect((err as FetchError).kind).toBe("timeout");
    expect((err as FetchError).message).toContain("no complete response within 300 ms");
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("times out a body that stalls halfway, compressed or not", async () => {
    for (const encoding of ["identity", "gzip"]) {
      const server = await serve((_req, res) => {
        res.writeHead(200, { "content-encoding": encoding });
        res.write(encoding === "gzip" ? gzipSync("partial").subarray(0, 12) : "partial");
      });
      const err = await guardedFetch(`${server.origin}/`, { allowHosts: [server.host], timeoutMs: 300 }).catch((e: FetchError) => e);
      expect((err as FetchError).kind).toBe("timeout");
    }
  });

  it("times out a resolver that hangs", async () => {
    const err = await guardedFetch("http://slow.example.com/", { timeoutMs: 200, lookup: () => new Promise(() => {}), createConnection: loopbackOnly() }).catch((e: FetchError) => e);
    expect((err as FetchError).kind).toBe("timeout");
  });

  it("rethrows the caller's abort as is", async () => {
    const server = await serve(() => {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("run cancelled")), 100);
    await expect(guardedFetch(`${server.origin}/`, { allowHosts: [server.host], signal: controller.signal })).rejects.toThrow("run cancelled");
  });
});
