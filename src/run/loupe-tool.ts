// Loupe inside other people's agents: a LangChain tool (for createAgent and other tool-calling agents), and a node for parent graphs with a `messages` state.
import { humanAsk, lastHuman } from "../core/messages.js";
import { randomUUID } from "node:crypto";
import { AIMessage, type BaseMessage } from "@langchain/core/messages";
import { AsyncLocalStorageProviderSingleton } from "@langchain/core/singletons";
import { tool } from "@langchain/core/tools";
import { isGraphInterrupt, MemorySaver, type BaseCheckpointSaver, type LangGraphRunnableConfig } from "@langchain/langgraph";
import { z } from "zod/v4";
import { createAgent, recursionLimitFor } from "../../graphs/agent.js";
import type { SearchProvider } from "../../tools/search/provider.js";
import { commaList, resolveConfig, resolveSecrets, runContextOf, type LoupeConfig, type LoupeConfigInput, type LoupeSecrets } from "../core/config.js";
import { describeSource, urlImageReader, type DownloadLimits } from "../core/image-sources.js";
import { ImageInputError, type ImageStore } from "../core/images.js";
import type { ModelClient } from "../core/model.js";
import type { Citation, FinalAnswer } from "../core/state.js";
import { createDeps, type RuntimeDeps } from "../runtime/deps.js";
import { ask, type AskResult } from "./ask.js";

/** Loupe's settings when it runs for a parent: as createLoupeAgent's, plus where images may come from. */
export interface LoupeSubagentOptions {
  /** Settings; anything not given comes from `env` (LOUPE_* variables), then the defaults. */
  config?: Partial<LoupeConfigInput>;
  /** API keys; default: from `env`. */
  secrets?: LoupeSecrets;
  /** Where unset settings and secrets are read from; default process.env. Pass {} to ignore the environment. */
  env?: NodeJS.ProcessEnv;
  /** The model client, or one per run's settings; default: the OpenAI-compatible server at config.modelUrl. */
  model?: ModelClient | ((settings: LoupeConfig) => ModelClient);
  /** Search providers; default: those the configuration and secrets enable (behind the search cache). */
  search?: SearchProvider[];
  /** Image store; default: files under <dataDir>/images (Postgres-backed with LOUPE_DATABASE_URL). */
  images?: ImageStore;
  /**
   * Hosts image URLs may be fetched from although they are private or loopback addresses
   * (`127.0.0.1:8080`, `photos.internal`); default: config.webAllowHosts (LOUPE_WEB_ALLOW_HOSTS).
   * Images are only ever read from http(s) URLs (through the SSRF guard) and data: URLs, never from files.
   */
  imageAllowHosts?: string[];
  /** Limits of one image download (default 30 s, 64 MiB). */
  imageDownload?: DownloadLimits;
}

export interface LoupeToolOptions extends LoupeSubagentOptions {
  /** The tool's name, as the parent model calls it; default "loupe". */
  name?: string;
  /** What the parent model is told the tool does; default: DEFAULT_LOUPE_TOOL_DESCRIPTION. */
  description?: string;
  /**
   * Where each call's run is checkpointed, on a new thread (its id is the artifact's threadId);
   * default: in memory, dropped after the call.
   */
  checkpointer?: BaseCheckpointSaver;
}

export interface LoupeNodeOptions extends LoupeSubagentOptions {
  /** The `name` of the AI message the node adds; default "loupe". */
  name?: string;
}

export const DEFAULT_LOUPE_TOOL_DESCRIPTION =
  "Answers a question about one or more images by looking closely: Loupe crops, zooms and rotates them, and searches the web " +
  "when the answer needs facts the image does not show. Give the question and the images as http(s) URLs or data: URLs. " +
  "Returns the answer, then its sources (web pages, and the ids of the image views it relied on).";

/** What went wrong when Loupe could not answer, in words for the parent model (and the person behind it). */
export class LoupeToolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LoupeToolError";
  }
}

const LoupeToolInput = z.object({
  question: z.string().describe("The question about the images, in full (Loupe does not see the conversation)"),
  images: z
    .array(z.string())
    .default([])
    .describe("The images, each an http(s) URL or a data: URL (data:image/png;base64,...)"),
});

/** Errors Loupe writes for people: their message is the whole story. */
const WRITTEN_FOR_PEOPLE = new Set(["ModelServerError", "ImageInputError", "ConfigError", "RunError", "ThreadBusyError", "RunPaused", "LoupeToolError"]);

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return Boolean(signal?.aborted) || (err as Error)?.name === "AbortError";
}

/** Why Loupe could not answer, in one line. */
function problemOf(err: unknown): string {
  const e = err as Error;
  const text = (e?.message ?? String(err)).split("\n")[0]!.trim();
  if (e?.name === "RunPaused") return `${text}; a run inside another agent cannot wait for a person: turn Loupe's approval settings off for it`;
  return WRITTEN_FOR_PEOPLE.has(e?.name) ? text : `${e?.name ?? "Error"}: ${text}`;
}

/** Refuses, before anything runs, an image that is neither an http(s) URL nor a data: URL (a file path above all). */
function checkSources(sources: string[]): void {
  for (const source of sources) {
    if (source.startsWith("data:") || /^https?:\/\//i.test(source)) continue;
    throw new ImageInputError(`image ${describeSource(source)} is not a URL: give images as http(s) URLs or data: URLs (Loupe does not read files here)`);
  }
}

/**
 * The settings and secrets options ask for (the environment fills in the rest), and the parts they
 * give, as createDeps takes them: what createLoupeAgent and the subagents build from.
 */
export function loupeParts(options: Omit<LoupeSubagentOptions, "imageAllowHosts" | "imageDownload">) {
  const env = options.env ?? process.env;
  const config = resolveConfig(options.config ?? {}, env);
  const secrets = options.secrets ?? resolveSecrets({}, env);
  const model = options.model;
  const overrides = { model: model === undefined ? undefined : typeof model === "function" ? model : () => model, search: options.search, images: options.images };
  return { config, secrets, overrides };
}

/** Loupe's settings and the dependencies of one run, images read from URLs only. */
function subagentSetup(options: LoupeSubagentOptions) {
  const { config, secrets, overrides } = loupeParts(options);
  const readUrl = urlImageReader({ allowHosts: options.imageAllowHosts ?? commaList(config.webAllowHosts), ...options.imageDownload });
  const deps = (): RuntimeDeps =>
    createDeps(config, secrets, {
      ...overrides,
      readImage: async (source, signal) => {
        checkSources([source]);
        return readUrl(source, signal);
      },
    });
  return { config, deps };
}

/** The answer as text for a parent: the answer, a note when a budget cut the run short, then its sources. */
export function loupeAnswerText(result: { answer: string; citations: Citation[]; reason: FinalAnswer["reason"]; images?: AskResult["images"] }): string {
  const lines = [result.answer.trim()];
  if (result.reason === "budget") lines.push("", "(Loupe's budget ran out before it finished looking; this is its best answer so far.)");
  const sources = result.citations.map((c) => {
    if (c.type === "url") return `- ${c.url}${c.title ? ` (${c.title})` : ""}`;
    const image = result.images?.find((i) => i.id === c.id);
    return `- image ${c.id}${image ? ` (${image.op ?? "input image"}, ${image.width}×${image.height})` : ""}`;
  });
  if (sources.length) lines.push("", "Sources:", ...sources);
  return lines.join("\n");
}

/**
 * Loupe as a LangChain tool, for `createAgent` from `langchain` and any other tool-calling agent:
 * `{question, images}` in (images as http(s) URLs or data: URLs; never files, and URLs through
 * the SSRF guard), Loupe's answer with its sources out as text, and the whole AskResult as the
 * tool message's artifact. Each call runs on a new thread. When Loupe cannot answer (an image it
 * may not or cannot read, an unreachable model server) the call fails with a LoupeToolError
 * saying why, which agents' tool nodes hand back to their model as an error tool message.
 *
 * @example
 * const agent = createAgent({ model: "openai:gpt-4.1", tools: [createLoupeTool({ config: { modelUrl: "http://gpu:8000/v1" } })] });
 */
export function createLoupeTool(options: LoupeToolOptions = {}) {
  const { config, deps: newDeps } = subagentSetup(options);
  return tool(
    async ({ question, images }, runConfig): Promise<[string, AskResult]> => {
      const signal = (runConfig as LangGraphRunnableConfig | undefined)?.signal;
      let deps: RuntimeDeps | undefined;
      try {
        if (!question.trim()) throw new LoupeToolError("no question given: say what to find out about the images");
        checkSources(images);
        deps = newDeps();
        const checkpointer = options.checkpointer ?? new MemorySaver();
        const agent = createAgent({ deps, checkpointer });
        // A fresh in-memory thread is this call's alone: no lock needed.
        const locks = options.checkpointer ? undefined : { tryAcquire: async () => ({ held: true as const, release: async () => {} }) };
        // Run outside the calling task's context: inside a LangGraph node, LangGraph would otherwise
        // nest this run in the caller's task (its checkpoint namespace), and ask() would not find it
        // on its own thread. Callbacks (tracing) still nest under the tool's run.
        const detached = { callbacks: (runConfig as LangGraphRunnableConfig | undefined)?.callbacks };
        const run = () => ask(agent, { settings: config, question, images, threadId: randomUUID(), signal, locks });
        const result = await AsyncLocalStorageProviderSingleton.runWithConfig(detached, run, true);
        return [loupeAnswerText(result), result];
      } catch (err) {
        if (isAbort(err, signal) || isGraphInterrupt(err)) throw err;
        throw new LoupeToolError(`Loupe could not answer: ${problemOf(err)}`, { cause: err });
      } finally {
        await deps?.close();
      }
    },
    {
      name: options.name ?? "loupe",
      description: options.description ?? DEFAULT_LOUPE_TOOL_DESCRIPTION,
      schema: LoupeToolInput,
      responseFormat: "content_and_artifact",
    },
  );
}

/** Refuses a message that holds files other than images (a PDF, audio, video): Loupe reads images only. */
function refuseNonImages(message: BaseMessage): void {
  if (typeof message.content === "string") return;
  for (const block of message.content as Array<Record<string, unknown>>) {
    if (block.type !== "file" && block.type !== "audio" && block.type !== "video") continue;
    const mime = String(block.mimeType ?? block.mime_type ?? block.type);
    if (!mime.startsWith("image/")) throw new ImageInputError(`the message holds a ${mime} ${String(block.type)}: Loupe reads images only`);
  }
}

/**
 * Loupe's input from a conversation: the last human message's text is the question and its image
 * blocks are the images (read as the messages channel reads them: `{type: "image", url}`,
 * `{type: "image", data, mimeType}`, `{type: "image_url", image_url: {url}}`, `source_type` blocks).
 */
export function loupeInputFromMessages(messages: readonly BaseMessage[]): { question: string; images: string[] } {
  const human = lastHuman(messages);
  if (!human) throw new LoupeToolError("there is no human message to answer");
  refuseNonImages(human);
  const { text, images } = humanAsk(human);
  return { question: text, images: images.flatMap((i) => ("source" in i ? [i.source] : [])) };
}

/**
 * A node for a parent graph whose state has a `messages` list: the last human message in (its
 * text the question, its image blocks the images), Loupe's answer with its sources out as ONE AI
 * message named "loupe" (not Loupe's own trajectory); the structured answer is in its
 * `response_metadata.loupe`. Loupe runs as a subgraph, checkpointed in the parent's thread, and
 * its approval interrupts pause the parent. When Loupe cannot answer (an unreadable image, an
 * unreachable model server), the message says why.
 */
export function createLoupeNode(options: LoupeNodeOptions = {}) {
  const { config, deps: newDeps } = subagentSetup(options);
  const name = options.name ?? "loupe";
  return async (state: { messages: BaseMessage[] }, runConfig?: LangGraphRunnableConfig): Promise<{ messages: AIMessage[] }> => {
    let deps: RuntimeDeps | undefined;
    try {
      const { question, images } = loupeInputFromMessages(state.messages);
      if (!question) throw new LoupeToolError("the last human message has no text: ask a question about the images");
      checkSources(images);
      deps = newDeps();
      const agent = createAgent({ deps });
      const out = await agent.invoke({ question, imageSources: images }, {
        ...runConfig,
        context: runContextOf(config) as never,
        recursionLimit: recursionLimitFor(config),
      });
      if (!out.final) throw new LoupeToolError("Loupe ended without an answer");
      const images_ = out.images.map((i) => ({ id: i.id, width: i.width, height: i.height, op: i.op }));
      const text = loupeAnswerText({ ...out.final, images: images_ });
      return { messages: [new AIMessage({ content: text, name, response_metadata: { loupe: { ...out.final, usage: out.usage } } })] };
    } catch (err) {
      // Interrupts pause the parent; anything not written for people is a bug, and fails the node.
      if (isAbort(err, runConfig?.signal) || isGraphInterrupt(err) || !WRITTEN_FOR_PEOPLE.has((err as Error)?.name)) throw err;
      return { messages: [new AIMessage({ content: `Loupe could not answer: ${problemOf(err)}`, name, response_metadata: { loupe: { error: problemOf(err) } } })] };
    } finally {
      await deps?.close();
    }
  };
}
