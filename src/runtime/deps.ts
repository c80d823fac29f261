// The composition root: builds the agent's dependencies (model clients, image store, search providers behind the cache) from configuration and secrets.
import { bubblewrapSandbox } from "../../tools/code/tool.js";
import { readImageSource } from "../core/image-sources.js";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { AgentDeps } from "../core/agent-deps.js";
import { commaList, ConfigError, type LoupeConfig, type LoupeSecrets } from "../core/config.js";
import { ImageStore, type ImageMime } from "../core/images.js";
import { OpenAICompatibleModel, type ModelClient } from "../core/model.js";
import type { SearchProvider } from "../../tools/search/provider.js";
import { cachedProvider, cacheOnlyProvider, parseTtl, SearchCache, searchCachePath, type SearchCacheStore } from "../../tools/search/cache.js";
import { PostgresSearchCache } from "../../tools/search/cache-postgres.js";
import { LoupeDatabase, PostgresImageBlobs } from "../core/postgres.js";
import { createCorpusProvider } from "../../tools/search/corpus.js";
import { createTavilyProvider } from "../../tools/search/tavily.js";
import { resilientProvider } from "../../tools/search/resilience.js";
import { createSerperProviders, type PublicImageUrl } from "../../tools/search/serper.js";
import { createSerpApiLensProvider } from "../../tools/search/serpapi.js";
import { createSearxngProvider } from "../../tools/search/searxng.js";
import { imageRouteSecret, signedImageUrls, type SignedImageUrls } from "../core/image-urls.js";
import { createDirectWebProvider } from "../../tools/search/web.js";
import { toolSpecs } from "../../tools/index.js";

/** The agent's dependencies as the composition root builds them: with the search cache and the shared database. */
export interface RuntimeDeps extends AgentDeps {
  /** The search cache the providers go through (absent in live mode), e.g. to import benchmark results into. */
  searchCache?: SearchCacheStore;
  /** The shared Postgres database when LOUPE_DATABASE_URL is set (images, search cache; the checkpointer can share it). */
  database?: LoupeDatabase;
}

export function corpusPath(config: Pick<LoupeConfig, "corpus" | "dataDir">): string {
  return resolve(config.corpus ?? join(config.dataDir, "corpus.sqlite"));
}

/**
 * The configured search providers: paid web APIs (rate-limited, retried, behind the search cache
 * unless its mode is live), SearXNG, and the local corpus when an index exists (local and free, so
 * never cached). LOUPE_SEARCH_PROVIDERS narrows the set by name.
 */
export function searchProvidersFrom(
  config: LoupeConfig,
  secrets: LoupeSecrets,
  cache: SearchCacheStore | null,
  summarizer?: ModelClient,
  publicImageUrl?: PublicImageUrl,
): SearchProvider[] {
  const timeoutMs = config.searchTimeoutMs;
  let remote: SearchProvider[] = [];
  if (secrets.tavilyApiKey) {
    remote.push(createTavilyProvider({ apiKey: secrets.tavilyApiKey, baseUrl: config.tavilyUrl, timeoutSeconds: Math.ceil(timeoutMs / 1000) }));
  }
  if (secrets.serperApiKey) {
    remote.push(...createSerperProviders({ apiKey: secrets.serperApiKey, baseUrl: config.serperUrl, timeoutMs, publicImageUrl }));
  }
  if (secrets.serpapiApiKey) {
    remote.push(createSerpApiLensProvider({ apiKey: secrets.serpapiApiKey, baseUrl: config.serpapiUrl, timeoutMs, publicImageUrl }));
  }
  if (config.searxngUrl) remote.push(createSearxngProvider({ baseUrl: config.searxngUrl, timeoutMs }));
  const wanted = commaList(config.searchProviders);
  const chosen = (name: string) => wanted.length === 0 || wanted.includes(name);
  remote = remote
    .filter((p) => chosen(p.name))
    .map((p) =>
      resilientProvider(p, {
        concurrency: config.searchConcurrency,
        ratePerSecond: config.searchRatePerSecond,
        retries: config.searchRetries,
      }),
    );
  if (cache && config.searchCache !== "live") {
    const keys = [secrets.tavilyApiKey, secrets.serperApiKey, secrets.serpapiApiKey, secrets.apiKey].filter((k): k is string => Boolean(k));
    // Replaying a cache that holds imported reverse-search results (MMSearch) needs no Lens key.
    if ((config.searchCache === "replay" || config.cachedImageSearch) && !remote.some((p) => p.imageSearch) && chosen("serper-lens")) {
      remote.push(cacheOnlyProvider("serper-lens", ["imageSearch"]));
    }
    remote = remote.map((p) => cachedProvider(p, cache, config.searchCache, { secrets: keys }));
  }
  const corpus = corpusPath(config);
  if (config.corpus && !existsSync(corpus)) {
    throw new ConfigError(`no corpus index at ${corpus} (LOUPE_CORPUS); build one with: loupe index DIR`);
  }
  const providers = existsSync(corpus) && chosen("corpus") ? [createCorpusProvider(corpus), ...remote] : remote;
  // Pages are read directly (guarded against private addresses, summarised toward the goal) once
  // any search is configured; with none, the agent stays in image-only "General" mode.
  if (providers.length > 0 && config.webVisit === "direct" && chosen("web")) {
    const allowHosts = commaList(config.webAllowHosts);
    let web = createDirectWebProvider({ fetch: { allowHosts }, summarize: summarizer ? { model: summarizer } : undefined });
    if (cache && config.searchCache !== "live") web = cachedProvider(web, cache, config.searchCache, {});
    return [...providers, web];
  }
  return providers;
}

/** The signer of the image route's URLs for this configuration, made on first use (its secret read, or made, then). */
export function imageSignerFor(config: LoupeConfig, secrets: LoupeSecrets): () => SignedImageUrls {
  let urls: SignedImageUrls | undefined;
  return () => (urls ??= signedImageUrls(imageRouteSecret(config.dataDir, secrets.publicImageSecret)));
}

/**
 * Where people see a stored image in the messages channel: its signed URL under
 * LOUPE_PUBLIC_IMAGE_BASE_URL, else its path on the server's image route (/images/…).
 */
export function messageImageUrlsFor(config: LoupeConfig, signer: () => SignedImageUrls): (image: { sha256: string; mime: ImageMime }) => string {
  return (image) => (config.publicImageBaseUrl ? signer().urlFor(image, config.publicImageBaseUrl) : signer().pathFor(image));
}

/** Signed public URLs for store images, when LOUPE_PUBLIC_IMAGE_BASE_URL is set (reverse image search needs them). */
export function publicImageUrlsFor(config: LoupeConfig, signer: () => SignedImageUrls): PublicImageUrl | undefined {
  if (!config.publicImageBaseUrl) return undefined;
  const urls = signer();
  const base = config.publicImageBaseUrl;
  return (image) => urls.urlFor(image as { sha256: string; mime: ImageMime }, base);
}

/**
 * An image reader that takes the image route's signed paths and URLs (/images/<sha256>-<token>.<ext>:
 * an upload the server stored, an image a thread holds) from the store itself, and any other source from `read`.
 */
export function storedImagesFirst(store: ImageStore, signer: () => SignedImageUrls, read: (source: string, signal?: AbortSignal) => Promise<Buffer>) {
  return (source: string, signal?: AbortSignal): Promise<Buffer> => {
    const path = source.startsWith("/") ? source : URL.canParse(source) && /^https?:/.test(source) ? new URL(source).pathname : undefined;
    const image = path?.startsWith("/images/") ? signer().verify(path) : null;
    return image ? store.read(image) : read(source, signal);
  };
}

/** The image store: files in the data directory, backed by the shared database when there is one. */
export function imageStoreFor(config: LoupeConfig, database?: LoupeDatabase): ImageStore {
  const blobs = database ? new PostgresImageBlobs(database) : undefined;
  return new ImageStore(join(resolve(config.dataDir), "images"), { maxInputPixels: config.maxInputPixels, blobs });
}

/** Builds the real dependencies from configuration and secrets; any part can be replaced. */
export function createDeps(
  config: LoupeConfig,
  secrets: LoupeSecrets,
  overrides: Partial<Omit<RuntimeDeps, "defaults">> = {},
): RuntimeDeps {
  const ownsDatabase = !overrides.database && Boolean(config.databaseUrl);
  const database = overrides.database ?? (config.databaseUrl ? new LoupeDatabase(config.databaseUrl) : undefined);
  const images = overrides.images ?? imageStoreFor(config, database);
  const clients = new Map<string, ModelClient>();
  const ttlMs = parseTtl(config.searchCacheTtl);
  const cache: SearchCacheStore | null =
    overrides.search || config.searchCache === "live"
      ? null
      : database
        ? new PostgresSearchCache(database, { ttlMs })
        : new SearchCache(searchCachePath(resolve(config.dataDir)), { ttlMs });
  let model: RuntimeDeps["model"];
  const summarizer: ModelClient = {
    get url() {
      return model(config).url;
    },
    modelName: () => model(config).modelName(),
    complete: (turns, options) => model(config).complete(turns, options),
  };
  const signer = imageSignerFor(config, secrets);
  const search = overrides.search ?? searchProvidersFrom(config, secrets, cache, summarizer, publicImageUrlsFor(config, signer));
  return {
    defaults: config,
    images,
    search,
    searchCache: cache ?? undefined,
    database,
    readImage: storedImagesFirst(images, signer, overrides.readImage ?? readImageSource),
    sandbox: overrides.sandbox ?? bubblewrapSandbox,
    imageUrl: overrides.imageUrl ?? messageImageUrlsFor(config, signer),
    close: async () => {
      await cache?.close();
      for (const provider of search) (provider as { close?: () => void }).close?.();
      if (ownsDatabase) await database?.end();
    },
    model: (model =
      overrides.model ??
      ((runConfig) => {
        const key = JSON.stringify([runConfig.modelUrl, runConfig.model, runConfig.temperature, runConfig.maxTokens, runConfig.timeoutMs, runConfig.retries, runConfig.stream]);
        let client = clients.get(key);
        if (!client) {
          // A run's context may point at another model server: the configured server's key is not sent there.
          const apiKey = new URL(runConfig.modelUrl).origin === new URL(config.modelUrl).origin ? secrets.apiKey : undefined;
          client = new OpenAICompatibleModel({ config: runConfig, apiKey, images, toolSpecs });
          clients.set(key, client);
        }
        return client;
      })),
  };
}

