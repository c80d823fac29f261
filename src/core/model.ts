// The model client: the real HTTP path to an OpenAI-compatible server (vLLM) through ChatOpenAI, with retries.
import { AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage, type BaseMessage } from "@langchain/core/messages";
import { ChatOpenAI, ChatOpenAICompletions, type ChatOpenAIFields } from "@langchain/openai";
import { AsyncLocalStorage } from "node:async_hooks";
import { createHash } from "node:crypto";
import { CallbackManager, type CallbackManagerForLLMRun } from "@langchain/core/callbacks/manager";
import { getConfig } from "@langchain/langgraph";
import pRetry, { AbortError } from "p-retry";
import { ENV_VARS, type Coords, type LoupeConfig } from "./config.js";
import type { ImageMime, ImageStore } from "./images.js";
import { systemPrompt, type ModelReply, type ToolSpec } from "./protocol.js";
import type { Part, RawToolCall, Turn } from "./state.js";

/** The model server could not be used; the message names the URL and what happened. */
export class ModelServerError extends Error {
  readonly url: string;
  constructor(url: string, message: string) {
    super(message);
    this.name = "ModelServerError";
    this.url = url;
  }
}

export interface CompleteOptions {
  tools?: ToolSpec[];
  /**
   * "none" forbids tool calls for this request (the final request when a budget ran out) while the
   * tools stay listed, so the prompt the server renders keeps its prefix; default: the server's ("auto").
   */
  toolChoice?: "auto" | "none";
  stop?: string[];
  signal?: AbortSignal;
  /** Called after a failed attempt that will be retried. */
  onRetry?: (info: { attempt: number; delayMs: number; error: string }) => void;
}

export interface ModelClient {
  readonly url: string;
  /** The model name used in requests (resolved from GET /models when not configured). */
  modelName(): Promise<string>;
  complete(turns: Turn[], options?: CompleteOptions): Promise<ModelReply>;
}

function estimateTokens(content: unknown): number {
  const text = typeof content === "string" ? content : JSON.stringify(content ?? "");
  return Math.ceil(text.length / 4);
}

class OfflineCompletions extends ChatOpenAICompletions {
  override async getNumTokens(content: unknown): Promise<number> {
    return estimateTokens(content);
  }
}

class OfflineChatOpenAI extends ChatOpenAI {
  override async getNumTokens(content: unknown): Promise<number> {
    return estimateTokens(content);
  }
}

/**
 * A ChatOpenAI that never downloads a tokenizer. ChatOpenAI counts tokens with js-tiktoken, which
 * fetches its encoding from a CDN at run time; air-gapped GPU servers (and these test machines)
 * cannot reach it, and the retried download stalls the call. The counting happens in the inner
 * completions client too, so both are overridden; real counts come from the server's `usage`.
 */
export function createOfflineChatOpenAI(fields: ChatOpenAIFields): ChatOpenAI {
  return new OfflineChatOpenAI({ ...fields, completions: new OfflineCompletions(fields) });
}

/** One line saying what went wrong, from the innermost cause that says something useful. */
function describeError(err: unknown): string {
  const chain: Array<{ message?: string; code?: string; cause?: unknown }> = [];
  for (let e = err as { message?: string; code?: string; cause?: unknown } | undefined; e && chain.length < 5; e = e.cause as typeof e) {
    chain.push(e);
  }
  if (chain.some((e) => e.code === "ECONNREFUSED")) return "connection refused";
  const codes = chain.map((e) => e.code).filter((c): c is string => typeof c === "string" && /^E[A-Z]+$/.test(c));
  const generic = /^(fetch failed|Connection error\.?|terminated|other side closed)$/i;
  const useful = chain.map((e) => (e.message ?? "").split("\n")[0]!).filter((m) => m && !generic.test(m));
  const message = useful[0] ?? (chain[0]?.message ?? String(err)).split("\n")[0]!;
  const code = codes[0];
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

function statusOf(err: unknown): number | undefined {
  const e = err as { status?: unknown; response?: { status?: unknown } };
  const s = e?.status ?? e?.response?.status;
  return typeof s === "number" ? s : undefined;
}

/** Errors worth retrying: no answer, a cut stream, overload (429) and server faults (5xx). */
function isRetryable(err: unknown): boolean {
  if (notChatCompletionIn(err)) return false;
  const status = statusOf(err);
  if (status === undefined) return true;
  return status === 408 || status === 409 || status === 425 || status === 429 || status >= 500;
}

class IncompleteStreamError extends Error {
  constructor() {
    super("the reply stream ended before the reply was complete");
    this.name = "IncompleteStreamError";
  }
}

class RequestTimeoutError extends Error {
  constructor(ms: number) {
    super(`no complete reply within ${ms} ms`);
    this.name = "RequestTimeoutError";
  }
}

/**
 * The server answered, but not in the chat-completions protocol (a web page, another API, a garbled
 * stream). Retrying cannot help; the message says what came back and what to check.
 */
class NotChatCompletionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotChatCompletionError";
  }
}

function notChatCompletionIn(err: unknown): NotChatCompletionError | undefined {
  for (let e = err, depth = 0; e && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof NotChatCompletionError) return e;
  }
  return undefined;
}

const CHECK_MODEL_URL = "check --model-url points at the OpenAI-compatible /v1 base (e.g. http://localhost:8000/v1)";

/**
 * A fetch for ChatOpenAI that checks a 200 answer is a chat completion before the SDK reads it: JSON
 * with `choices`, or a stream of server-sent events whose every data field is JSON. Otherwise the SDK
 * fails on `choices` of undefined, or logs the stream's lines to stderr and throws a bare SyntaxError.
 */
function chatCompletionFetch(url: string, streaming: boolean): typeof fetch {
  const what = streaming ? "a chat completion stream" : "a chat completion";
  const notIt = (got: string) => new NotChatCompletionError(`model server at ${url} answered 200 but not with ${what} (got ${got}); ${CHECK_MODEL_URL}`);
  return async (input, init) => {
    const res = await fetch(input, withReasoning(init));
    if (!res.ok) return res;
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (streaming && type === "text/event-stream" && res.body) {
      const checked = res.body.pipeThrough(serverSentEventCheck(url));
      return new Response(checked, { status: res.status, statusText: res.statusText, headers: res.headers });
    }
    if (!streaming && type.endsWith("json")) {
      const text = await res.text();
      if (Array.isArray(parsedOrUndefined<{ choices?: unknown }>(text)?.choices)) {
        return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
      }
      throw notIt(`${type} without "choices"`);
    }
    await res.body?.cancel().catch(() => {});
    throw notIt(type || "no content type");
  };
}

/**
 * The reasoning of the request being sent, by message index: @langchain/openai does not send an
 * assistant message's `reasoning_content`, so the model client adds it to the request body itself.
 */
const requestReasoning = new AsyncLocalStorage<Array<string | undefined>>();

/**
 * The request with each assistant message's reasoning added: as `reasoning` (what vLLM 0.11 and
 * later read, and hand the chat template as `reasoning_content`) and as `reasoning_content` (what
 * earlier vLLM and other servers read).
 */
function withReasoning(init: RequestInit | undefined): RequestInit | undefined {
  const reasoning = requestReasoning.getStore();
  if (!reasoning?.some(Boolean) || typeof init?.body !== "string") return init;
  const body = JSON.parse(init.body) as { messages?: Array<Record<string, unknown>> };
  body.messages?.forEach((message, i) => {
    if (reasoning[i] && message.role === "assistant") Object.assign(message, { reasoning: reasoning[i], reasoning_content: reasoning[i] });
  });
  return { ...init, body: JSON.stringify(body) };
}

/** Each rendered message's reasoning (render makes one message per turn). */
function turnsReasoning(turns: Turn[], messages: number): Array<string | undefined> {
  if (turns.length !== messages) return [];
  return turns.map((turn) => (turn.role === "assistant" ? turn.reasoning : undefined));
}

/** What to try when a server refused a request that has images in tool messages. */
function toolImagesHint(status: number | undefined, turns: Turn[]): string {
  const refused = status !== undefined && status >= 400 && status < 500 && status !== 401 && status !== 403 && status !== 404 && status !== 429;
  const imagesInTools = turns.some((t) => t.role === "tool" && t.parts?.some((p) => p.type === "image"));
  return refused && imagesInTools ? ` (if this server does not take images in tool messages, set ${ENV_VARS.toolImages}=user)` : "";
}

/**
 * A run manager for the running graph node's callbacks, so the tokens of a streamed reply reach
 * LangGraph's `messages` stream (Studio's chat, useStream); undefined outside a graph run.
 */
async function nodeRunManager(chat: ChatOpenAI, messages: BaseMessage[]): Promise<CallbackManagerForLLMRun | undefined> {
  let config: ReturnType<typeof getConfig> | undefined;
  try {
    config = getConfig();
  } catch {
    return undefined;
  }
  if (!config?.callbacks) return undefined;
  const manager = CallbackManager.configure(config.callbacks, undefined, config.tags, undefined, config.metadata);
  const runs = await manager?.handleChatModelStart(chat.toJSON(), [messages], undefined, undefined, undefined, undefined, undefined, "ChatOpenAI");
  return runs?.[0];
}

/** A reply's reasoning piece: `reasoning_content` (which LangChain keeps) or `reasoning` (newer vLLM, read from the raw reply). */
function reasoningOf(message: { additional_kwargs?: Record<string, unknown> }, field: "delta" | "message"): string {
  const kwargs = message.additional_kwargs ?? {};
  if (typeof kwargs.reasoning_content === "string") return kwargs.reasoning_content;
  const raw = kwargs.__raw_response as { choices?: Array<Record<string, { reasoning?: unknown } | undefined>> } | undefined;
  const reasoning = raw?.choices?.[0]?.[field]?.reasoning;
  return typeof reasoning === "string" ? reasoning : "";
}

function parsedOrUndefined<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/**
 * Passes a server-sent event stream through unchanged, failing it at the first event whose data is
 * neither JSON nor [DONE], before the SDK sees that event (an event is complete at its blank line).
 */
function serverSentEventCheck(url: string): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let partial = "";
  let data: string[] = [];
  let events = 0;
  /** The problem with the lines completed so far, or null when every finished event was JSON. */
  const check = (text: string, end: boolean): string | null => {
    let all = partial + text;
    // A chunk ending in \r may be half of a \r\n: that line ends in the next chunk.
    const held = !end && all.endsWith("\r") ? "\r" : "";
    if (held) all = all.slice(0, -1);
    const lines = all.split(/\r\n|\r|\n/);
    partial = end ? "" : lines.pop()! + held;
    if (end) lines.push("");
    for (const line of lines) {
      if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      else if (line === "" && data.length) {
        events++;
        const payload = data.join("\n");
        data = [];
        if (payload !== "[DONE]" && parsedOrUndefined(payload) === undefined) return `event ${events} is not JSON`;
      }
    }
    return null;
  };
  const fail = (problem: string) =>
    new NotChatCompletionError(`model server at ${url} sent a malformed chat completion stream (${problem}); ${CHECK_MODEL_URL}`);
  return new TransformStream({
    transform(chunk, controller) {
      const problem = check(decoder.decode(chunk, { stream: true }), false);
      if (problem) controller.error(fail(problem));
      else controller.enqueue(chunk);
    },
    flush(controller) {
      const problem = check(decoder.decode(), true);
      if (problem) controller.error(fail(problem));
    },
  });
}

/** The specs of the named tools, with boxes described in the given convention (tools/index.ts's toolSpecs). */
export type ToolSpecsFor = (names: string[], coords: Coords) => ToolSpec[];

export interface ModelClientOptions {
  config: LoupeConfig;
  apiKey?: string;
  images: ImageStore;
  /** Renders a `system` turn's tools: pass `toolSpecs` from tools/index.ts (createDeps does). */
  toolSpecs: ToolSpecsFor;
}

const systemPrompts = new WeakMap<ToolSpecsFor, Map<string, string>>();

/** The system prompt a `system` turn stands for, rendered once per (dialect, tools, coords, code limits). */
function systemPromptFor(turn: Extract<Turn, { role: "system" }>, toolSpecs: ToolSpecsFor): string {
  let rendered = systemPrompts.get(toolSpecs);
  if (!rendered) systemPrompts.set(toolSpecs, (rendered = new Map()));
  const key = JSON.stringify([turn.dialect, turn.coords, turn.tools, turn.code ?? null]);
  let text = rendered.get(key);
  if (text === undefined) {
    text = systemPrompt(turn.dialect, toolSpecs(turn.tools, turn.coords), turn.coords, turn.code);
    rendered.set(key, text);
  }
  return text;
}

/** What one request adds to the messages: the tools, stop strings and tool choice (ChatOpenAI's call options). */
type CallOptions = Pick<ChatOpenAI["ParsedCallOptions"], "tools" | "stop" | "tool_choice">;

/** Request header naming the run a model request belongs to; see sessionKey. */
export const SESSION_HEADER = "x-loupe-session";

/**
 * The run the current graph node belongs to: its thread, and for a subgraph (e.g. one of a batch's
 * agent runs) its path in the parent, hashed. Sent with every model request (SESSION_HEADER) so a
 * load balancer in front of several vLLM replicas can keep a run on one replica, where its prefix
 * cache is. Undefined outside a graph run.
 */
export function sessionKey(): string | undefined {
  let configurable: Record<string, unknown> | undefined;
  try {
    configurable = getConfig()?.configurable;
  } catch {
    return undefined;
  }
  const thread = configurable?.thread_id;
  if (thread === undefined || thread === null) return undefined;
  // The last part of checkpoint_ns is the running node's own task, which changes every step.
  const path = String(configurable?.checkpoint_ns ?? "").split("|").slice(0, -1).join("|");
  return createHash("sha256").update(`${String(thread)}\u0000${path}`).digest("hex").slice(0, 32);
}

/** Call options carrying the session header: ChatOpenAI reads request headers from `options` when invoking, from the top level when streaming. */
function sessionOptions(): Record<string, unknown> {
  const key = sessionKey();
  if (!key) return {};
  const headers = { [SESSION_HEADER]: key };
  return { headers, options: { headers } };
}

export class OpenAICompatibleModel implements ModelClient {
  readonly url: string;
  private readonly config: LoupeConfig;
  private readonly apiKey: string;
  private readonly images: ImageStore;
  private readonly toolSpecs: ToolSpecsFor;
  private resolvedModel: Promise<string> | null = null;
  private readonly dataUrls = new Map<string, string>();

  constructor(options: ModelClientOptions) {
    this.config = options.config;
    this.url = options.config.modelUrl.replace(/\/+$/, "");
    this.apiKey = options.apiKey || "EMPTY";
    this.images = options.images;
    this.toolSpecs = options.toolSpecs;
  }

  modelName(): Promise<string> {
    if (this.config.model) return Promise.resolve(this.config.model);
    this.resolvedModel ??= this.listFirstModel().catch((err) => {
      this.resolvedModel = null;
      throw err;
    });
    return this.resolvedModel;
  }

  private async listFirstModel(): Promise<string> {
    const url = `${this.url}/models`;
    const response = await pRetry(
      async () => {
        let res: Response;
        try {
          res = await fetch(url, {
            headers: { Authorization: `Bearer ${this.apiKey}` },
            signal: AbortSignal.timeout(Math.min(this.config.timeoutMs, 30_000)),
          });
        } catch (err) {
          throw new Error(describeError(err));
        }
        if (!res.ok) {
          const err = new Error(`HTTP ${res.status}`) as Error & { status: number };
          err.status = res.status;
          if (!isRetryable(err)) throw new AbortError(err);
          throw err;
        }
        const list = parsedOrUndefined<{ data?: Array<{ id?: string }> }>(await res.text());
        if (!list || typeof list !== "object") {
          const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim() || "no content type";
          throw new AbortError(new NotChatCompletionError(`model server at ${this.url} answered 200 but not with a model list (GET /models: got ${type}); ${CHECK_MODEL_URL}`));
        }
        return list;
      },
      // A server that is down when a run starts is most likely not there at all: fail fast.
      { ...this.retryOptions(), retries: Math.min(this.config.retries, 1) },
    ).catch((err: unknown) => {
      if (err instanceof NotChatCompletionError) throw new ModelServerError(this.url, err.message);
      const status = (err as { status?: number }).status;
      if (status === 401 || status === 403) {
        throw new ModelServerError(
          this.url,
          `the model server at ${this.url} refused the API key (GET /models: HTTP ${status}); set LOUPE_API_KEY (or OPENAI_API_KEY) to the key it expects (vllm serve --api-key)`,
        );
      }
      if (status === 404) {
        throw new ModelServerError(this.url, `${url} was not found (HTTP 404): is the URL right? It should end in /v1 (e.g. http://localhost:8000/v1)`);
      }
      throw new ModelServerError(
        this.url,
        `no model server answering at ${this.url} (GET /models: ${describeError(err)}); start one (see README: vllm serve …) or set --model-url / LOUPE_MODEL_URL`,
      );
    });
    const id = response.data?.[0]?.id;
    if (!id) {
      throw new ModelServerError(this.url, `the model server at ${this.url} lists no models; pass --model NAME`);
    }
    return id;
  }

  private retryOptions(onRetry?: CompleteOptions["onRetry"], signal?: AbortSignal) {
    return {
      retries: this.config.retries,
      factor: 2,
      minTimeout: this.config.retryBaseMs,
      maxTimeout: Math.max(this.config.retryBaseMs, 30_000),
      randomize: true,
      signal,
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }: { error: Error; attemptNumber: number; retriesLeft: number }) => {
        if (retriesLeft > 0) onRetry?.({ attempt: attemptNumber, delayMs: this.config.retryBaseMs * 2 ** (attemptNumber - 1), error: describeError(error) });
      },
    };
  }

  private readonly chats = new Map<string, ChatOpenAI>();

  /** One ChatOpenAI per model name and mode, built once (building one per request costs CPU on every turn). */
  private chat(model: string, streaming: boolean): ChatOpenAI {
    const key = `${streaming ? "s" : "i"}:${model}`;
    let chat = this.chats.get(key);
    if (!chat) {
      chat = this.newChat(model, streaming);
      this.chats.set(key, chat);
    }
    return chat;
  }

  private newChat(model: string, streaming: boolean): ChatOpenAI {
    return createOfflineChatOpenAI({
      model,
      apiKey: this.apiKey,
      configuration: { baseURL: this.url, fetch: chatCompletionFetch(this.url, streaming) },
      temperature: this.config.temperature,
      maxTokens: this.config.maxTokens,
      maxRetries: 0,
      streaming,
      streamUsage: true,
      useResponsesApi: false,
      // The raw reply, for the reasoning field LangChain does not read (`reasoning`).
      __includeRawResponse: true,
    });
  }

  async complete(turns: Turn[], options: CompleteOptions = {}): Promise<ModelReply> {
    const model = await this.modelName();
    const messages = await this.render(turns);
    const tools = options.tools?.length
      ? options.tools.map((t) => ({ type: "function" as const, function: { name: t.name, description: t.description, parameters: t.parameters } }))
      : undefined;
    const call: CallOptions = { tools: tools as never, stop: options.stop, ...(tools && options.toolChoice ? { tool_choice: options.toolChoice } : {}) };
    const reasoning = turnsReasoning(turns, messages.length);
    const attempt = async (): Promise<ModelReply> => requestReasoning.run(reasoning, () => this.attemptOnce(model, messages, call, options));
    try {
      return await pRetry(attempt, this.retryOptions(options.onRetry, options.signal));
    } catch (err) {
      if (options.signal?.aborted) throw err;
      const notChat = notChatCompletionIn(err);
      if (notChat) throw new ModelServerError(this.url, notChat.message);
      const status = statusOf(err);
      const attempts = isRetryable(err) ? this.config.retries + 1 : 1;
      const what = status !== undefined ? `HTTP ${status}: ${describeError(err)}` : describeError(err);
      throw new ModelServerError(
        this.url,
        `model server at ${this.url} failed${attempts > 1 ? ` after ${attempts} attempts` : ""}: ${what}${toolImagesHint(status, turns)}`,
      );
    }
  }

  /** One attempt at a request, with the time limit; errors that retrying cannot fix stop the retries. */
  private async attemptOnce(model: string, messages: BaseMessage[], call: CallOptions, options: CompleteOptions): Promise<ModelReply> {
    if (options.signal?.aborted) throw new AbortError("run cancelled");
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new RequestTimeoutError(this.config.timeoutMs)), this.config.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal;
    const started = performance.now();
    try {
      const reply = this.config.stream
        ? await this.streamOnce(model, messages, call, signal)
        : await this.invokeOnce(model, messages, call, signal);
      return { ...reply, ms: performance.now() - started };
    } catch (err) {
      if (options.signal?.aborted) throw new AbortError("run cancelled");
      if (timeout.signal.aborted) throw new RequestTimeoutError(this.config.timeoutMs);
      if (!isRetryable(err)) throw new AbortError(err as Error);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async streamOnce(
    model: string,
    messages: BaseMessage[],
    call: CallOptions,
    signal: AbortSignal,
  ): Promise<Omit<ModelReply, "ms">> {
    // The chunks are read from the model's own stream, not through stream(): that wrapper merges
    // every chunk into the one before (for its callbacks), and each merge re-parses the whole partial
    // tool-call JSON, so a reply with long arguments cost time quadratic in their length. The reply
    // is gathered from the chunks' own fields, in time linear in its length.
    const chat = this.chat(model, true);
    const runManager = await nodeRunManager(chat, messages);
    try {
      const reply = await this.readStream(chat._streamResponseChunks(messages, { ...call, signal, ...sessionOptions() } as never, runManager), signal);
      await runManager?.handleLLMEnd({ generations: [] });
      return reply;
    } catch (err) {
      await runManager?.handleLLMError(err);
      throw err;
    }
  }

  /** Gathers a streamed reply from its chunks: content, reasoning, tool calls, finish reason, usage. */
  private async readStream(stream: AsyncIterable<{ message: unknown; generationInfo?: Record<string, unknown> }>, signal: AbortSignal): Promise<Omit<ModelReply, "ms">> {
    let id: string | undefined;
    let content = "";
    let reasoning = "";
    let finishReason: string | null = null;
    let usage: AIMessageChunk["usage_metadata"];
    let chunks = 0;
    const toolCallChunks: NonNullable<AIMessageChunk["tool_call_chunks"]> = [];
    for await (const generation of stream) {
      const chunk = generation.message as AIMessageChunk;
      chunks++;
      id ??= chunk.id;
      if (typeof chunk.content === "string") content += chunk.content;
      reasoning += reasoningOf(chunk, "delta");
      if (chunk.tool_call_chunks?.length) toolCallChunks.push(...chunk.tool_call_chunks);
      const finish = (generation.generationInfo?.finish_reason ?? chunk.response_metadata?.finish_reason) as string | undefined;
      if (finish) finishReason = finish;
      if (chunk.usage_metadata) usage = chunk.usage_metadata;
    }
    if (signal.aborted) throw signal.reason ?? new Error("aborted");
    if (chunks === 0 || !finishReason) throw new IncompleteStreamError();
    const byIndex = new Map<number, RawToolCall>();
    for (const [i, c] of toolCallChunks.entries()) {
      const index = typeof c.index === "number" ? c.index : i;
      const prev = byIndex.get(index);
      byIndex.set(index, {
        // The model's id as sent, even empty: parseReply gives Loupe's own ids, the conversation keeps these.
        id: prev?.id || c.id || "",
        name: (prev?.name ?? "") + (prev?.name && c.name === prev.name ? "" : (c.name ?? "")),
        arguments: (prev?.arguments ?? "") + (c.args ?? ""),
      });
    }
    return {
      ...(id ? { id } : {}),
      content,
      ...(reasoning ? { reasoning } : {}),
      toolCalls: [...byIndex.entries()].sort(([a], [b]) => a - b).map(([, c]) => c),
      finishReason,
      usage: {
        promptTokens: usage?.input_tokens ?? 0,
        completionTokens: usage?.output_tokens ?? 0,
      },
    };
  }

  private async invokeOnce(
    model: string,
    messages: BaseMessage[],
    call: CallOptions,
    signal: AbortSignal,
  ): Promise<Omit<ModelReply, "ms">> {
    const msg = await this.chat(model, false).invoke(messages, { ...call, signal, ...sessionOptions() });
    const raw = (msg.additional_kwargs?.tool_calls ?? []) as Array<{ id?: string; function?: { name?: string; arguments?: string } }>;
    const reasoning = reasoningOf(msg, "message");
    return {
      ...(msg.id ? { id: msg.id } : {}),
      content: typeof msg.content === "string" ? msg.content : "",
      ...(reasoning ? { reasoning } : {}),
      toolCalls: raw.map((c) => ({ id: c.id ?? "", name: c.function?.name ?? "", arguments: c.function?.arguments ?? "" })),
      finishReason: (msg.response_metadata?.finish_reason as string | undefined) ?? "stop",
      usage: {
        promptTokens: msg.usage_metadata?.input_tokens ?? 0,
        completionTokens: msg.usage_metadata?.output_tokens ?? 0,
      },
    };
  }

  /** Turns → LangChain messages. Deterministic: the same turns always render to the same request bytes. */
  async render(turns: Turn[]): Promise<BaseMessage[]> {
    const out: BaseMessage[] = [];
    for (const turn of turns) {
      switch (turn.role) {
        case "system":
          out.push(new SystemMessage(systemPromptFor(turn, this.toolSpecs)));
          break;
        case "system_text":
          out.push(new SystemMessage(turn.text));
          break;
        case "user":
          out.push(new HumanMessage({ content: (await this.renderParts(turn.parts)) as never }));
          break;
        case "assistant": {
          // Calls with no text: `[]`, which the chat template renders as nothing (an empty string would become an empty text part).
          const message = new AIMessage({ content: turn.text === "" && turn.toolCalls?.length ? [] : turn.text });
          if (turn.toolCalls?.length) {
            // Set after construction: the raw calls are then sent exactly as the model produced them
            // (ChatOpenAI re-serialises parsed `tool_calls`, and the constructor warns about raw ones).
            message.additional_kwargs = {
              tool_calls: turn.toolCalls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })),
            };
          }
          out.push(message);
          break;
        }
        case "tool": {
          const content = turn.parts?.length ? await this.renderParts([{ type: "text", text: turn.text }, ...turn.parts]) : turn.text;
          out.push(new ToolMessage({ content: content as never, tool_call_id: turn.toolCallId }));
          break;
        }
      }
    }
    return out;
  }

  private async renderParts(parts: Part[]): Promise<string | Array<Record<string, unknown>>> {
    if (parts.every((p) => p.type === "text")) return parts.map((p) => (p as { text: string }).text).join("\n");
    const content: Array<Record<string, unknown>> = [];
    for (const part of parts) {
      if (part.type === "text") content.push({ type: "text", text: part.text });
      else content.push({ type: "image_url", image_url: { url: await this.dataUrl(part.sha256, part.mime) } });
    }
    return content;
  }

  private async dataUrl(sha256: string, mime: ImageMime): Promise<string> {
    const cached = this.dataUrls.get(sha256);
    if (cached) return cached;
    const bytes = await this.images.read({ sha256, mime });
    const url = `data:${mime};base64,${bytes.toString("base64")}`;
    if (this.dataUrls.size > 256) this.dataUrls.delete(this.dataUrls.keys().next().value!);
    this.dataUrls.set(sha256, url);
    return url;
  }
}
