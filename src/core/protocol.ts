// The model protocol, in one place: prompts, how turns become a request, and how a reply becomes tool calls or an answer.
import type { Dialect } from "./config.js";
import type { ImageRef } from "./images.js";
import { SANDBOX_IMAGES_DIR, SANDBOX_OUTPUT_DIR } from "./sandbox.js";
import type { CodeLimits, Part, PendingCall, RawToolCall, Reply, Turn } from "./state.js";

/** A tool as offered to the model (OpenAI function format without the wrapper). */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

export interface ModelReply {
  /** The server's id of the reply (chatcmpl-…), when it gave one: the AI message in `messages` takes it, so streamed tokens and the message agree. */
  id?: string;
  content: string;
  /** The reasoning a server returned apart from the content (vLLM's reasoning parser: `reasoning_content` or `reasoning`). */
  reasoning?: string;
  toolCalls: RawToolCall[];
  finishReason: string | null;
  usage: { promptTokens: number; completionTokens: number };
  ms: number;
}

/**
 * What every agent turn sends besides the conversation: tools (tools dialect) or the stop string
 * (tags dialect). One place, so every request of a run carries the same fields and stays a prefix extension.
 */
export function dialectRequestOptions(dialect: Dialect, specs: ToolSpec[]): { tools?: ToolSpec[]; stop?: string[] } {
  return dialect === "tools" ? { tools: specs } : { stop: ["</tool_call>"] };
}

const TAG_NAMES = "observation|answer|tool_call|tool_response|think|plan";
const TAG_PATTERN = new RegExp(`<(\\s*/?\\s*(?:${TAG_NAMES})\\b[^>]*)>`, "gi");

/**
 * Makes text from the outside world (a web page, a search snippet, an error echoing model output)
 * unable to close an observation or forge a protocol tag: `<answer>` becomes `&lt;answer&gt;`.
 */
export function neutralizeTags(text: string): string {
  return text.replace(TAG_PATTERN, "&lt;$1&gt;");
}

/** What the system prompt says about the code tool: the files, the conventions and the limits. */
function codeToolLines(limits: CodeLimits): string[] {
  const kib = Math.round(limits.outputBytes / 1024);
  return [
    "",
    "# The code tool",
    "code runs a self-contained Python 3 program in a sandbox with PIL, numpy and OpenCV (cv2), without network access. Each call starts fresh: import and open what you need every time.",
    `Every image of this conversation is a read-only file: img_N is at ${SANDBOX_IMAGES_DIR}/img_N.<ext> (jpg, png, webp or gif, its format), and each input image also at the path given with it, relative to the working directory.`,
    `To show an image you made, save it under ${SANDBOX_OUTPUT_DIR}/ with a new name (e.g. ${SANDBOX_OUTPUT_DIR}/<name>_<random>.jpg) and print its path; it becomes the next img_N and you see it. At most ${limits.maxImages} images per call.`,
    `What the program prints comes back as {"result": "…", "type": "code"}; on an error, the traceback. Limits per call: ${Math.round(limits.timeoutMs / 1000)} s, ${limits.memoryMb} MiB of memory, ${kib} KiB of printed output.`,
  ];
}

export function systemPrompt(dialect: Dialect, tools: ToolSpec[], coordsDefault: string, code?: CodeLimits): string {
  const searching = tools.some((t) => t.name === "text_search" || t.name === "web_visit");
  const lines = [
    "You are Loupe, a multimodal research agent. You answer questions about images by thinking with them and, when needed, by searching.",
    "Images are named img_0, img_1, …: the input images first, then every image a tool produces, in order. Any image can be the input of another tool, so crops can be cropped again.",
    `Boxes are [x1, y1, x2, y2] with coords "${coordsDefault}" unless you pass another: "rel1000" is 0–1000 relative to the image, "norm1" is 0–1, "pixel" is absolute pixels.`,
    "Work step by step: look closely at details with crop or zoom, enhance when something is hard to read" +
      (searching ? ", search the web for facts you cannot see, and read pages to verify them" : "") +
      ". Call tools as many times as you need.",
    "When you are sure, give the final answer inside <answer>…</answer>, short and direct.",
  ];
  if (dialect === "tools") {
    lines.push("Before each action, think briefly inside <think>…</think>.");
    if (code) lines.push(...codeToolLines(code));
    return lines.join("\n");
  }
  lines.push(
    "",
    "Each step you write <think>your reasoning</think> and then exactly one of:",
    '<tool_call>{"name": "<tool name>", "arguments": {…}}</tool_call>',
    "<answer>the final answer</answer>",
    "After a tool call, the result comes back as <observation>…</observation>, with any new image attached.",
    "",
    "# Tools",
    ...tools.map((t) => JSON.stringify({ name: t.name, description: t.description, parameters: t.parameters })),
  );
  if (code) lines.push(...codeToolLines(code));
  return lines.join("\n");
}

/**
 * The question with the input images, each labelled with its id and size, and, when the code tool
 * is offered, the path its code can open it by (as R1V4's prompts give the image path).
 */
export function questionTurn(question: string, images: ImageRefWithModelView[], paths?: string[]): Turn {
  const parts: Part[] = [];
  for (const [i, image] of images.entries()) {
    const path = paths?.[i] ? `; path: ${paths[i]}` : "";
    parts.push({ type: "text", text: `${image.ref.id} (${image.ref.width}×${image.ref.height}${path}):` });
    parts.push({ type: "image", id: image.ref.id, sha256: image.view.sha256, mime: image.view.mime });
  }
  parts.push({ type: "text", text: question });
  return { role: "user", parts };
}

/** An image together with the exact bytes chosen to show it to the model. */
export interface ImageRefWithModelView {
  ref: ImageRef;
  view: { sha256: string; mime: ImageRef["mime"]; width: number; height: number };
}

/** One executed (or refused) call, ready to be shown to the model. */
export interface CallObservation {
  call: PendingCall;
  /**
   * The id the assistant turn carries for this call, which its tool message answers; default
   * `call.callId`. They differ when the model repeated an id or left it empty (see uniqueCallIds):
   * the tool message then repeats the model's id, and the server pairs calls and results by order.
   */
  toolCallId?: string;
  text: string;
  images: ImageRefWithModelView[];
}

function imageCaption(image: ImageRefWithModelView): string {
  const { ref, view } = image;
  const shown = view.width !== ref.width || view.height !== ref.height ? `, shown at ${view.width}×${view.height}` : "";
  // An image a code cell saved is also named by the path the cell printed.
  const at = ref.path && ref.op === "code" ? ` at ${ref.path}` : "";
  return `${ref.id}${at} (${ref.width}×${ref.height}${shown}${ref.op ? `; ${ref.op}` : ""})`;
}

/**
 * The tags-dialect observation of a turn whose one call was `code`: R1V4's exact form,
 * `<observation>{"result": "…", "type": "code"}</observation>`, then each new image with its caption, then any notes.
 */
function codeObservationTurn(observation: CallObservation, noteText: string): Turn {
  const parts: Part[] = [];
  let text = `<observation>${neutralizeTags(observation.text)}</observation>`;
  for (const image of observation.images) {
    parts.push({ type: "text", text: `${text}\n${imageCaption(image)}:` });
    parts.push({ type: "image", id: image.ref.id, sha256: image.view.sha256, mime: image.view.mime });
    text = "";
  }
  if (noteText) text += `${text ? "\n" : ""}${noteText}`;
  if (text) parts.push({ type: "text", text });
  return { role: "user", parts };
}

/** Whether a turn's observations are one code call's, which the tags dialect shows in R1V4's exact form. */
export function isLoneCodeCall(names: string[]): boolean {
  return names.length === 1 && names[0] === "code";
}

/** Where the tools dialect puts a call's images, captions and notes: its tool message, or a user turn after the tool messages. */
export type ToolImages = "tool" | "user";

/** A call's images, each after its caption. */
function imageParts(observation: CallObservation): Part[] {
  return observation.images.flatMap((image): Part[] => [
    { type: "text", text: `${imageCaption(image)}:` },
    { type: "image", id: image.ref.id, sha256: image.view.sha256, mime: image.view.mime },
  ]);
}

/**
 * The tools dialect's turns: one `tool` message per call. With toolImages "tool", a call's images
 * (with their captions) are content parts of its own tool message and the notes close the last one,
 * so the chat template renders them all inside the same <tool_response> block and no user turn
 * moves its "last query". With "user", they follow in one user turn, for servers that refuse images in tool messages.
 */
function toolObservationTurns(observations: CallObservation[], noteText: string, toolImages: ToolImages): Turn[] {
  const turns = observations.map((o): Extract<Turn, { role: "tool" }> => ({ role: "tool", toolCallId: o.toolCallId ?? o.call.callId, text: neutralizeTags(o.text) }));
  if (toolImages === "tool") {
    observations.forEach((o, i) => {
      const parts = [...imageParts(o), ...(noteText && i === observations.length - 1 ? [{ type: "text" as const, text: noteText }] : [])];
      if (parts.length) turns[i] = { ...turns[i]!, parts };
    });
    return turns;
  }
  const parts: Part[] = observations.flatMap(imageParts);
  if (noteText) parts.push({ type: "text", text: noteText });
  return parts.length ? [...turns, { role: "user", parts }] : turns;
}

/**
 * Turns for the results of one model turn's calls, in call order.
 * tools dialect: one `tool` message per call, its images and the notes in it (or, with
 * toolImages "user", in one user turn after them; see toolObservationTurns).
 * tags dialect: one user turn `<observation>…</observation>` with the images inside (a lone
 * code call's in R1V4's exact form, see codeObservationTurn).
 */
export function observationTurns(dialect: Dialect, observations: CallObservation[], notes: string[], toolImages: ToolImages = "tool"): Turn[] {
  const noteText = notes.length ? `Note: ${notes.map(neutralizeTags).join(" ")}` : "";
  if (dialect === "tools") return toolObservationTurns(observations, noteText, toolImages);

  if (isLoneCodeCall(observations.map((o) => o.call.name))) return [codeObservationTurn(observations[0]!, noteText)];
  const parts: Part[] = [];
  let text = "<observation>\n";
  observations.forEach((o, i) => {
    const header = observations.length > 1 ? `[${i + 1}] ${o.call.name}: ` : "";
    text += header + neutralizeTags(o.text);
    for (const image of o.images) {
      parts.push({ type: "text", text: `${text}\n${imageCaption(image)}:` });
      parts.push({ type: "image", id: image.ref.id, sha256: image.view.sha256, mime: image.view.mime });
      text = "";
    }
    text += "\n";
  });
  if (noteText) text += `${noteText}\n`;
  text += "</observation>";
  parts.push({ type: "text", text });
  return [{ role: "user", parts }];
}

/**
 * What the environment says to the model outside a tool result, as a user turn: in the tags
 * dialect an <observation>; in the tools dialect wrapped in <tool_response> tags, so that Qwen's
 * Thinking template does not take it for a new question (its "last query", after which alone
 * earlier reasoning is kept) and the request still extends the one before.
 */
function environmentTurn(dialect: Dialect, text: string): Turn {
  const wrapped = dialect === "tags" ? `<observation>\n${text}\n</observation>` : `<tool_response>\n${text}\n</tool_response>`;
  return { role: "user", parts: [{ type: "text", text: wrapped }] };
}

/** The message telling the model what was wrong with its last reply (no call could be made from it). */
export function formatErrorTurn(dialect: Dialect, problem: string): Turn {
  return environmentTurn(dialect, `Format error: ${neutralizeTags(problem)}`);
}

export function finalAnswerRequest(dialect: Dialect, reason: string): Turn {
  return environmentTurn(dialect, `${reason} Do not call any more tools. Give your best final answer now, inside <answer>…</answer>.`);
}

const THINK = /<think>([\s\S]*?)(?:<\/think>|$)/i;
const ANSWER = /<answer>([\s\S]*?)(?:<\/answer>|$)/i;
const TOOL_CALL_OPEN = /<tool_call>/i;

export function extractThink(content: string): string {
  return THINK.exec(content)?.[1]?.trim() ?? "";
}

/**
 * The text of a reply's first <answer> (an unclosed tag runs to the end: the model may stop there),
 * or null when there is none. The agent and the evaluation both read answers with this.
 */
export function extractAnswer(content: string): string | null {
  const m = ANSWER.exec(content);
  return m ? m[1]!.trim() : null;
}

function stripThink(content: string): string {
  return content.replace(/<think>[\s\S]*?(<\/think>|$)/gi, "").trim();
}

/**
 * What a reply says outside its thinking and its tool calls: the best answer there is when a
 * model, told to answer, still calls a tool or gives no <answer>.
 */
export function textOutsideCalls(content: string): string {
  return stripThink(content).replace(/<tool_call>[\s\S]*?(<\/tool_call>|$)/gi, "").trim();
}

/**
 * The assistant turn a reply becomes, as the next request sends it back. With tool calls in the
 * tools dialect, the one trailing newline the server's tool parser leaves before `<tool_call>` is
 * dropped (the chat template writes its own) and whitespace alone becomes no text. The server's
 * separate reasoning is kept, to be sent back on this turn.
 */
function assistantTurn(dialect: Dialect, content: string, raw: ModelReply): Extract<Turn, { role: "assistant" }> {
  const calls = raw.toolCalls.length > 0;
  let text = content;
  if (calls && dialect === "tools") {
    text = text.replace(/\n$/, "");
    if (!text.trim()) text = "";
  }
  return { role: "assistant", text, ...(calls ? { toolCalls: raw.toolCalls } : {}), ...(raw.reasoning ? { reasoning: raw.reasoning } : {}) };
}

export interface ParsedReply {
  reply: Reply;
  /** The assistant turn to append, normalised so that history re-renders byte-identically. */
  turn: Extract<Turn, { role: "assistant" }>;
  calls: RawToolCall[];
}

const TAG_CALL_SHAPE = 'Write exactly <tool_call>{"name": "crop", "arguments": {"image": "img_0", "bbox": [100, 200, 500, 600]}}</tool_call>.';

/** Reads a model reply in either dialect. Never throws: problems become `malformed` with an explanation. */
export function parseReply(dialect: Dialect, raw: ModelReply, turnIndex: number): ParsedReply {
  let content = raw.content ?? "";
  if (dialect === "tags" && TOOL_CALL_OPEN.test(content) && !/<\/tool_call>/i.test(content) && raw.finishReason !== "length") {
    // vLLM drops the stop string itself; restore it so the history is well-formed.
    content = `${content}</tool_call>`;
  }
  const think = extractThink(raw.reasoning ? `<think>${raw.reasoning}</think>` : content);
  const turn = assistantTurn(dialect, content, raw);
  const malformed = (problem: string): ParsedReply => ({
    reply: { kind: "malformed", think, problem },
    turn,
    calls: [],
  });

  if (raw.finishReason === "length") {
    return malformed(
      "your reply was cut off because it reached the token limit before it was complete. Think more briefly and make one tool call or give the answer.",
    );
  }
  if (dialect === "tools" && raw.toolCalls.length > 0) {
    return { reply: { kind: "calls", think }, turn, calls: uniqueCallIds(raw.toolCalls, turnIndex) };
  }
  if (content.trim() === "") {
    return malformed(
      dialect === "tags"
        ? "your reply was empty. Reply with <think>…</think> followed by a <tool_call> or an <answer>."
        : "your reply was empty. Call a tool, or give the final answer inside <answer>…</answer>.",
    );
  }
  if (TOOL_CALL_OPEN.test(content)) {
    const blocks = [...content.matchAll(/<tool_call>([\s\S]*?)<\/tool_call>/gi)].map((m) => m[1]!.trim());
    if (dialect === "tools") {
      // The server's tool parser could not read the call, so it came back as text.
      return malformed(
        `your tool call could not be parsed by the server and arrived as text (${describeJsonProblem(blocks[0] ?? "")}). Call the tool with valid JSON arguments.`,
      );
    }
    const calls = tagCalls(blocks, turnIndex);
    if (typeof calls === "string") return malformed(calls);
    return { reply: { kind: "calls", think }, turn, calls };
  }
  const answer = extractAnswer(content);
  if (answer !== null) {
    if (!answer) return malformed("the <answer> was empty. Put the final answer inside <answer>…</answer>.");
    return { reply: { kind: "answer", think, answer }, turn, calls: [] };
  }
  if (dialect === "tags") {
    return malformed(
      "your reply had neither a <tool_call> nor an <answer>. After <think>…</think>, write one tool call or the final answer inside <answer>…</answer>.",
    );
  }
  const plain = stripThink(content);
  if (!plain) {
    return malformed("your reply contained only thinking. Call a tool, or give the final answer inside <answer>…</answer>.");
  }
  return { reply: { kind: "answer", think, answer: plain }, turn, calls: [] };
}

/**
 * A turn's calls with ids Loupe can tell apart: an id the model left empty or gave to more than one
 * call becomes `<id or "call">_<turn>_<index>`. Only Loupe's bookkeeping uses these (results, events,
 * approvals); the assistant turn keeps the model's ids so the next request extends this one byte for byte.
 */
export function uniqueCallIds(calls: RawToolCall[], turnIndex: number): RawToolCall[] {
  const counts = new Map<string, number>();
  for (const c of calls) counts.set(c.id, (counts.get(c.id) ?? 0) + 1);
  const taken = new Set(calls.filter((c) => c.id && counts.get(c.id) === 1).map((c) => c.id));
  return calls.map((c, i) => {
    if (taken.has(c.id)) return c;
    let id = `${c.id || "call"}_${turnIndex}_${i}`;
    while (taken.has(id)) id += "_";
    taken.add(id);
    return { ...c, id };
  });
}

/** The calls of a tags-dialect reply's <tool_call> blocks, or what is wrong with them. */
function tagCalls(blocks: string[], turnIndex: number): RawToolCall[] | string {
  const calls: RawToolCall[] = [];
  for (const [i, block] of blocks.entries()) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(block);
    } catch (err) {
      return `the JSON inside <tool_call> is not valid (${(err as Error).message}). ${TAG_CALL_SHAPE}`;
    }
    if (!parsed || typeof parsed !== "object" || typeof (parsed as { name?: unknown }).name !== "string") {
      return `the <tool_call> JSON must be an object with a "name" string and an "arguments" object. ${TAG_CALL_SHAPE}`;
    }
    const { name, arguments: args } = parsed as { name: string; arguments?: unknown };
    calls.push({ id: `call_${turnIndex}_${i}`, name, arguments: args === undefined ? "{}" : typeof args === "string" ? args : JSON.stringify(args) });
  }
  return calls.length ? calls : `a <tool_call> was opened but not completed. ${TAG_CALL_SHAPE}`;
}

function describeJsonProblem(text: string): string {
  try {
    JSON.parse(text);
    return "its JSON was valid but not in the expected form";
  } catch (err) {
    return `invalid JSON: ${(err as Error).message}`;
  }
}

/** Canonical JSON (sorted keys) for comparing calls. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function planModePrompt(tools: ToolSpec[]): string {
  return [
    "You are the planner of a multimodal research agent. Read the question and the image, and write a plan.",
    "Output only a JSON array of steps, nothing else. Each step is",
    '{"description": "...", "tool_name": "<tool>", "parameters": {...}}',
    `where tool_name is one of: ${[...tools.map((t) => t.name), "none"].join(", ")}.`,
    'Use singular parameters ({"image_path"}, {"query"}, {"url"}, {} for none). Later steps may refer to earlier results with placeholders such as [Person from Step 1].',
    "Prefer 2–10 steps, and end with a step whose tool_name is none that verifies the answer.",
  ].join("\n");
}
