// What the agent's nodes depend on (model client, image store, search providers), built by a factory, never module singletons.
import { join, resolve } from "node:path";
import { LoupeConfigSchema, type LoupeConfig, type LoupeSecrets } from "./config.js";
import { ImageStore } from "./images.js";
import { OpenAICompatibleModel, type ModelClient } from "./model.js";
import type { SearchProvider } from "../tools/search/provider.js";
import { cachedProvider, parseTtl, SearchCache, searchCachePath } from "../tools/search/cache.js";
import { createTavilyProvider } from "../tools/search/tavily.js";

export interface AgentDeps {
  /** Settings used when a run's context does not override them. */
  defaults: LoupeConfig;
  images: ImageStore;
  search: SearchProvider[];
  /** The model client for a run's settings (a run may point at another server or model). */
  model(config: LoupeConfig): ModelClient;
  /** Releases open resources (the search cache database). */
  close(): void;
}

/** The configured search providers, each behind the search cache (unless the cache mode is live). */
export function searchProvidersFrom(config: LoupeConfig, secrets: LoupeSecrets, cache: SearchCache | null): SearchProvider[] {
  const providers: SearchProvider[] = [];
  if (secrets.tavilyApiKey) {
    providers.push(createTavilyProvider({ apiKey: secrets.tavilyApiKey, baseUrl: config.tavilyUrl }));
  }
  if (!cache || config.searchCache === "live") return providers;
  const keys = [secrets.tavilyApiKey, secrets.apiKey].filter((k): k is string => Boolean(k));
  return providers.map((p) => cachedProvider(p, cache, config.searchCache, { secrets: keys }));
}

export function imageStoreFor(config: LoupeConfig): ImageStore {
  return new ImageStore(join(resolve(config.dataDir), "images"), { maxInputPixels: config.maxInputPixels });
}

/** Builds the real dependencies from configuration and secrets; any part can be replaced. */
export function createDeps(
  config: LoupeConfig,
  secrets: LoupeSecrets,
  overrides: Partial<Omit<AgentDeps, "defaults">> = {},
): AgentDeps {
  const images = overrides.images ?? imageStoreFor(config);
  const clients = new Map<string, ModelClient>();
  const cache =
    overrides.search || config.searchCache === "live"
      ? null
      : new SearchCache(searchCachePath(resolve(config.dataDir)), { ttlMs: parseTtl(config.searchCacheTtl) });
  return {
    defaults: config,
    images,
    search: overrides.search ?? searchProvidersFrom(config, secrets, cache),
    close: () => cache?.close(),
    model:
      overrides.model ??
      ((runConfig) => {
        const key = JSON.stringify([runConfig.modelUrl, runConfig.model, runConfig.temperature, runConfig.maxTokens, runConfig.timeoutMs, runConfig.retries, runConfig.stream]);
        let client = clients.get(key);
        if (!client) {
          client = new OpenAICompatibleModel({ config: runConfig, apiKey: secrets.apiKey, images });
          clients.set(key, client);
        }
        return client;
      }),
  };
}

/** A run's settings: the run's context (e.g. from Studio) over the defaults. */
export function runSettings(deps: AgentDeps, context: unknown): LoupeConfig {
  if (!context || typeof context !== "object" || Object.keys(context).length === 0) return deps.defaults;
  const defined = Object.fromEntries(Object.entries(context).filter(([, v]) => v !== undefined));
  return LoupeConfigSchema.parse({ ...deps.defaults, ...defined });
}
