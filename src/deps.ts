// What the agent's nodes depend on (model client, image store, search providers), built by a factory, never module singletons.
import { join, resolve } from "node:path";
import { LoupeConfigSchema, type LoupeConfig, type LoupeSecrets } from "./config.js";
import { ImageStore } from "./images.js";
import { OpenAICompatibleModel, type ModelClient } from "./model.js";
import type { SearchProvider } from "../tools/search/provider.js";
import { createTavilyProvider } from "../tools/search/tavily.js";

export interface AgentDeps {
  /** Settings used when a run's context does not override them. */
  defaults: LoupeConfig;
  images: ImageStore;
  search: SearchProvider[];
  /** The model client for a run's settings (a run may point at another server or model). */
  model(config: LoupeConfig): ModelClient;
}

export function searchProvidersFrom(config: LoupeConfig, secrets: LoupeSecrets): SearchProvider[] {
  const providers: SearchProvider[] = [];
  if (secrets.tavilyApiKey) {
    providers.push(createTavilyProvider({ apiKey: secrets.tavilyApiKey, baseUrl: config.tavilyUrl }));
  }
  return providers;
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
  return {
    defaults: config,
    images,
    search: overrides.search ?? searchProvidersFrom(config, secrets),
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
