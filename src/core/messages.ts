// The `messages` channel: what a human message asks (its text and image blocks), and the LangChain messages a run's turns become (for Studio's chat, agent-chat-ui and parent agents).
import { AIMessage, HumanMessage, RemoveMessage, ToolMessage, type BaseMessage } from "@langchain/core/messages";
import { REMOVE_ALL_MESSAGES } from "@langchain/langgraph";
import { randomUUID } from "node:crypto";
import { extractThink } from "./protocol.js";
import type { Citation, FinalAnswer, ImageRef, PendingCall, RawToolCall, ToolCallRecord } from "./state.js";

/** Where an image is shown to people: the image route's signed URL (absolute, or a path on the server). */
export type ImageUrlFor = (image: Pick<ImageRef, "sha256" | "mime">) => string;

/** The key in an image block's metadata naming the stored image (img_N). */
export const IMAGE_ID_KEY = "loupe_image_id";

type Block = Record<string, unknown>;

/** A human message's question: its text, and each image block as a source (a URL or a data: URL), or as an image already stored. */
export interface HumanAsk {
  text: string;
  images: Array<{ source: string } | { storedId: string }>;
}

/** A data: URL for a block's bytes (base64 text, or raw bytes), or undefined when it has none. */
function dataUrl(mime: unknown, data: unknown): string | undefined {
  const type = typeof mime === "string" ? mime : "image/png";
  if (data instanceof Uint8Array) return `data:${type};base64,${Buffer.from(data).toString("base64")}`;
  return typeof data === "string" && data ? (data.startsWith("data:") ? data : `data:${type};base64,${data}`) : undefined;
}

/**
 * The image an image block names: the standard `{type: "image", url}` and `{type: "image", data,
 * mimeType}` (agent-chat-ui's upload), the older `{type: "image_url", image_url}` and `source_type`
 * blocks; an image Loupe stored already (its id in the metadata) stays that image.
 */
export function imageOfBlock(block: Block): HumanAsk["images"][number] | undefined {
  const metadata = (block.metadata ?? {}) as Record<string, unknown>;
  if (block.type === "image" && typeof metadata[IMAGE_ID_KEY] === "string") return { storedId: metadata[IMAGE_ID_KEY] as string };
  if (block.type === "image_url") {
    const url = typeof block.image_url === "string" ? block.image_url : (block.image_url as { url?: unknown } | undefined)?.url;
    return typeof url === "string" ? { source: url } : undefined;
  }
  if (block.type !== "image") return undefined;
  if (block.source_type === "base64") {
    const source = dataUrl(block.mime_type ?? block.mimeType, block.data);
    return source ? { source } : undefined;
  }
  if (typeof block.url === "string") return { source: block.url };
  const source = dataUrl(block.mimeType ?? block.mime_type, block.data);
  return source ? { source } : undefined;
}

/** What a human message asks: the text of its text blocks (or its string content) and its images. */
export function humanAsk(message: BaseMessage): HumanAsk {
  const content = message.content;
  if (typeof content === "string") return { text: content.trim(), images: [] };
  const texts: string[] = [];
  const images: HumanAsk["images"] = [];
  for (const block of content as Block[]) {
    if (block.type === "text" && typeof block.text === "string") texts.push(block.text);
    const image = imageOfBlock(block);
    if (image) images.push(image);
  }
  return { text: texts.join("\n").trim(), images };
}

/** The last human message of a list, if any. */
export function lastHuman(messages: readonly BaseMessage[]): BaseMessage | undefined {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]!.getType() === "human") return messages[i];
  return undefined;
}

/**
 * The human message as state keeps it: the same id and text, each image block pointing at the
 * stored image (the image route's URL, the img_N id and size in its metadata), so no base64 stays.
 */
export function storedHumanMessage(message: BaseMessage, refs: ImageRef[], urlFor?: ImageUrlFor): HumanMessage {
  const { text } = humanAsk(message);
  const blocks: Block[] = text ? [{ type: "text", text }] : [];
  for (const ref of refs) {
    const metadata = { [IMAGE_ID_KEY]: ref.id, width: ref.width, height: ref.height, sha256: ref.sha256 };
    blocks.push(urlFor ? { type: "image", url: urlFor(ref), mimeType: ref.mime, metadata } : { type: "text", text: `[${ref.id}: ${ref.width}×${ref.height}]`, metadata });
  }
  return new HumanMessage({ id: message.id ?? randomUUID(), content: blocks as never, name: message.name });
}

/**
 * The writes that put `replacement` in place of `original`: the same id replaces it; a message
 * without an id can only be replaced by rewriting the list, every message with an id of its own.
 */
export function replaceMessage(all: readonly BaseMessage[], original: BaseMessage, replacement: BaseMessage): BaseMessage[] {
  if (original.id) return [replacement];
  const rewritten = all.map((m) => (m === original ? replacement : m.id ? m : withId(m)));
  return [new RemoveMessage({ id: REMOVE_ALL_MESSAGES }), ...rewritten];
}

function withId(message: BaseMessage): BaseMessage {
  const Type = message.constructor as new (fields: Record<string, unknown>) => BaseMessage;
  return new Type({ ...message, id: randomUUID() });
}

/** The visible text of a model turn: its thinking and what it wrote outside thinking and tool calls. */
export function turnText(text: string, reasoning?: string): string {
  const think = reasoning?.trim() || extractThink(text);
  const rest = text
    .replace(/<think>[\s\S]*?(<\/think>|$)/gi, "")
    .replace(/<tool_call>[\s\S]*?(<\/tool_call>|$)/gi, "")
    .trim();
  return [think, rest].filter(Boolean).join("\n\n");
}

function argsOf(call: PendingCall | RawToolCall): Record<string, unknown> {
  if ("args" in call) return call.args ?? {};
  try {
    const parsed = JSON.parse(call.arguments) as unknown;
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A model turn as an AI message: its thinking as text, its calls as tool_calls with their ids (Loupe's unique ones), the model's name. */
export function modelTurnMessage(id: string, text: string, reasoning: string | undefined, calls: PendingCall[], modelName: string | undefined): AIMessage {
  const toolCalls = calls.map((c) => ({ id: c.callId, name: c.name, args: argsOf(c), type: "tool_call" as const }));
  return new AIMessage({ id, content: turnText(text, reasoning), tool_calls: toolCalls, ...(modelName ? { name: modelName } : {}) });
}

/** One call's answer as a tool message: the result text, and each new image with its id, size and a Markdown link. */
export function toolResultMessage(call: PendingCall, record: ToolCallRecord | undefined, text: string, images: ImageRef[], urlFor?: ImageUrlFor): ToolMessage {
  const lines = [text];
  for (const image of images) {
    const link = urlFor ? ` ![${image.id}](${urlFor(image)})` : "";
    lines.push(`${image.id} (${image.width}×${image.height}${image.op ? `; ${image.op}` : ""})${link}`);
  }
  return new ToolMessage({ id: `tool-${call.callId}`, tool_call_id: call.callId, name: call.name, content: lines.join("\n"), status: record && !record.ok ? "error" : "success" });
}

function citationLine(citation: Citation): string {
  return citation.type === "url" ? `- [${citation.title ?? citation.url}](${citation.url})` : `- ${citation.id}`;
}

/** The answer as the last AI message, its citations listed after it (and kept in its metadata). */
export function answerMessage(id: string, final: FinalAnswer, modelName: string | undefined): AIMessage {
  const sources = final.citations.length ? `\n\nSources:\n${final.citations.map(citationLine).join("\n")}` : "";
  return new AIMessage({
    id,
    content: `${final.answer}${sources}`,
    ...(modelName ? { name: modelName } : {}),
    response_metadata: { citations: final.citations, reason: final.reason },
  });
}
