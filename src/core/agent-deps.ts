// What the agent's nodes depend on (settings, model client, image store, search providers), and a run's settings from its context.
import { commaList, ConfigError, ENV_VARS, RunContextSchema, type LoupeConfig } from "./config.js";
import { z } from "zod/v4";
import { describeIssues } from "./issues.js";
import type { ImageStore } from "./images.js";
import type { ModelClient } from "./model.js";
import type { ImageUrlFor } from "./messages.js";
import type { CodeSandbox } from "./sandbox.js";
import type { SearchProvider } from "./search-provider.js";

/** Built by a factory (src/runtime's createDeps, or a test's fakes), never module singletons, so any part can be swapped. */
export interface AgentDeps {
  /** Settings used when a run's context does not override them. */
  defaults: LoupeConfig;
  images: ImageStore;
  search: SearchProvider[];
  /** The model client for a run's settings (a run may point at another server or model). */
  model(config: LoupeConfig): ModelClient;
  /** Reads an input image (file path, http(s) URL or data: URL); the served graph takes URLs only. Default: readImageSource. */
  readImage?: (source: string, signal?: AbortSignal) => Promise<Buffer>;
  /** Where people see a stored image (the image route's signed URL), for the messages channel; without it, images are named, not linked. */
  imageUrl?: ImageUrlFor;
  /** Runs the code tool's cells in isolation (default: the bubblewrap sandbox of tools/code). */
  sandbox?: CodeSandbox;
  /** Releases open resources (the search cache database, the Postgres pool). */
  close(): void | Promise<void>;
}

/**
 * A run's context may choose another model server only among the origins the server allows: else
 * any API client could make the server send requests (and the conversation) to any address.
 */
function checkModelOrigin(defaults: LoupeConfig, modelUrl: string): void {
  const origin = new URL(modelUrl).origin;
  if (origin === new URL(defaults.modelUrl).origin) return;
  const allowed = commaList(defaults.modelUrlAllow).map((o) => o.replace(/\/+$/, ""));
  if (allowed.some((o) => URL.canParse(o) && new URL(o).origin === origin)) return;
  throw new ConfigError(
    `a run's modelUrl may point only at the configured model server (${new URL(defaults.modelUrl).origin}); add ${origin} to ${ENV_VARS.modelUrlAllow} on the server to allow it`,
  );
}

/**
 * The context schema the graphs declare: any object. LangGraph would otherwise validate a run's
 * context against RunContextSchema itself and fail with zod's raw issue list; runSettings checks
 * it instead and names what is wrong. What Studio shows comes from RunContextSchema (src/server).
 */
export const AnyRunContext = z.looseObject({});

/**
 * A run's settings: the defaults, with what the run's context (e.g. Studio's form, an API client)
 * changes. Only the run-context keys count (RunContextSchema); others are process settings and are
 * ignored. A value out of bounds is a ConfigError naming the key.
 */
export function runSettings(deps: AgentDeps, context: unknown): LoupeConfig {
  if (!context || typeof context !== "object" || Object.keys(context).length === 0) return deps.defaults;
  // Every node of a run asks with the same context object: parse it once, not once per node.
  const cached = parsedContexts.get(context);
  if (cached?.defaults === deps.defaults) return cached.settings;
  const defined = Object.fromEntries(Object.entries(context).filter(([, v]) => v !== undefined && v !== null));
  const parsed = RunContextSchema.safeParse(defined);
  if (!parsed.success) throw new ConfigError(`invalid run context: ${describeIssues(parsed.error.issues)}`);
  const changes = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
  const settings: LoupeConfig = { ...deps.defaults, ...changes };
  if (changes.modelUrl !== undefined) checkModelOrigin(deps.defaults, settings.modelUrl);
  parsedContexts.set(context, { defaults: deps.defaults, settings });
  return settings;
}

const parsedContexts = new WeakMap<object, { defaults: LoupeConfig; settings: LoupeConfig }>();
