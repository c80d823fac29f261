// What every search provider shares: one JSON-over-HTTP call with a time limit and errors a person
// (or the model) can act on, and a wrapper that adds a per-provider concurrency limit, a rate limit,
// and retries of 429/5xx with exponential backoff and jitter.
import PQueue from "p-queue";
import pRetry, { AbortError } from "p-retry";
import { SearchProviderError, type SearchProvider } from "./provider.js";

export interface ProviderHttpOptions {
  /** Provider name as shown to the model and in cache keys, e.g. "serper-lens". */
  provider: string;
  /** Human name for messages, e.g. "Serper". */
  label: string;
  /** The environment variable holding the key, named when the key is refused. */
  keyVariable?: string;
  /** Secrets to scrub from anything that ends up in a message. */
  secrets?: Array<string | undefined>;
  timeoutMs: number;
}

export function scrubber(secrets: Array<string | undefined> = []): (text: string) => string {
  const real = secrets.filter((s): s is string => typeof s === "string" && s.length >= 4);
  return (text) => real.reduce((out, secret) => out.replaceAll(secret, "***").replaceAll(encodeURIComponent(secret), "***"), text);
}

/** Makes one request and returns its JSON body, or throws a SearchProviderError saying what went wrong. */
export async function requestJson(
  options: ProviderHttpOptions,
  url: string | URL,
  init: RequestInit & { signal?: AbortSignal } = {},
): Promise<unknown> {
  const scrub = scrubber(options.secrets);
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
  const where = scrub(new URL(url).origin);
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal });
  } catch (err) {
    if (init.signal?.aborted) throw init.signal.reason ?? err;
    if (timeout.aborted) {
      throw new SearchProviderError(options.provider, `${options.label} did not answer within ${options.timeoutMs < 1000 ? `${options.timeoutMs} ms` : `${Math.round(options.timeoutMs / 1000)} s`} (${where}); try again later or another approach`, undefined, "timeout");
    }
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new SearchProviderError(options.provider, `${options.label} could not be reached at ${where} (${scrub(cause?.code ?? cause?.message ?? (err as Error).message)})`, undefined, "network");
  }
  const text = await res.text().catch(() => "");
  if (res.status === 401 || res.status === 403) {
    const hint = options.keyVariable ? `; set a valid ${options.keyVariable}` : "";
    throw new SearchProviderError(options.provider, `${options.label} refused the request (HTTP ${res.status}: ${scrub(detailOf(text))})${hint}`, res.status, "auth");
  }
  if (res.status === 429) {
    throw new SearchProviderError(options.provider, `${options.label} rate limit reached (HTTP 429); try again later`, 429, "rate", retryAfterMs(res.headers.get("retry-after")));
  }
  if (!res.ok) {
    const kind = res.status >= 500 ? "server" : "request";
    throw new SearchProviderError(options.provider, `${options.label} answered HTTP ${res.status} (${scrub(detailOf(text))})`, res.status, kind);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new SearchProviderError(options.provider, `${options.label} answered something that is not JSON (${scrub(text.slice(0, 80))})`, res.status, "server");
  }
}

function detailOf(body: string): string {
  try {
    const json = JSON.parse(body) as Record<string, unknown>;
    const message = json.error ?? json.message ?? json.detail;
    if (typeof message === "string") return message.slice(0, 200);
    if (message && typeof message === "object" && typeof (message as { message?: unknown }).message === "string") {
      return ((message as { message: string }).message).slice(0, 200);
    }
  } catch {
    // not JSON: use the text
  }
  return body.replace(/\s+/g, " ").trim().slice(0, 200) || "no details";
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

export interface ResilienceOptions {
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Requests started per second at most (default 5). */
  ratePerSecond?: number;
  /** Retries of a retryable failure (default 3). */
  retries?: number;
  /** First retry delay in ms; doubles each time, randomised (default 500). */
  retryBaseMs?: number;
  /** Longest wait honoured from a Retry-After header (default 10 s). */
  maxRetryAfterMs?: number;
}

/** Failures worth another try: rate limits, server errors, dropped connections. Not auth, bad requests or timeouts. */
export function isRetryable(err: unknown): boolean {
  if (!(err instanceof SearchProviderError)) return false;
  if (err.kind) return err.kind === "rate" || err.kind === "server" || err.kind === "network";
  // Errors from client libraries (Tavily) carry only the status.
  return err.status === 429 || (err.status !== undefined && err.status >= 500);
}

/** How a failed call is retried: how often, from which first delay, and the longest Retry-After honoured. */
interface RetryPolicy {
  retries: number;
  baseMs: number;
  maxRetryAfterMs: number;
}

/**
 * One try of a call through the queue. A failure that is not retryable ends the retries; a
 * retryable one first waits what the server asked for (Retry-After), when that is reasonable.
 */
async function attempt<T>(queue: PQueue, policy: RetryPolicy, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return (await queue.add(fn, { signal })) as T;
  } catch (err) {
    if (!isRetryable(err)) throw err instanceof Error ? new AbortError(err) : err;
    const wait = (err as SearchProviderError).retryAfterMs;
    if (wait !== undefined && wait > policy.baseMs && wait <= policy.maxRetryAfterMs) await new Promise((r) => setTimeout(r, wait));
    throw err;
  }
}

/**
 * Wraps a provider so that its calls share one queue (concurrency and rate limit) and retryable
 * failures are retried with backoff and jitter. Everything else passes through unchanged.
 */
export function resilientProvider<P extends SearchProvider>(provider: P, options: ResilienceOptions = {}): P {
  const ratePerSecond = options.ratePerSecond ?? 5;
  // p-queue's rate limit is "intervalCap starts per interval"; a 1-request cap keeps starts evenly spaced.
  const interval = Math.max(1, Math.round(1000 / ratePerSecond));
  const queue = new PQueue({ concurrency: options.concurrency ?? 4, intervalCap: 1, interval });
  const policy: RetryPolicy = { retries: options.retries ?? 3, baseMs: options.retryBaseMs ?? 500, maxRetryAfterMs: options.maxRetryAfterMs ?? 10_000 };

  function run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return pRetry(() => attempt(queue, policy, fn, signal), { retries: policy.retries, minTimeout: policy.baseMs, factor: 2, randomize: true, signal });
  }

  const wrapped = Object.create(provider) as P;
  if (provider.textSearch) {
    const op = provider.textSearch.bind(provider);
    wrapped.textSearch = (query, requestOptions) => run(() => op(query, requestOptions), requestOptions.signal);
  }
  if (provider.webVisit) {
    const op = provider.webVisit.bind(provider);
    wrapped.webVisit = (urls, requestOptions) => run(() => op(urls, requestOptions), requestOptions.signal);
  }
  if (provider.imageSearch) {
    const op = provider.imageSearch.bind(provider);
    wrapped.imageSearch = (image, requestOptions) => run(() => op(image, requestOptions), requestOptions.signal);
  }
  return wrapped;
}
