// The one HTTP fetch wrapper for anything from the open web: SSRF guard after DNS on every hop, pinned connections, size and time caps.
import { lookup as dnsLookup } from "node:dns/promises";
import { request as httpRequest, type IncomingMessage, type RequestOptions } from "node:http";
import { request as httpsRequest } from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { pipeline, type Readable } from "node:stream";

export type ResolvedAddress = { address: string; family: number };
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

export interface GuardedFetchOptions {
  signal?: AbortSignal;
  /** For the whole fetch, redirects included. */
  timeoutMs?: number;
  /** Of the decoded body: a gzip bomb is stopped at the limit too. */
  maxBytes?: number;
  maxRedirects?: number;
  headers?: Record<string, string>;
  /** Turns the private-address guard off (cloud metadata stays refused); for tests and users who ask for it. */
  allowPrivate?: boolean;
  /**
   * Hosts fetched whatever they resolve to, metadata included, compared with the URL's host
   * (`docs.internal`, `127.0.0.1:8080`, `[::1]:3000`); `host:port` with the default port also matches.
   */
  allowHosts?: string[];
  /** Resolves a host name to every address it has; the default is the system resolver. */
  lookup?: HostResolver;
  /** Opens the connection of each request (node's `createConnection`); the default is a plain TCP/TLS connect. For tests. */
  createConnection?: RequestOptions["createConnection"];
}

export interface FetchedResource {
  /** The final URL, after redirects. */
  url: string;
  status: number;
  headers: Record<string, string>;
  /** The Content-Type header as sent (with its charset), or "" when there is none. */
  contentType: string;
  body: Buffer;
}

export type FetchFailure = "url" | "blocked" | "dns" | "network" | "timeout" | "too_large" | "redirects" | "status";

/** A fetch that did not produce a body; `detail` says why without repeating the URL, for observations. */
export class FetchError extends Error {
  readonly kind: FetchFailure;
  /** The URL that failed: after a redirect, the redirect's target. */
  readonly url: string;
  readonly detail: string;
  readonly status?: number;
  constructor(kind: FetchFailure, url: string, detail: string, status?: number) {
    super(`cannot fetch ${url}: ${detail}`);
    this.name = "FetchError";
    this.kind = kind;
    this.url = url;
    this.detail = detail;
    this.status = status;
  }
}

/** The URL's host is, or resolves to, an address the guard refuses. */
export class BlockedAddressError extends FetchError {
  readonly address: string;
  constructor(url: string, address: string, why: string) {
    super("blocked", url, `${why} (private, loopback, link-local and cloud metadata addresses are blocked)`);
    this.message = `refused to fetch ${url}: ${this.detail}`;
    this.name = "BlockedAddressError";
    this.address = address;
  }
}

const DEFAULTS = { timeoutMs: 20_000, maxBytes: 10 * 1024 * 1024, maxRedirects: 5 };
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Host names that reach a cloud provider's instance metadata service from inside the instance. */
const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal", "metadata.azure.internal"]);

function blockList(ranges: string[]): BlockList {
  const list = new BlockList();
  for (const range of ranges) {
    const [network, prefix] = range.split("/") as [string, string];
    const type = network.includes(":") ? "ipv6" : "ipv4";
    if (prefix === undefined) list.addAddress(network, type);
    else list.addSubnet(network, Number(prefix), type);
  }
  return list;
}

/** Checked in order, so the metadata addresses are named before the ranges that contain them. */
const METADATA = { why: "the cloud metadata address", list: blockList(["169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"]) };
const RANGES: Array<{ why: string; list: BlockList }> = [
  { why: "an unspecified address", list: blockList(["0.0.0.0/8", "::/128"]) },
  { why: "a loopback address", list: blockList(["127.0.0.0/8", "::1/128"]) },
  { why: "a private address", list: blockList(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]) },
  { why: "a carrier-grade NAT (shared) address", list: blockList(["100.64.0.0/10"]) },
  { why: "a link-local address", list: blockList(["169.254.0.0/16", "fe80::/10"]) },
  { why: "a unique-local (private) address", list: blockList(["fc00::/7"]) },
  { why: "a multicast address", list: blockList(["224.0.0.0/4", "ff00::/8"]) },
  { why: "a reserved address", list: blockList(["192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4", "::/96", "100::/64", "2001:db8::/32"]) },
];

/** The 8 hextets of an IPv6 address (a trailing dotted quad is folded in). */
function hextets(address: string): number[] {
  let text = address;
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad[1]!.split(".").map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? (text.split("::") as [string, string]) : [text, undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const middle = tail === undefined ? [] : Array(8 - left.length - right.length).fill("0");
  return [...left, ...middle, ...right].map((h) => parseInt(h, 16));
}

/** The IPv4 address an IPv6 address carries: IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d). */
function embeddedIPv4(address: string): string | undefined {
  const h = hextets(address);
  const mapped = h.slice(0, 5).every((x) => x === 0) && h[5] === 0xffff;
  const nat64 = h[0] === 0x64 && h[1] === 0xff9b && h.slice(2, 6).every((x) => x === 0);
  if (!mapped && !nat64) return undefined;
  return [h[6]! >> 8, h[6]! & 0xff, h[7]! >> 8, h[7]! & 0xff].join(".");
}

/** What kind of refused address this is ("a loopback address"), or undefined when it may be fetched. */
function refusedKind(address: string, allowPrivate: boolean): string | undefined {
  const type = isIP(address) === 4 ? "ipv4" : "ipv6";
  if (METADATA.list.check(address, type)) return METADATA.why;
  if (allowPrivate) return undefined;
  return RANGES.find((r) => r.list.check(address, type))?.why;
}

/** A refused address as shown in messages ("::ffff:7f00:1 (127.0.0.1 in IPv6 form)") and what kind it is. */
function classify(address: string, allowPrivate: boolean): { shown: string; kind: string } | undefined {
  const bare = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const family = isIP(bare);
  if (family === 0) return { shown: bare, kind: "not an IP address" };
  const inner = family === 6 ? embeddedIPv4(bare) : undefined;
  const kind = refusedKind(inner ?? bare, allowPrivate);
  return kind ? { shown: inner ? `${bare} (${inner} in IPv6 form)` : bare, kind } : undefined;
}

/** Why an address is refused ("10.0.0.5 is a private address"), or undefined when it may be fetched. */
export function blockedAddressReason(address: string, options: { allowPrivate?: boolean } = {}): string | undefined {
  const hit = classify(address, options.allowPrivate ?? false);
  return hit && `${hit.shown} is ${hit.kind}`;
}

const DEFAULT_PORT: Record<string, string> = { "http:": "80", "https:": "443" };

function hostAllowed(url: URL, allowHosts: string[] | undefined): boolean {
  if (!allowHosts?.length) return false;
  const host = url.host.toLowerCase();
  const withPort = `${url.hostname.toLowerCase()}:${url.port || DEFAULT_PORT[url.protocol]}`;
  return allowHosts.some((entry) => {
    const e = entry.trim().toLowerCase();
    return e === host || e === withPort;
  });
}

const systemResolver: HostResolver = async (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** Resolves the URL's host and checks every address; returns the addresses to connect to. */
async function checkedAddresses(url: URL, options: GuardedFetchOptions): Promise<ResolvedAddress[]> {
  const href = url.href;
  const hostname = url.hostname.replace(/^\[|\]$/g, "").replace(/\.$/, "").toLowerCase();
  const allowed = hostAllowed(url, options.allowHosts);
  if (!allowed && METADATA_HOSTS.has(hostname)) {
    throw new BlockedAddressError(href, hostname, `${hostname} is a cloud metadata host name`);
  }
  let addresses: ResolvedAddress[];
  const family = isIP(hostname);
  if (family !== 0) {
    addresses = [{ address: hostname, family }];
  } else {
    try {
      addresses = await (options.lookup ?? systemResolver)(hostname);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new FetchError("dns", href, `cannot resolve host ${hostname}${code ? ` (${code})` : ""}`);
    }
    if (addresses.length === 0) throw new FetchError("dns", href, `host ${hostname} has no addresses`);
  }
  if (!allowed) {
    for (const { address } of addresses) {
      const hit = classify(address, options.allowPrivate ?? false);
      if (hit) {
        const why = family !== 0 ? `${hit.shown} is ${hit.kind}` : `${hostname} resolves to ${hit.shown}, ${hit.kind}`;
        throw new BlockedAddressError(href, address, why);
      }
    }
  }
  return addresses;
}

/** A resolver for the socket that answers with the addresses already checked, so DNS cannot change between check and connect. */
function pinnedLookup(addresses: ResolvedAddress[]): LookupFunction {
  return ((_hostname: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (opts?.all) callback(null, addresses);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  }) as unknown as LookupFunction;
}

function flatHeaders(res: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

/** The body, decompressed; pipeline() so that a connection cut or aborted mid-body fails the read instead of stalling it. */
function decoded(res: IncomingMessage): Readable {
  const encoding = (res.headers["content-encoding"] ?? "").trim().toLowerCase();
  const decoder =
    encoding === "gzip" || encoding === "x-gzip" ? createGunzip() : encoding === "deflate" ? createInflate() : encoding === "br" ? createBrotliDecompress() : undefined;
  return decoder ? pipeline(res, decoder, () => {}) : res;
}

/** Rejects when the signal aborts: a resolver that hangs must not outlive the timeout. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => (signal.removeEventListener("abort", onAbort), resolve(value)),
      (err) => (signal.removeEventListener("abort", onAbort), reject(err)),
    );
  });
}

interface Hop {
  res: IncomingMessage;
  abort: () => void;
}

function requestOnce(url: URL, addresses: ResolvedAddress[], headers: Record<string, string>, signal: AbortSignal, createConnection: GuardedFetchOptions["createConnection"]): Promise<Hop> {
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    // Node uses a request's own createConnection only when it has no agent.
    const connection = createConnection ? { createConnection } : { agent: false as const };
    const req = send(url, { method: "GET", headers, lookup: pinnedLookup(addresses), signal, ...connection });
    req.once("response", (res) => resolve({ res, abort: () => req.destroy() }));
    req.once("error", reject);
    req.end();
  });
}

async function readBody(stream: Readable, href: string, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      stream.destroy();
      throw new FetchError("too_large", href, `the response is over the ${maxBytes}-byte limit`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function describeNetworkError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === "ECONNREFUSED") return "connection refused";
  if (e?.code === "ECONNRESET") return "connection reset by the server";
  const message = (e?.message ?? String(err)).split("\n")[0]!;
  return e?.code && !message.includes(e.code) ? `${message} (${e.code})` : message;
}

const STRIPPED_ACROSS_ORIGINS = ["authorization", "cookie", "proxy-authorization"];

/** The request headers of a fetch: Loupe's, then the caller's (names lowercased, so the caller's win). */
function requestHeaders(options: GuardedFetchOptions): Record<string, string> {
  return {
    "user-agent": "Loupe/0.1 (research agent; web_visit)",
    accept: "text/html,application/xhtml+xml,application/pdf;q=0.9,text/plain;q=0.8,*/*;q=0.5",
    "accept-encoding": "gzip, deflate, br",
    ...Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
  };
}

/** Sends one GET to a URL, after checking its scheme and the addresses its host resolves to. */
async function openHop(current: URL, headers: Record<string, string>, options: GuardedFetchOptions, signal: AbortSignal): Promise<Hop> {
  const href = current.href;
  if (current.protocol !== "http:" && current.protocol !== "https:") {
    throw new FetchError("url", href, `only http and https URLs can be fetched, not ${current.protocol.replace(/:$/, "")}`);
  }
  const addresses = await untilAborted(checkedAddresses(current, options), signal);
  try {
    return await requestOnce(current, addresses, headers, signal, options.createConnection);
  } catch (err) {
    if (signal.aborted) throw err;
    throw new FetchError("network", href, describeNetworkError(err));
  }
}

/** Where a redirect response points (its connection is closed), or undefined when the response is not a redirect. */
function redirectTarget(hop: Hop, current: URL, redirects: number, maxRedirects: number): URL | undefined {
  const { res } = hop;
  const status = res.statusCode ?? 0;
  if (!REDIRECTS.has(status)) return undefined;
  const href = current.href;
  const location = res.headers.location;
  hop.abort();
  if (!location) throw new FetchError("status", href, `HTTP ${status} redirect without a Location header`, status);
  if (redirects >= maxRedirects) throw new FetchError("redirects", href, `more than ${maxRedirects} redirects`);
  try {
    return new URL(location, current);
  } catch {
    throw new FetchError("status", href, `HTTP ${status} redirect to an invalid URL`, status);
  }
}

/** The resource of a final (non-redirect) response: a 2xx status and a body within the limit, else a FetchError. */
async function readResource(hop: Hop, href: string, maxBytes: number, signal: AbortSignal): Promise<FetchedResource> {
  const { res } = hop;
  const status = res.statusCode ?? 0;
  if (status < 200 || status > 299) {
    hop.abort();
    throw new FetchError("status", href, `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ""}`, status);
  }
  const declared = Number(res.headers["content-length"] ?? NaN);
  if (declared > maxBytes && !res.headers["content-encoding"]) {
    hop.abort();
    throw new FetchError("too_large", href, `the response is ${declared} bytes, over the ${maxBytes}-byte limit`);
  }
  let body: Buffer;
  try {
    body = await readBody(decoded(res), href, maxBytes);
  } catch (err) {
    if (err instanceof FetchError || signal.aborted) throw err;
    throw new FetchError("network", href, `reading the response failed: ${describeNetworkError(err)}`);
  }
  const responseHeaders = flatHeaders(res);
  return { url: href, status, headers: responseHeaders, contentType: responseHeaders["content-type"] ?? "", body };
}

/**
 * Fetches a URL from the open web with GET. Refuses non-http(s) URLs and hosts that are or resolve
 * to private, loopback, link-local, multicast or metadata addresses, on the first request and on
 * every redirect; connects only to the addresses it checked. Throws FetchError (BlockedAddressError
 * for refusals) for anything but a 2xx response with a body within the limits; the caller's own
 * abort is rethrown as is.
 */
export async function guardedFetch(url: string, options: GuardedFetchOptions = {}): Promise<FetchedResource> {
  const timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
  const maxBytes = options.maxBytes ?? DEFAULTS.maxBytes;
  const maxRedirects = options.maxRedirects ?? DEFAULTS.maxRedirects;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let headers = requestHeaders(options);

  let current: URL;
  try {
    current = new URL(url);
  } catch {
    throw new FetchError("url", url, "it is not a valid URL");
  }
  let hop: Hop | undefined;
  try {
    for (let redirects = 0; ; redirects++) {
      hop = await openHop(current, headers, options, signal);
      const next = redirectTarget(hop, current, redirects, maxRedirects);
      if (!next) return await readResource(hop, current.href, maxBytes, signal);
      if (next.origin !== current.origin) {
        headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !STRIPPED_ACROSS_ORIGINS.includes(k)));
      }
      current = next;
    }
  } catch (err) {
    hop?.abort();
    if (options.signal?.aborted) throw options.signal.reason ?? err;
    if (timeout.aborted && !(err instanceof FetchError)) {
      throw new FetchError("timeout", current.href, `no complete response within ${timeoutMs} ms`);
    }
    throw err;
  }
}
