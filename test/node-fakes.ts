// Fakes for calling the agent's nodes directly, in-process: a scripted model client, deps around a real image store in a temp dir, a state builder, test images.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { onTestFinished } from "vitest";
import type { LangGraphRunnableConfig, OverwriteValue } from "@langchain/langgraph";
import type { AgentDeps } from "../src/core/agent-deps.js";
import type { CodeSandbox } from "../src/core/sandbox.js";
import { resolveConfig, type LoupeConfig } from "../src/core/config.js";
import type { AgentEvent } from "../src/core/events.js";
import { ImageStore, type StoredImage } from "../src/core/images.js";
import type { CompleteOptions, ModelClient } from "../src/core/model.js";
import type { ModelReply } from "../src/core/protocol.js";
import type { SearchProvider } from "../src/core/search-provider.js";
import { EMPTY_USAGE, withEmptyChannels, type AgentStateValue, type ImageRef, type PendingCall, type RawToolCall, type ToolResult, type Turn } from "../src/core/state.js";

/** A list a node's update writes (the update type also allows LangGraph's Overwrite, which only reflect's `results` uses). */
export function written<T>(value: T[] | OverwriteValue<T[]> | undefined): T[] {
  if (!Array.isArray(value)) throw new Error(`expected the update to write a list, got ${JSON.stringify(value)}`);
  return value;
}

/** A model reply with small, recognisable usage (10 prompt tokens, 5 completion tokens, 7 ms). */
export function modelReply(partial: Partial<ModelReply> = {}): ModelReply {
  return { content: "", toolCalls: [], finishReason: "stop", usage: { promptTokens: 10, completionTokens: 5 }, ms: 7, ...partial };
}

/** A tool call as the model emits it in the tools dialect (arguments as JSON text). */
export function rawCall(name: string, args: Record<string, unknown> | string, id = `call_${name}`): RawToolCall {
  return { id, name, arguments: typeof args === "string" ? args : JSON.stringify(args) };
}

/** A model that answers each request with the next scripted reply and records every request. */
export class FakeModel implements ModelClient {
  readonly url = "http://fake-model.test/v1";
  readonly requests: Array<{ turns: Turn[]; options: CompleteOptions }> = [];
  private readonly script: ModelReply[];

  constructor(script: ModelReply[]) {
    this.script = [...script];
  }

  async modelName(): Promise<string> {
    return "fake-model";
  }

  async complete(turns: Turn[], options: CompleteOptions = {}): Promise<ModelReply> {
    // A copy: the caller may append to its array after the call (makePlan's retry does).
    this.requests.push({ turns: [...turns], options });
    const next = this.script.shift();
    if (!next) throw new Error(`the fake model has no reply scripted for request ${this.requests.length}`);
    return next;
  }
}

export interface NodeFixture {
  deps: AgentDeps;
  model: FakeModel;
  store: ImageStore;
  settings: LoupeConfig;
  /** The runtime config a node gets: an empty context (the defaults apply) and a writer collecting events. */
  config: LangGraphRunnableConfig;
  events: AgentEvent[];
  dir: string;
}

export interface NodeFixtureOptions {
  script?: ModelReply[];
  settings?: Partial<LoupeConfig>;
  search?: SearchProvider[];
  /** The run's context (what a run may change over the defaults). */
  context?: Record<string, unknown>;
  /** The code sandbox; default one that is not available here, so the code tool is not offered. */
  sandbox?: CodeSandbox;
}

/** A sandbox that cannot run: with code "auto" the tool is not offered, with "on" the run fails. */
export const NO_SANDBOX: CodeSandbox = {
  probe: async () => ({ ok: false, message: "no sandbox in this test" }),
  run: async () => {
    throw new Error("the test's sandbox cannot run code");
  },
};

/** Fresh deps for one test: the scripted model, a real image store in a temp dir removed when the test ends. */
export async function nodeFixture(options: NodeFixtureOptions = {}): Promise<NodeFixture> {
  const dir = await mkdtemp(join(tmpdir(), "loupe-node-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const settings = resolveConfig({ dataDir: dir, ...options.settings }, {});
  const store = new ImageStore(join(dir, "images"));
  const model = new FakeModel(options.script ?? []);
  const deps: AgentDeps = { defaults: settings, images: store, search: options.search ?? [], model: () => model, sandbox: options.sandbox ?? NO_SANDBOX, close: () => {} };
  const events: AgentEvent[] = [];
  const config = { context: options.context ?? {}, writer: (e: unknown) => events.push(e as AgentEvent) } as LangGraphRunnableConfig;
  return { deps, model, store, settings, config, events, dir };
}

/** An agent state with every channel at its empty value, and what the test sets. */
export function agentState(values: Partial<AgentStateValue> = {}): AgentStateValue {
  return withEmptyChannels({ question: "What is on the sign?", usage: { ...EMPTY_USAGE }, ...values });
}

export const HALF_BLANK = { width: 400, height: 300 } as const;
let halfBlank: Promise<Buffer> | undefined;

/** A 400×300 PNG: the left half uniform grey, the right half noise, so a crop of the left half is blank. */
export function halfBlankPng(): Promise<Buffer> {
  halfBlank ??= (() => {
    const { width, height } = HALF_BLANK;
    const raw = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 3;
        const v = x < width / 2 ? 128 : (x * 7919 + y * 104729) % 251;
        raw[i] = raw[i + 1] = raw[i + 2] = v;
      }
    }
    return sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
  })();
  return halfBlank;
}

/** The half-blank PNG written into the fixture's directory, as an input image source (a file path). */
export async function halfBlankFile(f: Pick<NodeFixture, "dir">, name = "half.png"): Promise<string> {
  const path = join(f.dir, name);
  await writeFile(path, await halfBlankPng());
  return path;
}

/** The half-blank PNG stored as input image img_0 (or another id). */
export async function storedInput(f: Pick<NodeFixture, "store">, id = "img_0"): Promise<ImageRef> {
  const stored = await f.store.ingest(await halfBlankPng());
  return imageRef(id, stored);
}

/** The reference state keeps for a stored image. */
export function imageRef(id: string, stored: StoredImage, parent: string | null = null, op: string | null = null, path?: string): ImageRef {
  return { id, sha256: stored.sha256, mime: stored.mime, width: stored.width, height: stored.height, parent, op, ...(path ? { path } : {}) };
}

/** A user turn as the nodes write it: a string is a text part, an image an image part. */
export function userTurn(...parts: Array<string | Pick<ImageRef, "id" | "sha256" | "mime">>): Turn {
  return {
    role: "user",
    parts: parts.map((p) => (typeof p === "string" ? { type: "text" as const, text: p } : { type: "image" as const, id: p.id, sha256: p.sha256, mime: p.mime })),
  };
}

/** A validated call, as the planner leaves it in `pending`. */
export function pendingCall(callId: string, name: string, args: Record<string, unknown> | null, kind: PendingCall["kind"], extra: Partial<PendingCall> = {}): PendingCall {
  return { index: 0, callId, name, args, kind, ...extra };
}

/** A tool result with nothing in it but what the test sets. */
export function toolResult(callId: string, values: Partial<ToolResult> = {}): ToolResult {
  return { callId, ok: true, text: "done", images: [], urls: [], ms: 3, ...values };
}
