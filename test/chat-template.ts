// Test helper: renders Loupe's chat requests through Qwen3-VL's own chat templates the way vLLM does, so that
// prefix stability can be checked where the prefix cache works (the rendered prompt), not only on the JSON.
//
// What is emulated, and from where (vLLM's source, repository vllm-project/vllm; read, not copied):
// - request → template input: vllm/entrypoints/chat_utils.py (`_parse_chat_message_content`,
//   `_parse_chat_message_content_parts`, `_parse_chat_message_content_part`, `_get_full_multimodal_text_prompt`,
//   `_postprocess_messages`; main at 001eadcf295d90aa0664963cd6a9d93f38a2f3da);
// - which template and which content format: vllm/renderers/hf.py (`resolve_chat_template`, `_detect_content_format`,
//   `safe_apply_chat_template`; 02e64f581de43218449b3c3450896c43a89f40e0);
// - what a generation comes back as: vllm/tool_parsers/hermes_tool_parser.py (`extract_tool_calls`) and
//   vllm/reasoning/qwen3_reasoning_parser.py (`extract_reasoning`).
// The templates are Qwen's (test/templates/, provenance in its README), rendered with @huggingface/jinja, the Jinja
// implementation transformers.js uses (same trim_blocks/lstrip_blocks set-up and `tojson` as transformers).
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { FAKE_TAVILY_API_KEY, startFakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type RecordedRequest, type ScriptEntry, type ScriptedTurn } from "../src/cli/demo/scripted-model-server.js";
import { TRAJECTORY_PAGES, TRAJECTORY_SEARCH, trajectoryScript, type Dialect } from "../src/cli/demo/trajectory.js";
import { ask } from "../src/run/ask.js";
import { tempDir, testAgent, testSettings, writeImage } from "./helpers.js";

// ---------------------------------------------------------------------------------------------------------------
// Templates

export type TemplateName = "instruct" | "thinking";

export interface ChatTemplate {
  name: TemplateName;
  /** The template text, byte-identical to Qwen's. */
  source: string;
  template: Template;
}

const TEMPLATE_DIR = join(import.meta.dirname, "templates");
const templates = new Map<TemplateName, ChatTemplate>();

/** Qwen3-VL's chat template (Instruct or Thinking), from test/templates/. */
export function loadTemplate(name: TemplateName): ChatTemplate {
  let t = templates.get(name);
  if (!t) {
    const source = readFileSync(join(TEMPLATE_DIR, `qwen3-vl-${name}.jinja`), "utf8");
    t = { name, source, template: new Template(source) };
    templates.set(name, t);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// OpenAI request → what the template receives in vLLM

/**
 * vLLM's content format after `--chat-template-content-format auto` is resolved. "openai": every message's content
 * is a list of `{type: "text", text}` / `{type: "image"}` parts (a string content becomes one text part). "string":
 * text parts joined with "\n", and the image placeholders the model's processor names put *in front* of the text,
 * one per line (vLLM's default without `--interleave-mm-strings`).
 *
 * vLLM's "auto" looks for a `{% for … in message.content %}` loop over a `{% for message in messages %}` item
 * (hf.py `_detect_content_format`): the Instruct template has one ("openai"); the Thinking template only loops over
 * its macro's argument, so auto-detection at the commit read picks "string" for it.
 */
export type ContentFormat = "openai" | "string";

/** Qwen2-VL / Qwen3-VL's placeholder for one image in vLLM's "string" content format. */
export const QWEN_VL_IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>";
const QWEN_VL_VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>";

/** One OpenAI chat-completions content part, as Loupe sends them. */
export type RequestPart = string | { type?: string; text?: string | null; image_url?: { url: string } | string; [k: string]: unknown };

export interface RequestToolCall {
  id?: string;
  type?: string;
  function: { name: string; arguments?: string | Record<string, unknown> | null };
}

/** One message of a recorded chat-completions request body. */
export interface RequestMessage {
  role: string;
  content?: string | RequestPart[] | null;
  name?: string;
  tool_calls?: RequestToolCall[] | null;
  tool_call_id?: string;
  reasoning?: string | null;
  reasoning_content?: string | null;
  [k: string]: unknown;
}

export interface RequestTool {
  type?: string;
  function: { name: string; description?: string; parameters?: Record<string, unknown>; [k: string]: unknown };
  [k: string]: unknown;
}

/** A recorded chat-completions request body (the scripted model server's `RecordedRequest.body`). */
export interface ChatRequestBody {
  messages: RequestMessage[];
  tools?: RequestTool[] | null;
  tool_choice?: unknown;
  stop?: string | string[] | null;
  [k: string]: unknown;
}

export type TemplatePart = { type: "text"; text: string } | { type: "image" } | { type: "video" };

/** A message as the chat template receives it. */
export interface TemplateMessage {
  role: string;
  content: string | TemplatePart[];
  name?: string;
  tool_calls?: Array<{ id?: string; type?: string; function: { name: string; arguments: unknown } }>;
  tool_call_id?: string;
  reasoning?: string;
  reasoning_content?: string;
}

export interface TemplateTool {
  type: string;
  function: { name: string; description: string | null; parameters: Record<string, unknown> | null; [k: string]: unknown };
  [k: string]: unknown;
}

export interface VllmConversionOptions {
  /** Default "openai" (what `--chat-template-content-format openai` gives, and auto-detection for Instruct). */
  contentFormat?: ContentFormat;
  /**
   * vLLM main turns a tool message whose parts are all text into one string, the texts joined with "\n"
   * ("Normalize tool message content from OpenAI array format to plain string"); a tool message with an image keeps
   * its list. Older releases kept every list. Default true.
   */
  joinToolText?: boolean;
  /**
   * The request-message fields vLLM takes an assistant turn's reasoning from; it passes it to the template as both
   * `reasoning` and `reasoning_content`. vLLM main reads only `reasoning` (a `reasoning_content` sent back is
   * dropped). Default ["reasoning"].
   */
  reasoningFields?: ReadonlyArray<"reasoning" | "reasoning_content">;
}

type Parsed = { kind: "text"; text: string } | { kind: "image" } | { kind: "video" } | null;

function parsePart(part: RequestPart): Parsed {
  if (typeof part === "string") return { kind: "text", text: part };
  const type = part.type;
  switch (type) {
    case "text":
    case "input_text":
    case "output_text":
    case "refusal":
      // A text part whose text is missing is skipped (PART_TYPES_TO_SKIP_NONE_CONTENT).
      return typeof part.text === "string" ? { kind: "text", text: part.text } : null;
    case "image_url":
    case "input_image":
    case "image_pil":
    case "image_embeds":
      return { kind: "image" };
    case "video_url":
      return { kind: "video" };
    case undefined:
      if ("image_url" in part) return { kind: "image" };
      if ("video_url" in part) return { kind: "video" };
      throw new Error(`toVllmMessages: content part without a type: ${JSON.stringify(part).slice(0, 200)}`);
    default:
      throw new Error(`toVllmMessages: content part type ${JSON.stringify(type)} is not handled by this harness`);
  }
}

/** vLLM's "string" content: texts joined by "\n", the media placeholders not already in the text put in front. */
function stringContent(parsed: Exclude<Parsed, null>[]): string {
  const texts = parsed.filter((p): p is { kind: "text"; text: string } => p.kind === "text").map((p) => p.text);
  const text = texts.join("\n");
  const placeholders: string[] = [];
  for (const [kind, ph] of [["image", QWEN_VL_IMAGE_PLACEHOLDER], ["video", QWEN_VL_VIDEO_PLACEHOLDER]] as const) {
    const wanted = parsed.filter((p) => p.kind === kind).length;
    if (!wanted) continue;
    const already = text.split(ph).length - 1;
    if (already > wanted) throw new Error(`toVllmMessages: more ${ph} in the text than ${kind}s sent`);
    for (let i = already; i < wanted; i++) placeholders.push(ph);
  }
  if (!placeholders.length) return text;
  return text ? [...placeholders, text].join("\n") : placeholders.join("\n");
}

/** Tool-call arguments as vLLM hands them to the template: a JSON string parsed (invalid JSON → {}), else {}. */
function templateArguments(args: unknown): unknown {
  if (typeof args === "string") {
    try {
      return JSON.parse(args);
    } catch {
      return {};
    }
  }
  if (args !== null && typeof args === "object") return args;
  return {};
}

/** The messages a chat template receives in vLLM for this request. */
export function toVllmMessages(request: ChatRequestBody, options: VllmConversionOptions = {}): TemplateMessage[] {
  const format = options.contentFormat ?? "openai";
  const joinToolText = options.joinToolText ?? true;
  const reasoningFields = options.reasoningFields ?? ["reasoning"];
  return request.messages.map((message) => {
    const raw = message.content;
    const parts: RequestPart[] = raw === null || raw === undefined ? [] : typeof raw === "string" ? [{ type: "text", text: raw }] : raw;
    const parsed = parts.map(parsePart).filter((p): p is Exclude<Parsed, null> => p !== null);
    let content: string | TemplatePart[] =
      format === "openai" ? parsed.map((p): TemplatePart => (p.kind === "text" ? { type: "text", text: p.text } : { type: p.kind })) : stringContent(parsed);
    const out: TemplateMessage = { role: message.role, content };
    if (message.role === "assistant") {
      if (Array.isArray(message.tool_calls)) {
        // _postprocess_messages: an empty list is dropped; arguments become objects.
        if (message.tool_calls.length) {
          out.tool_calls = message.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: templateArguments(c.function.arguments) } }));
        }
      }
      for (const field of reasoningFields) {
        const r = message[field];
        if (r !== null && r !== undefined) {
          out.reasoning = String(r);
          out.reasoning_content = String(r);
          break;
        }
      }
    } else if (message.role === "tool") {
      if (typeof message.tool_call_id === "string") out.tool_call_id = message.tool_call_id;
      if (joinToolText && Array.isArray(content) && content.every((p) => p.type === "text")) {
        content = content.map((p) => (p as { text: string }).text).join("\n");
        out.content = content;
      }
    }
    if (typeof message.name === "string") out.name = message.name;
    return out;
  });
}

/** The request's tools as vLLM passes them to the template (pydantic `model_dump()` of each tool). */
export function toVllmTools(request: ChatRequestBody): TemplateTool[] | undefined {
  if (!Array.isArray(request.tools)) return undefined;
  return request.tools.map((tool) => {
    const { type, function: fn, ...restTool } = tool;
    const { name, description, parameters, ...restFn } = fn;
    return { type: type ?? "function", function: { name, description: description ?? null, parameters: parameters ?? null, ...restFn }, ...restTool };
  });
}

export interface RenderOptions {
  /** Default true: the prompt ends where the model starts writing. */
  addGenerationPrompt?: boolean;
  /** Extra template variables (vLLM's `chat_template_kwargs`), e.g. `{add_vision_id: true}`. */
  templateKwargs?: Record<string, unknown>;
}

/** The prompt text the template renders (what vLLM tokenizes), from template-side messages and tools. */
export function renderPrompt(template: ChatTemplate, messages: TemplateMessage[], tools: TemplateTool[] | undefined, options: RenderOptions = {}): string {
  return template.template.render({
    ...options.templateKwargs,
    messages,
    // transformers passes tools=None and documents=None when absent.
    tools: tools ?? null,
    documents: null,
    add_generation_prompt: options.addGenerationPrompt ?? true,
  });
}

/** A recorded request rendered through `template` as vLLM would. */
export function renderRequest(template: ChatTemplate, request: ChatRequestBody, options: VllmConversionOptions & RenderOptions = {}): string {
  return renderPrompt(template, toVllmMessages(request, options), toVllmTools(request), options);
}

// ---------------------------------------------------------------------------------------------------------------
// What the model generated

/** Python's `json.dumps(value, ensure_ascii=False)` (separators ", " and ": "): how Qwen writes tool-call JSON and how `tojson` renders it. */
export function pyJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return `[${value.map(pyJson).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${JSON.stringify(k)}: ${pyJson(v)}`)
      .join(", ")}}`;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  return JSON.stringify(value);
}

/** A chat-completions reply as a server returns it (`choices[0].message`), plus vLLM's `stop_reason`. */
export interface ModelReply {
  content?: string | null;
  tool_calls?: Array<{ id?: string; type?: string; function: { name: string; arguments: string | Record<string, unknown> } }> | null;
  /** vLLM's field for the reasoning parser's output (vLLM ≤ 0.10 called it `reasoning_content`). */
  reasoning?: string | null;
  reasoning_content?: string | null;
  /** The stop string that ended the generation (vLLM reports it as `stop_reason` and drops it from the content). */
  stop_reason?: string | number | null;
}

/** One Hermes-style tool-call block, as Qwen3-VL writes it and as both templates render it back. */
export function hermesToolCall(name: string, args: unknown): string {
  return `<tool_call>\n{"name": "${name}", "arguments": ${typeof args === "string" ? args : pyJson(args)}}\n</tool_call>`;
}

/**
 * The text the model generated for `reply`, inverting what vLLM did to it: the qwen3 reasoning parser split the
 * output at `</think>` (reasoning before, content after; the Thinking template's prompt already holds `<think>\n`);
 * the hermes tool parser kept the text before the first `<tool_call>` as content (the "\n" before it included) and
 * parsed each `<tool_call>\n{json}\n</tool_call>` block; a stop string was cut off the end. The end-of-turn token
 * itself is left out: a sampled token is never in the KV cache.
 */
export function generatedText(reply: ModelReply): string {
  const reasoning = reply.reasoning ?? reply.reasoning_content;
  let text = reasoning !== null && reasoning !== undefined ? `${reasoning}</think>` : "";
  text += reply.content ?? "";
  (reply.tool_calls ?? []).forEach((call, i) => {
    text += (i > 0 ? "\n" : "") + hermesToolCall(call.function.name, templateArguments(call.function.arguments));
  });
  if (typeof reply.stop_reason === "string") text += reply.stop_reason;
  return text;
}

export interface VllmParsers {
  /** `--tool-call-parser hermes`, applied when the request has tools and tool_choice is not "none". */
  toolParser?: "hermes";
  /** `--reasoning-parser qwen3`. */
  reasoningParser?: "qwen3";
}

/** What vLLM returns for a raw generation of the model, for `request` (stop strings, then the parsers). */
export function vllmReply(raw: string, request: Pick<ChatRequestBody, "stop" | "tools" | "tool_choice">, parsers: VllmParsers): ModelReply & { finish_reason: "stop" | "tool_calls" } {
  let text = raw;
  let stopReason: string | null = null;
  const stops = (Array.isArray(request.stop) ? request.stop : request.stop ? [request.stop] : []).filter((s) => s.length > 0);
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i !== -1 && (best === -1 || i < best)) {
      best = i;
      stopReason = s;
    }
  }
  if (best !== -1) text = text.slice(0, best);

  let reasoning: string | null = null;
  let content: string | null = text;
  if (parsers.reasoningParser === "qwen3") {
    const start = text.indexOf("<think>");
    const body = start === -1 ? text : text.slice(start + "<think>".length);
    const end = body.indexOf("</think>");
    if (end !== -1) {
      reasoning = body.slice(0, end);
      content = body.slice(end + "</think>".length) || null;
    } else {
      // Thinking enabled and no </think>: the whole output is reasoning (truncated).
      reasoning = body;
      content = null;
    }
  }

  let toolCalls: ModelReply["tool_calls"] = null;
  const toolsOn = parsers.toolParser === "hermes" && Array.isArray(request.tools) && request.tools.length > 0 && request.tool_choice !== "none";
  if (toolsOn && content !== null && content.includes("<tool_call>")) {
    const blocks = [...content.matchAll(/<tool_call>([\s\S]*?)<\/tool_call>|<tool_call>([\s\S]*)/g)].map((m) => JSON.parse((m[1] ?? m[2])!) as { name: string; arguments: unknown });
    toolCalls = blocks.map((b, i) => ({ id: `chatcmpl-tool-${i}`, type: "function", function: { name: b.name, arguments: pyJson(b.arguments) } }));
    content = content.slice(0, content.indexOf("<tool_call>")) || null;
  }
  return { content, tool_calls: toolCalls, reasoning, stop_reason: stopReason, finish_reason: toolCalls?.length ? "tool_calls" : "stop" };
}

/** The scripted model server's turn that sends `reply` (its reasoning, which the server cannot send, aside). */
export function scriptedTurnOf(reply: ModelReply): ScriptedTurn {
  const turn: ScriptedTurn = {};
  if (reply.content !== null && reply.content !== undefined) turn.content = reply.content;
  if (reply.tool_calls?.length) {
    turn.toolCalls = reply.tool_calls.map((c) => ({ name: c.function.name, arguments: typeof c.function.arguments === "string" ? c.function.arguments : JSON.stringify(c.function.arguments) }));
  }
  return turn;
}

/**
 * What the scripted server sends for `turn` answering `request`, as a reply (its stop handling included): for
 * replies a script gives directly, e.g. in the benchmark.
 */
export function replyOfScriptedTurn(turn: ScriptedTurn, request: Pick<ChatRequestBody, "stop">): ModelReply {
  const cut = vllmReply(turn.content ?? "", { stop: request.stop }, {});
  return {
    content: turn.content === undefined ? null : cut.content,
    tool_calls: (turn.toolCalls ?? []).map((c) => ({ function: { name: c.name, arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments) } })),
    stop_reason: cut.stop_reason,
  };
}

/**
 * How a model trained on `template` writes the turn a Loupe script describes (`<think>X</think>` then text and/or
 * tool calls): Instruct writes the content as scripted and each tool call as a Hermes block, "\n" after the text
 * and between blocks; Thinking starts inside the `<think>\n` the prompt opened, so it writes `X\n</think>\n\n`
 * and then the rest. This is the format each template renders an assistant turn in.
 */
export function modelOutput(turn: ScriptedTurn, template: TemplateName): string {
  const calls = (turn.toolCalls ?? []).map((c) => hermesToolCall(c.name, typeof c.arguments === "string" ? templateArguments(c.arguments) : c.arguments));
  const content = turn.content ?? "";
  if (template === "instruct") return content + (calls.length ? (content ? "\n" : "") + calls.join("\n") : "");
  const m = /^\s*<think>([\s\S]*?)<\/think>\s*/.exec(content);
  const reasoning = m ? m[1]!.trim() : "";
  const rest = m ? content.slice(m[0].length) : content;
  return `${reasoning}\n</think>\n\n${rest}${calls.length ? (rest ? "\n" : "") + calls.join("\n") : ""}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Reasoning on the wire: a front for the scripted model server

export interface ReasoningFront {
  /** Base URL including `/v1`: give it to Loupe instead of the scripted server's. */
  url: string;
  close(): Promise<void>;
}

/**
 * A loopback proxy in front of the scripted model server that adds a reasoning field to its chat replies, as vLLM
 * does with `--reasoning-parser` (the scripted server has no way to send one). `reasoningFor(i)` gives the
 * reasoning of the i-th chat reply (0-based, the order the script is consumed in), or undefined for none. Streamed
 * replies get one `{delta: {reasoning}}` chunk right after the role chunk, before any content, as vLLM streams it.
 * `field`: "reasoning" (vLLM ≥ 0.11; default), "reasoning_content" (older vLLM, SGLang, llama.cpp) or "both".
 */
export async function startReasoningFront(upstreamUrl: string, reasoningFor: (index: number) => string | undefined, field: "reasoning" | "reasoning_content" | "both" = "reasoning"): Promise<ReasoningFront> {
  const upstream = upstreamUrl.replace(/\/v1\/?$/, "");
  let chats = 0;
  const withReasoning = (target: Record<string, unknown>, reasoning: string) => {
    if (field !== "reasoning_content") target.reasoning = reasoning;
    if (field !== "reasoning") target.reasoning_content = reasoning;
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        const isChat = req.method === "POST" && (req.url ?? "").startsWith("/v1/chat/completions");
        const index = isChat ? chats++ : -1;
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && !["host", "content-length", "connection"].includes(k)) headers[k] = v;
        const up = await fetch(upstream + (req.url ?? "/"), { method: req.method, headers, body: req.method === "GET" || req.method === "HEAD" ? undefined : Buffer.concat(chunks) });
        const type = up.headers.get("content-type") ?? "";
        let body = await up.text();
        const reasoning = isChat && up.status === 200 ? reasoningFor(index) : undefined;
        if (reasoning !== undefined) {
          if (type.includes("text/event-stream")) {
            const events = body.split("\n\n");
            const first = JSON.parse(events[0]!.replace(/^data: /, "")) as Record<string, unknown>;
            const delta: Record<string, unknown> = {};
            withReasoning(delta, reasoning);
            const extra = `data: ${JSON.stringify({ ...first, choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] })}`;
            body = [events[0], extra, ...events.slice(1)].join("\n\n");
          } else {
            const json = JSON.parse(body) as { choices: Array<{ message: Record<string, unknown> }> };
            withReasoning(json.choices[0]!.message, reasoning);
            body = JSON.stringify(json);
          }
        }
        res.writeHead(up.status, { "content-type": type || "application/json" });
        res.end(body);
      })().catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `reasoning front: ${String(err)}` } }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The 15-call trajectory, run end to end with a Qwen3-VL model's replies as vLLM returns them

/** One vLLM set-up for the trajectory: Loupe's dialect, the model's chat template, the reasoning parser. */
export interface EmulatedSetup {
  dialect: Dialect;
  template: TemplateName;
  /** vLLM started with `--reasoning-parser qwen3`. */
  reasoningParser: boolean;
  /** The reply field the reasoning comes in: vLLM ≥ 0.11 sends `reasoning` (default), older servers `reasoning_content`. */
  replyField?: "reasoning" | "reasoning_content";
}

export interface EmulatedRun extends EmulatedSetup {
  requests: ChatRequestBody[];
  /** The same requests as the scripted server recorded them (raw HTTP body included). */
  recorded: RecordedRequest[];
  /** Per request: the model's raw output and what vLLM returned for it. */
  turns: Array<{ raw: string; reply: ModelReply }>;
  answer: string | null;
  toolCalls: number;
}

/** E.g. "tools × thinking (--reasoning-parser qwen3)". */
export function setupLabel(c: EmulatedSetup): string {
  return `${c.dialect} × ${c.template}${c.template === "thinking" ? (c.reasoningParser ? ` (--reasoning-parser qwen3${c.replyField === "reasoning_content" ? ", replies with reasoning_content" : ""})` : " (no reasoning parser)") : ""}`;
}

/**
 * The trajectory's script, each turn written as a Qwen3-VL model on `setup.template` writes it (modelOutput) and
 * returned as vLLM returns it (vllmReply: hermes tool parser, stop strings, optionally the qwen3 reasoning parser).
 * Each turn's raw output and reply are pushed onto `turns` as the script is consumed.
 */
export function emulatedScript(setup: EmulatedSetup, turns: EmulatedRun["turns"]): ScriptEntry[] {
  return trajectoryScript(setup.dialect).map((entry) => (req) => {
    const scripted = typeof entry === "function" ? entry(req) : entry;
    const raw = modelOutput(scripted, setup.template);
    const reply = vllmReply(raw, req.body as ChatRequestBody, { toolParser: "hermes", reasoningParser: setup.reasoningParser ? "qwen3" : undefined });
    turns.push({ raw, reply });
    return scriptedTurnOf(reply);
  });
}

export const TRAJECTORY_QUESTION = "What code is written on the north pier sign, and what does it mark?";

/**
 * Runs the 15-tool-call trajectory end to end against the scripted model server with `emulatedScript`'s replies
 * (`image`: the harbour photo, `harbourImage()`). The scripted server cannot send a reasoning field, so with the
 * reasoning parser a proxy in front of it (startReasoningFront) adds vLLM's reasoning to each reply. As in the
 * trajectory test, the tools dialect streams and the tags dialect does not.
 */
export async function runEmulatedTrajectory(setup: EmulatedSetup, image: Buffer): Promise<EmulatedRun> {
  const tmp = await tempDir();
  const turns: EmulatedRun["turns"] = [];
  const model = await startScriptedModelServer({ script: emulatedScript(setup, turns) });
  const front = setup.reasoningParser ? await startReasoningFront(model.url, (i) => turns[i]?.reply.reasoning ?? undefined, setup.replyField) : undefined;
  const tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  try {
    const path = await writeImage(tmp.dir, "harbour.jpg", image);
    const settings = testSettings({ modelUrl: front?.url ?? model.url, dataDir: tmp.dir, dialect: setup.dialect, tavilyUrl: tavily.url, stream: setup.dialect === "tools" });
    const { agent, close } = testAgent(settings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
    try {
      const result = await ask(agent, { settings, question: TRAJECTORY_QUESTION, images: [path] });
      const recorded = model.chatRequests();
      return { ...setup, requests: recorded.map((r) => r.body as ChatRequestBody), recorded, turns, answer: result.answer, toolCalls: result.toolCalls.length };
    } finally {
      close();
    }
  } finally {
    await front?.close();
    await model.close();
    await tavily.close();
    await tmp.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Prefix report

export interface PairDetail {
  /** Pair k → k+1 (0-based request index k). */
  k: number;
  /** rendered(k) + generated(k) is a prefix of rendered(k+1) (only rendered(k) when no generated text is known). */
  extends: boolean;
  /** The weaker check: rendered(k) alone is a prefix of rendered(k+1). */
  extendsPrompt: boolean;
  /** First offset where rendered(k+1) differs from rendered(k) + generated(k); null when it extends. */
  divergeAt: number | null;
  /** Characters of rendered(k) after the divergence: prompt the server had cached and computes again. */
  reprefilledChars: number;
  /** Characters of generated(k) after the divergence (also cached by vLLM, also computed again). */
  generatedReprefilledChars: number;
  /** Around the divergence: what the cache held (rendered(k) + generated(k)) and what request k+1 renders. */
  around?: { cached: string; next: string };
}

export interface PrefixReport {
  pairs: number;
  extending: number;
  details: PairDetail[];
  /** Sum of reprefilledChars + generatedReprefilledChars over the pairs. */
  reprefilledTotal: number;
  /** The rendered prompts, one per request. */
  rendered: string[];
}

export interface PrefixReportOptions extends VllmConversionOptions, RenderOptions {
  /**
   * What the model generated for each request (index k answers request k), e.g. `generatedText(reply)`. Without
   * it (or for an undefined entry) the check is the weaker one: rendered(k) is a prefix of rendered(k+1).
   */
  generated?: ReadonlyArray<string | undefined>;
  /** Characters shown on each side of a divergence in `around`; default 100. */
  context?: number;
}

/**
 * Qwen3-VL's added tokens that the templates write: each is one token, so a difference inside one (`<think>` against
 * `<tool_call>` share "<t") is a difference at its start.
 */
const SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"];

/** First offset where a and b differ, moved back to the start of a special token it falls inside. */
function firstDifference(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  const CH = 1024;
  while (i + CH <= n && a.slice(i, i + CH) === b.slice(i, i + CH)) i += CH;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === a.length && i <= b.length) return i;
  let d = i;
  for (const token of SPECIAL_TOKENS) {
    for (let s = Math.max(0, i - token.length + 1); s < i; s++) {
      if (s < d && (a.startsWith(token, s) || b.startsWith(token, s))) d = s;
    }
  }
  return d;
}

/** For each consecutive pair of requests: does request k+1's prompt extend request k's plus what was generated? */
export function prefixReport(requests: ReadonlyArray<ChatRequestBody>, template: ChatTemplate, options: PrefixReportOptions = {}): PrefixReport {
  const rendered = requests.map((r) => renderRequest(template, r, options));
  const ctx = options.context ?? 100;
  const details: PairDetail[] = [];
  for (let k = 0; k + 1 < rendered.length; k++) {
    const prompt = rendered[k]!;
    const next = rendered[k + 1]!;
    const cached = prompt + (options.generated?.[k] ?? "");
    const d = firstDifference(cached, next);
    const ok = d === cached.length;
    const detail: PairDetail = {
      k,
      extends: ok,
      extendsPrompt: next.startsWith(prompt),
      divergeAt: ok ? null : d,
      reprefilledChars: ok ? 0 : Math.max(0, prompt.length - d),
      generatedReprefilledChars: ok ? 0 : cached.length - Math.max(d, prompt.length),
    };
    if (!ok) detail.around = { cached: cached.slice(Math.max(0, d - ctx), d + ctx), next: next.slice(Math.max(0, d - ctx), d + ctx) };
    details.push(detail);
  }
  return {
    pairs: details.length,
    extending: details.filter((x) => x.extends).length,
    details,
    reprefilledTotal: details.reduce((n, x) => n + x.reprefilledChars + x.generatedReprefilledChars, 0),
    rendered,
  };
}

export interface PromptStability {
  template: TemplateName;
  contentFormat: ContentFormat;
  pairs: number;
  extending: number;
  /** Mean characters re-prefilled per pair (prompt and generated text after the divergence). */
  reprefilledPerPair: number;
  /** Median over the pairs of the characters re-prefilled (0 for a pair that extends). */
  medianReprefilled: number;
  /** The largest single pair's re-prefilled characters. */
  maxReprefilled: number;
}

/**
 * Prompt-level stability of one trajectory through each of Qwen3-VL's templates, for benchmark tables. `replies[k]`
 * (optional) is the reply to request k; without it only rendered(k) is checked as a prefix.
 */
export function promptStability(
  requests: ReadonlyArray<ChatRequestBody>,
  replies?: ReadonlyArray<ModelReply | undefined>,
  options: { templates?: TemplateName[]; contentFormat?: ContentFormat } & VllmConversionOptions = {},
): PromptStability[] {
  const generated = replies?.map((r) => (r ? generatedText(r) : undefined));
  return (options.templates ?? ["instruct", "thinking"]).map((name) => {
    const report = prefixReport(requests, loadTemplate(name), { ...options, generated });
    const per = report.details.map((d) => d.reprefilledChars + d.generatedReprefilledChars);
    return {
      template: name,
      contentFormat: options.contentFormat ?? "openai",
      pairs: report.pairs,
      extending: report.extending,
      reprefilledPerPair: report.pairs ? Math.round(report.reprefilledTotal / report.pairs) : 0,
      medianReprefilled: median(per),
      maxReprefilled: per.length ? Math.max(...per) : 0,
    };
  });
}

/** Median of a list of numbers (the mean of the middle two for an even count), 0 for none. */
function median(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
