// Loupe's configuration: one zod schema, filled from CLI flags, then LOUPE_* environment (and .env), then defaults.
import { existsSync } from "node:fs";
import { z } from "zod/v4";
import { describeIssues } from "./issues.js";

export const DIALECTS = ["tools", "tags"] as const;
export type Dialect = (typeof DIALECTS)[number];
export const COORDS = ["rel1000", "norm1", "pixel"] as const;
/** Whether the code tool is offered: auto (where the sandbox works), on (required), off. */
export const CODE_MODES = ["auto", "on", "off"] as const;
export type CodeMode = (typeof CODE_MODES)[number];
/** How a box's numbers are read: rel1000 (0-1000, Qwen3-VL), norm1 (0-1) or pixel. */
export type Coords = (typeof COORDS)[number];

/** The largest budgets a run may set (also what the served graph's step limit allows for). */
export const BUDGET_LIMITS = { maxToolCalls: 1000, maxTurns: 2000 } as const;

function parsedUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function hasCredentials(text: string): boolean {
  const url = parsedUrl(text);
  return Boolean(url && (url.username || url.password));
}

/**
 * Loupe's settings: the process's (from flags, environment and defaults) and a run's (RunContextSchema picks those).
 * Secrets (API keys) are deliberately not here: they come from the environment or flags
 * straight into the clients and never enter state, context or checkpoints.
 */
export const LoupeConfigSchema = z.object({
  modelUrl: z
    .string()
    .url({ protocol: /^https?$/, error: "needs an http(s) URL, e.g. http://localhost:8000/v1" })
    // The URL is printed in progress lines and errors and recorded with evaluation runs: keys go apart.
    .refine((url) => !hasCredentials(url), "must not hold credentials (user:password@); give the model server's key with LOUPE_API_KEY (or --api-key) instead")
    .default("http://localhost:8000/v1")
    .describe("Base URL of the OpenAI-compatible model server (vLLM), including /v1"),
  modelUrlAllow: z
    .string()
    .default("")
    .describe("Comma-separated origins (e.g. http://gpu-2:8000) a run's context may point modelUrl at besides the configured one; read from the server's own settings only"),
  model: z
    .string()
    .optional()
    .describe("Model name; default: the first id listed by GET {modelUrl}/models"),
  dialect: z
    .enum(DIALECTS)
    .default("tools")
    .describe("tools: OpenAI function calling (vLLM --enable-auto-tool-choice --tool-call-parser hermes); tags: R1V4 <think>/<tool_call>/<answer> text protocol"),
  maxToolCalls: z.int().min(0).max(BUDGET_LIMITS.maxToolCalls).default(24).describe("Budget of tool calls per question"),
  maxTurns: z.int().min(1).max(BUDGET_LIMITS.maxTurns).default(40).describe("Budget of model turns per question"),
  maxImagesInContext: z
    .int()
    .min(1)
    .max(256)
    .default(16)
    .describe("Most images sent to the model in one conversation (match vLLM --limit-mm-per-prompt)"),
  maxPixels: z
    .int()
    .min(28 * 28)
    .default(1_048_576)
    .describe("Largest image sent to the model, in pixels; bigger images are downscaled once, when first shown"),
  maxInputPixels: z
    .int()
    .min(1)
    .default(200_000_000)
    .describe("Refuse input images with more pixels than this (decompression-bomb guard)"),
  coords: z
    .enum(COORDS)
    .default("rel1000")
    .describe("Default box convention for image tools: rel1000 (0-1000, Qwen3-VL), norm1 (0-1) or pixel"),
  plan: z.boolean().default(false).describe("Ask the model for an up-front JSON plan before acting (R1V4 Plan mode)"),
  approvePlan: z
    .boolean()
    .default(false)
    .describe("Human in the loop: make the up-front plan (implies plan) and pause for a person to approve, edit or reject it before acting"),
  approveSearch: z
    .boolean()
    .default(false)
    .describe("Human in the loop: pause before each text_search or image_search call until a person approves or denies it"),
  approveWebVisit: z
    .boolean()
    .default(false)
    .describe("Human in the loop: pause before each web_visit call until a person approves or denies it"),
  temperature: z.number().min(0).max(2).default(0.2).describe("Sampling temperature"),
  maxTokens: z.int().min(16).default(4096).describe("Most tokens the model may generate per turn"),
  timeoutMs: z.int().min(100).default(300_000).describe("Time limit for one model request, in ms"),
  retries: z.int().min(0).max(20).default(4).describe("Retries of a failed model request (connection refused, 5xx, 429, timeout, cut stream)"),
  retryBaseMs: z.int().min(0).default(1000).describe("First retry delay in ms; doubles each retry, with jitter"),
  stream: z.boolean().default(true).describe("Stream model replies"),
  dataDir: z.string().default(".loupe").describe("Directory for the checkpoint database and the image store"),
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\/\S+$/, "must be a postgres:// or postgresql:// URL")
    .optional()
    .describe("PostgreSQL URL: checkpoints, images and the search cache then live there, shared by every worker (default: SQLite and files in the data directory)"),
  tavilyUrl: z.string().url().optional().describe("Tavily API base URL override"),
  webVisit: z
    .enum(["direct", "tavily"])
    .default("direct")
    .describe("Who reads pages for web_visit: direct (Loupe fetches them, refusing private addresses, and summarises long pages toward the goal) or tavily (Tavily extract)"),
  webAllowHosts: z
    .string()
    .default("")
    .describe("Comma-separated hosts (host or host:port) web_visit may fetch even though they are private, e.g. an intranet wiki"),
  corpus: z
    .string()
    .optional()
    .describe("Local corpus index built by `loupe index` (default <dataDir>/corpus.sqlite, used when it exists)"),
  searchCache: z
    .enum(["live", "read-write", "replay", "record"])
    .default("read-write")
    .describe("Search cache: live (none), read-write, replay (cache only, no network) or record (always refresh)"),
  searchCacheTtl: z.string().default("30d").describe("How long cached search results stay fresh: e.g. 7d, 12h, 90s, never"),
  searchMaxResults: z.int().min(1).max(20).default(5).describe("Results per search query"),
  serperUrl: z.string().url().optional().describe("Serper API base URL override (default https://google.serper.dev)"),
  serpapiUrl: z.string().url().optional().describe("SerpAPI base URL override (default https://serpapi.com)"),
  searxngUrl: z
    .string()
    .url()
    .optional()
    .describe("Base URL of a self-hosted SearXNG instance (JSON output enabled); turns on text_search through it"),
  publicImageBaseUrl: z
    .string()
    .url()
    .optional()
    .describe("Public base URL where `loupe serve-images` (or the server's /images route) is reachable; reverse image search (Lens) needs it"),
  searchProviders: z
    .string()
    .default("")
    .describe("Comma-separated search providers to use (corpus, tavily, serper, serper-lens, serpapi-lens, searxng, web); empty: every one that is configured"),
  cachedImageSearch: z
    .boolean()
    .default(false)
    .describe("Offer image_search from the search cache alone when no Lens key is set (imported benchmark results, e.g. MMSearch); replay mode always does"),
  searchConcurrency: z.int().min(1).max(64).default(4).describe("Requests in flight at once, per search provider"),
  searchRatePerSecond: z.number().min(0.01).max(1000).default(5).describe("Most requests started per second, per search provider"),
  searchRetries: z.int().min(0).max(10).default(3).describe("Retries of a search request answered 429 or 5xx (backoff with jitter)"),
  searchTimeoutMs: z.int().min(100).default(30_000).describe("Time limit for one search provider request, in ms"),
  observationChars: z
    .int()
    .min(200)
    .default(6000)
    .describe("Most characters of text one tool observation may put in the conversation"),
  toolImages: z
    .enum(["tool", "user"])
    .default("tool")
    .describe("Tools dialect: where a call's images, captions and notes go: into its tool message (tool; keeps the chat template's prefix whole) or a user turn after the tool messages (user; for servers that refuse images in tool messages)"),
  code: z
    .enum(CODE_MODES)
    .default("auto")
    .describe("The sandboxed Python code tool (R1V4's `code`): auto (offered when the bubblewrap sandbox works here), on (required: a run fails when the sandbox cannot run), off"),
  codeTimeoutMs: z.int().min(100).max(600_000).default(30_000).describe("Wall-clock limit of one code call, in ms; the code's whole process group is killed at the limit"),
  codeMemoryMb: z.int().min(64).max(65_536).default(2048).describe("Address-space limit of one code call, in MiB"),
  codeOutputBytes: z.int().min(1024).max(1_048_576).default(32_768).describe("Most bytes of stdout (and of stderr) kept from one code call; the rest is cut, with a note"),
});

export type LoupeConfig = z.infer<typeof LoupeConfigSchema>;

/**
 * The settings a run may change (its LangGraph context, what Studio's context form shows): dialect,
 * model and sampling, budgets, plan mode, box convention, pixel budgets, approvals, observation and
 * result sizes, the code tool. Everything else (database, data directory, search providers, keys, caches) is the
 * process's, from the environment and flags, read once.
 */
export const RUN_CONTEXT_KEYS = [
  "modelUrl",
  "model",
  "dialect",
  "temperature",
  "maxTokens",
  "maxToolCalls",
  "maxTurns",
  "plan",
  "coords",
  "maxPixels",
  "maxImagesInContext",
  "approvePlan",
  "approveSearch",
  "approveWebVisit",
  "observationChars",
  "searchMaxResults",
  "code",
] as const satisfies ReadonlyArray<keyof LoupeConfig>;
export type RunContextKey = (typeof RUN_CONTEXT_KEYS)[number];

/** The schema of a field without its default: a run's context leaves out what it does not change. */
function withoutDefault(schema: z.ZodType): z.ZodType {
  const inner = schema instanceof z.ZodDefault ? (schema.unwrap() as z.ZodType) : schema;
  return schema.description ? inner.describe(schema.description) : inner;
}

/** A run's context: each key optional, checked as the configuration checks it; unknown keys are dropped. */
export const RunContextSchema = z.object(
  Object.fromEntries(RUN_CONTEXT_KEYS.map((key) => [key, withoutDefault(LoupeConfigSchema.shape[key]).optional()])) as {
    [K in RunContextKey]: z.ZodOptional<z.ZodType<LoupeConfig[K]>>;
  },
);
export type RunContext = Partial<Pick<LoupeConfig, RunContextKey>>;

/** What a run of the plan graph may change: the model, its sampling, and how tools and images are described to it. */
export const PlanContextSchema = RunContextSchema.pick({ modelUrl: true, model: true, temperature: true, maxTokens: true, coords: true, maxPixels: true });

/** The part of a run's settings its context carries. */
export function runContextOf(settings: LoupeConfig): RunContext {
  return Object.fromEntries(RUN_CONTEXT_KEYS.filter((k) => settings[k] !== undefined).map((k) => [k, settings[k]])) as RunContext;
}
export type LoupeConfigInput = z.input<typeof LoupeConfigSchema>;

/** Secrets: read from flags or environment, handed to clients, never stored. */
export interface LoupeSecrets {
  apiKey?: string;
  tavilyApiKey?: string;
  serperApiKey?: string;
  serpapiApiKey?: string;
  /** Signs public image URLs (default: a random secret kept in the data directory). */
  publicImageSecret?: string;
}

type Key = keyof LoupeConfig;

/** Environment variable for each setting; the README's table is generated from the same list. */
export const ENV_VARS: Record<Key, string> = {
  modelUrl: "LOUPE_MODEL_URL",
  modelUrlAllow: "LOUPE_MODEL_URL_ALLOW",
  model: "LOUPE_MODEL",
  dialect: "LOUPE_DIALECT",
  maxToolCalls: "LOUPE_MAX_TOOL_CALLS",
  maxTurns: "LOUPE_MAX_TURNS",
  maxImagesInContext: "LOUPE_MAX_IMAGES",
  maxPixels: "LOUPE_MAX_PIXELS",
  maxInputPixels: "LOUPE_MAX_INPUT_PIXELS",
  coords: "LOUPE_COORDS",
  plan: "LOUPE_PLAN",
  approvePlan: "LOUPE_APPROVE_PLAN",
  approveSearch: "LOUPE_APPROVE_SEARCH",
  approveWebVisit: "LOUPE_APPROVE_WEB_VISIT",
  temperature: "LOUPE_TEMPERATURE",
  maxTokens: "LOUPE_MAX_TOKENS",
  timeoutMs: "LOUPE_TIMEOUT_MS",
  retries: "LOUPE_RETRIES",
  retryBaseMs: "LOUPE_RETRY_BASE_MS",
  stream: "LOUPE_STREAM",
  dataDir: "LOUPE_DATA_DIR",
  databaseUrl: "LOUPE_DATABASE_URL",
  tavilyUrl: "LOUPE_TAVILY_URL",
  webVisit: "LOUPE_WEB_VISIT",
  webAllowHosts: "LOUPE_WEB_ALLOW_HOSTS",
  corpus: "LOUPE_CORPUS",
  searchCache: "LOUPE_SEARCH_CACHE",
  searchCacheTtl: "LOUPE_SEARCH_CACHE_TTL",
  searchMaxResults: "LOUPE_SEARCH_MAX_RESULTS",
  serperUrl: "LOUPE_SERPER_URL",
  serpapiUrl: "LOUPE_SERPAPI_URL",
  searxngUrl: "LOUPE_SEARXNG_URL",
  publicImageBaseUrl: "LOUPE_PUBLIC_IMAGE_BASE_URL",
  searchProviders: "LOUPE_SEARCH_PROVIDERS",
  cachedImageSearch: "LOUPE_CACHED_IMAGE_SEARCH",
  searchConcurrency: "LOUPE_SEARCH_CONCURRENCY",
  searchRatePerSecond: "LOUPE_SEARCH_RATE",
  searchRetries: "LOUPE_SEARCH_RETRIES",
  searchTimeoutMs: "LOUPE_SEARCH_TIMEOUT_MS",
  observationChars: "LOUPE_OBSERVATION_CHARS",
  toolImages: "LOUPE_TOOL_IMAGES",
  code: "LOUPE_CODE",
  codeTimeoutMs: "LOUPE_CODE_TIMEOUT_MS",
  codeMemoryMb: "LOUPE_CODE_MEMORY_MB",
  codeOutputBytes: "LOUPE_CODE_OUTPUT_BYTES",
};

/**
 * Why a run cannot take this many input images, or null when it can: every input is shown to the
 * model at once, and vLLM refuses a request with more than --limit-mm-per-prompt images (LOUPE_MAX_IMAGES).
 */
export function inputImageCountProblem(count: number, maxImages: number): string | null {
  if (count <= maxImages) return null;
  const setting = ENV_VARS.maxImagesInContext;
  return `${count} input images, over the limit of ${maxImages} images in one conversation (${setting}); give at most ${maxImages} images, or raise ${setting} (maxImagesInContext in a run's context; match vLLM's --limit-mm-per-prompt)`;
}

/** The items of a comma-separated setting, trimmed, empty ones dropped ("a, b,," → ["a", "b"]). */
export function commaList(text: string): string[] {
  return text.split(",").map((item) => item.trim()).filter(Boolean);
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Loads `.env` from the working directory without overriding variables already set. */
export function loadDotEnv(path = ".env"): void {
  if (existsSync(path)) process.loadEnvFile(path);
}

function fromEnvString(key: Key, raw: string): unknown {
  const shape = LoupeConfigSchema.shape[key];
  // Unwrap default/optional to find the base type, so "24" becomes 24 and "true" becomes true.
  let inner: z.ZodType = shape as z.ZodType;
  while (inner instanceof z.ZodDefault || inner instanceof z.ZodOptional) {
    inner = (inner as z.ZodDefault<z.ZodType> | z.ZodOptional<z.ZodType>).unwrap() as z.ZodType;
  }
  if (inner instanceof z.ZodBoolean) {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    return raw;
  }
  if (inner instanceof z.ZodNumber) return raw.trim() === "" ? raw : Number(raw);
  return raw;
}

/**
 * Builds the configuration: explicit values (flags) win over the environment, which wins over
 * defaults. Invalid values fail with a message naming the flag or variable.
 */
export function resolveConfig(
  explicit: Partial<Record<Key, unknown>> = {},
  env: NodeJS.ProcessEnv = process.env,
): LoupeConfig {
  const merged: Record<string, unknown> = {};
  const given: Record<string, unknown> = {};
  for (const key of Object.keys(ENV_VARS) as Key[]) {
    const value = explicit[key];
    if (value !== undefined) {
      merged[key] = given[key] = value;
      continue;
    }
    const raw = env[ENV_VARS[key]];
    if (raw !== undefined && raw !== "") {
      merged[key] = fromEnvString(key, raw);
      given[key] = raw;
    }
  }
  const parsed = LoupeConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const keyOf = (path: readonly PropertyKey[]) => path[0] as Key;
    const source = (path: readonly PropertyKey[]) => (explicit[keyOf(path)] !== undefined ? `--${kebab(keyOf(path))}` : ENV_VARS[keyOf(path)]);
    const got = (path: readonly PropertyKey[]) => {
      const key = keyOf(path);
      return ` (got ${JSON.stringify(key === "databaseUrl" ? redactDatabaseUrl(String(given[key])) : withoutPassword(given[key]))})`;
    };
    throw new ConfigError(`invalid configuration: ${describeIssues(parsed.error.issues, { path: source, after: got })}`);
  }
  return parsed.data;
}

export function resolveSecrets(
  explicit: Partial<LoupeSecrets> = {},
  env: NodeJS.ProcessEnv = process.env,
): LoupeSecrets {
  return {
    apiKey: explicit.apiKey ?? env.LOUPE_API_KEY ?? env.OPENAI_API_KEY,
    tavilyApiKey: explicit.tavilyApiKey ?? env.TAVILY_API_KEY,
    serperApiKey: explicit.serperApiKey ?? env.SERPER_API_KEY,
    serpapiApiKey: explicit.serpapiApiKey ?? env.SERPAPI_API_KEY,
    publicImageSecret: explicit.publicImageSecret ?? env.LOUPE_PUBLIC_IMAGE_SECRET,
  };
}

/** A database URL fit for messages and logs: the password (and any password parameter) removed. */
export function redactDatabaseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(a database URL that could not be parsed)";
  }
  parsed.password = "";
  for (const name of [...parsed.searchParams.keys()]) {
    if (/pass/i.test(name)) parsed.searchParams.delete(name);
  }
  return parsed.href;
}

/** A value fit for messages: a URL's password replaced by "***"; anything else as it is. */
function withoutPassword(value: unknown): unknown {
  const url = typeof value === "string" ? parsedUrl(value) : undefined;
  if (!url?.password) return value;
  url.password = "***";
  return url.href;
}

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
