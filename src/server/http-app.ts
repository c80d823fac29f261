// The LangGraph server's custom routes (langgraph.json `http.app`): images made during a run, served at signed URLs, and a thread's images with those URLs.
import { Client } from "@langchain/langgraph-sdk";
import { Hono, type MiddlewareHandler } from "hono";
import { z } from "zod/v4";
import { PlanContextSchema, resolveSecrets, RunContextSchema, type LoupeConfig } from "../core/config.js";
import type { AgentDeps } from "../core/agent-deps.js";
import { imageRouteSecret } from "../core/image-urls.js";
import { createImageRoute, type ImageRoute } from "./image-route.js";
import type { ImageRef, ImageStore } from "../core/images.js";
import { imageOfBlock } from "../core/messages.js";
import { servedDeps } from "./deps.js";
import { registerUiRoutes } from "./ui-route.js";
import { StateSchema } from "@langchain/langgraph";
import { AgentInput, AgentOutput, PlanInput, PlanOnlyOutput } from "../core/state.js";

/** The served graphs' schemas by graph id (as in langgraph.json). */
export const SERVED_SCHEMAS: Record<string, { input: z.ZodType | StateSchema<never>; output: z.ZodType; context: z.ZodType }> = {
  agent: { input: AgentInput as unknown as StateSchema<never>, output: AgentOutput, context: RunContextSchema },
  plan: { input: PlanInput, output: PlanOnlyOutput, context: PlanContextSchema },
};

/** Where the server's model lives is not told to API clients: those two defaults are left out. */
const UNPUBLISHED_DEFAULTS = new Set(["modelUrl", "model"]);

/** A context schema as JSON, each setting's default being this server's (so Studio's form starts from what a run would use). */
function contextJsonSchema(schema: z.ZodType, defaults: LoupeConfig | undefined): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as { properties?: Record<string, Record<string, unknown>> };
  for (const [key, property] of Object.entries(json.properties ?? {})) {
    const value = UNPUBLISHED_DEFAULTS.has(key) ? undefined : defaults?.[key as keyof LoupeConfig];
    if (value !== undefined) property.default = value;
  }
  return json;
}

/**
 * Completes GET /assistants/{id}/schemas. The agent's state is a LangGraph StateSchema (for its
 * delta channels), and the server reads only the state from a StateSchema graph: it leaves out the
 * input, output and context schemas. This runs the server's own handler, then sets those three from
 * the zod schemas, the same way for every served graph (settings with defaults are optional).
 */
export function completeSchemas(schemas: typeof SERVED_SCHEMAS, defaults?: LoupeConfig): MiddlewareHandler {
  return async (c, next) => {
    await next();
    if (c.res.status !== 200) return;
    const body = (await c.res.clone().json()) as Record<string, unknown>;
    const known = schemas[String(body.graph_id)];
    if (!known) return;
    // A StateSchema input (the agent's: its messages field marked langgraph_type "messages") has its own JSON schema.
    const json = (schema: z.ZodType | StateSchema<never>, io: "input" | "output") =>
      schema instanceof StateSchema ? schema.getInputJsonSchema() : z.toJSONSchema(schema, { io, unrepresentable: "any" });
    const context = contextJsonSchema(known.context, defaults);
    const filled = { ...body, input_schema: json(known.input, "input"), output_schema: json(known.output, "output"), config_schema: context, context_schema: context };
    c.res = new Response(JSON.stringify(filled), { status: 200, headers: { "content-type": "application/json" } });
  };
}

/** Reads a thread's image records, or null when there is no such thread (for the caller, with the caller's credentials). */
export type ThreadImages = (threadId: string, headers: Headers) => Promise<ImageRef[] | null>;

/**
 * Inside the LangGraph server the SDK client reaches the server's own API in-process (its loopback
 * fetch), so the server's auth and thread access rules apply: the caller's headers are passed on.
 */
const threadImagesThroughApi: ThreadImages = async (threadId, headers) => {
  const forwarded = Object.fromEntries([...headers].filter(([k]) => !["host", "content-length", "connection", "accept-encoding"].includes(k)));
  const client = new Client({ apiKey: null, defaultHeaders: forwarded, callerOptions: { maxRetries: 0 } });
  try {
    const state = await client.threads.getState<{ images?: ImageRef[] }>(threadId);
    return state.values?.images ?? [];
  } catch (err) {
    if ((err as { status?: number }).status === 404) return null;
    throw err;
  }
};

type Block = Record<string, unknown>;

/** The bytes of a base64 image block (agent-chat-ui's `{type: "image", data, mimeType}`, a data: URL in `url` or `image_url`), if it is one. */
function base64Of(block: Block): Buffer | undefined {
  const image = imageOfBlock(block);
  const source = image && "source" in image ? image.source : undefined;
  return source?.startsWith("data:") ? Buffer.from(source.slice(source.indexOf(",") + 1), "base64") : undefined;
}

/** The image blocks of a run request's input messages (a message's content parts). */
function inputBlocks(body: unknown): Block[] {
  const input = (body as { input?: { messages?: unknown } } | null)?.input;
  const messages = Array.isArray(input?.messages) ? input.messages : [];
  return messages.flatMap((m) => (Array.isArray((m as { content?: unknown })?.content) ? ((m as { content: Block[] }).content) : [])).filter((b) => b && typeof b === "object");
}

/**
 * Stores the base64 images of a run request's input messages in the image store and puts the
 * image route's signed path in their place (`{type: "image", url, mimeType}`); the run reads them
 * back from the store. A block that is not a usable image fails the request with a readable 400.
 */
export function storeUploads(store: ImageStore, route: Pick<ImageRoute, "pathFor">): MiddlewareHandler {
  return async (c, next) => {
    if (!(c.req.header("content-type") ?? "").includes("json")) return next();
    const body = await c.req.json().catch(() => null);
    let images = 0;
    for (const block of inputBlocks(body)) {
      const bytes = base64Of(block);
      if (!bytes) continue;
      images++;
      let stored: Awaited<ReturnType<ImageStore["ingest"]>>;
      try {
        stored = await store.ingest(bytes);
      } catch (err) {
        return c.json({ error: `uploaded image ${images} of the input messages: ${(err as Error).message}` }, 400);
      }
      for (const key of Object.keys(block)) if (key !== "metadata" && key !== "id") delete block[key];
      Object.assign(block, { type: "image", url: route.pathFor(stored), mimeType: stored.mime });
    }
    // Hono keeps the body as text and parses it again for each reader: the server's own handler
    // reads the changed body only once the cache holds it.
    if (images) Object.assign(c.req.bodyCache, { text: Promise.resolve(JSON.stringify(body)), json: Promise.resolve(body) });
    return next();
  };
}

/** A client error from the server's own API (bad thread id, no access) keeps its status; anything else is a 500. */
function failure(err: unknown): { status: 400 | 401 | 403 | 422 | 500; error: string } {
  const status = (err as { status?: number }).status;
  if (status === 400 || status === 401 || status === 403 || status === 422) {
    return { status, error: status === 400 || status === 422 ? "invalid thread id (threads are named by UUID)" : "not allowed to read this thread" };
  }
  return { status: 500, error: "could not read the thread" };
}

export interface HttpAppOptions {
  deps: AgentDeps;
  /** Signs image URLs; every worker behind one address must share it (LOUPE_PUBLIC_IMAGE_SECRET). */
  secret: string;
  /** Base of the URLs handed out (LOUPE_PUBLIC_IMAGE_BASE_URL); default: the origin the request came to. */
  publicBaseUrl?: string;
  threadImages?: ThreadImages;
}

/**
 * Routes:
 *  - GET/HEAD /images/<sha256>-<token>.<ext>: the image bytes (immutable; the token is the signature)
 *  - GET /threads/<thread_id>/images: the thread's images (img_0 = first input, then every image a tool made),
 *    each with `url` to fetch it
 *  - GET /assistants/<id>/schemas: the server's answer, completed (see completeSchemas)
 */
export function createHttpApp(options: HttpAppOptions): Hono {
  const route = createImageRoute({ store: options.deps.images, secret: options.secret });
  const threadImages = options.threadImages ?? threadImagesThroughApi;
  const app = new Hono();
  app.get("/assistants/:assistant_id/schemas", completeSchemas(SERVED_SCHEMAS, options.deps.defaults));
  // Uploaded images are stored before the server sees the run, so no base64 enters its runs, threads or checkpoints.
  const uploads = storeUploads(options.deps.images, route);
  for (const path of ["/threads/:thread_id/runs", "/threads/:thread_id/runs/stream", "/threads/:thread_id/runs/wait", "/runs", "/runs/stream", "/runs/wait"]) app.post(path, uploads);
  app.on(["GET", "HEAD"], `${route.prefix}/*`, async (c) => (await route.handle(c.req.raw)) ?? c.notFound());
  registerUiRoutes(app); // the live page at /ui (src/ui, src/server/ui-route.ts)
  app.get("/threads/:thread_id/images", async (c) => {
    const threadId = c.req.param("thread_id");
    let images: ImageRef[] | null;
    try {
      images = await threadImages(threadId, c.req.raw.headers);
    } catch (err) {
      const { status, error } = failure(err);
      return c.json({ error }, status);
    }
    if (!images) return c.json({ error: `no thread ${threadId}` }, 404);
    const base = options.publicBaseUrl ?? new URL(c.req.url).origin;
    return c.json({ threadId, images: images.map((image) => ({ ...image, url: route.urlFor(image, base) })) });
  });
  return app;
}

/** The app langgraph.json mounts, on the served dependencies. */
export const app = (() => {
  const deps = servedDeps();
  const secret = imageRouteSecret(deps.defaults.dataDir, resolveSecrets().publicImageSecret);
  return createHttpApp({ deps, secret, publicBaseUrl: deps.defaults.publicImageBaseUrl });
})();
