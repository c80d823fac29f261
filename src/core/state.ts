// The agent's state, the one source of truth for it: the zod schemas of its parts (types derived from them), the graph's StateSchema, and reading a thread's state back.
import type { RunnableConfig } from "@langchain/core/runnables";
import { DeltaValue, MessagesDeltaValue, Overwrite, ReducedValue, StateSchema, type BaseChannel, type BaseCheckpointSaver } from "@langchain/langgraph";
import type { BaseMessage } from "@langchain/core/messages";
import { z } from "zod/v4";
import { COORDS, DIALECTS } from "./config.js";

export const ImageMimeSchema = z.enum(["image/jpeg", "image/png", "image/webp", "image/gif"]);
export type ImageMime = z.infer<typeof ImageMimeSchema>;

/** What graph state keeps for an image: a reference into the image store, never bytes. */
export const ImageRefSchema = z.object({
  /** The id the model sees: img_0 for the first input image, then img_1, img_2, … */
  id: z.string(),
  sha256: z.string(),
  mime: ImageMimeSchema,
  width: z.int(),
  height: z.int(),
  /** Id of the image this one was made from (null for input images). */
  parent: z.string().nullable(),
  /** Short description of the operation that produced it, e.g. `crop [10,20,400,300]` (null for inputs). */
  op: z.string().nullable(),
  /**
   * The path the model knows the image by besides its id, which the code tool can open: an input's
   * file path as it was given, or where a code cell saved the image (/mnt/data/temp_processed_images/…).
   */
  path: z.string().optional(),
});
export type ImageRef = z.infer<typeof ImageRefSchema>;

/** A part of a user turn: text, or an image by reference (sha256 of the exact bytes sent to the model). */
export const PartSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text"), text: z.string() }),
  z.object({
    type: z.literal("image"),
    id: z.string(),
    sha256: z.string(),
    mime: ImageMimeSchema,
  }),
]);
export type Part = z.infer<typeof PartSchema>;

/** The code tool's limits as the system prompt states them. */
export const CodeLimitsSchema = z.object({ timeoutMs: z.int(), memoryMb: z.int(), outputBytes: z.int(), maxImages: z.int() });
export type CodeLimits = z.infer<typeof CodeLimitsSchema>;

/** A tool call exactly as the model emitted it; `arguments` is the raw JSON text, kept byte-for-byte. */
export const RawToolCallSchema = z.object({ id: z.string(), name: z.string(), arguments: z.string() });
export type RawToolCall = z.infer<typeof RawToolCallSchema>;

/**
 * One turn of the conversation with the model. Turns are only ever appended, and rendered to a
 * request the same way every time, so request k is a prefix of request k+1.
 */
export const TurnSchema = z.discriminatedUnion("role", [
  /**
   * The system prompt is kept as the parameters it is built from, not its text: the tool schemas
   * in it are long, and every checkpoint stores the whole conversation.
   */
  z.object({
    role: z.literal("system"),
    dialect: z.enum(DIALECTS),
    tools: z.array(z.string()),
    coords: z.enum(COORDS),
    /** The code tool's limits, stated in the prompt (present when the code tool is offered). */
    code: CodeLimitsSchema.optional(),
  }),
  /** A system prompt given as text (Plan mode's). */
  z.object({ role: z.literal("system_text"), text: z.string() }),
  z.object({ role: z.literal("user"), parts: z.array(PartSchema) }),
  z.object({
    role: z.literal("assistant"),
    text: z.string(),
    toolCalls: z.array(RawToolCallSchema).optional(),
    /** The reasoning a server returned apart from the text (`reasoning_content`), sent back on this turn. */
    reasoning: z.string().optional(),
  }),
  /** A call's result; `parts` (tools dialect) are its images with their captions, and notes, after the text. */
  z.object({ role: z.literal("tool"), toolCallId: z.string(), text: z.string(), parts: z.array(PartSchema).optional() }),
]);
export type Turn = z.infer<typeof TurnSchema>;

export const PlanStepSchema = z.object({
  description: z.string(),
  tool_name: z.enum(["image_search", "text_search", "web_visit", "crop", "zoom", "none"]).or(z.string()),
  parameters: z.record(z.string(), z.unknown()),
});
export type PlanStep = z.infer<typeof PlanStepSchema>;

/** Human-in-the-loop review of the up-front plan: pending until a person approves, edits or rejects it. */
export const PlanReviewSchema = z.object({
  status: z.enum(["pending", "approved", "edited", "rejected"]),
  /** The reviewer's words, passed on to the model (e.g. why the plan was rejected). */
  note: z.string().optional(),
});
export type PlanReview = z.infer<typeof PlanReviewSchema>;

/** A call the planner extracted from a model turn, validated (or not) against the tool list. */
export const PendingCallSchema = z.object({
  index: z.int(),
  callId: z.string(),
  name: z.string(),
  /** Parsed arguments when valid; null when `error` says why they are not. */
  args: z.record(z.string(), z.unknown()).nullable(),
  kind: z.enum(["image", "code", "search", "invalid"]),
  error: z.string().optional(),
  /** Human-in-the-loop: the call waits for a person's approval (required) or has it (approved). */
  approval: z.enum(["required", "approved"]).optional(),
  /** A person changed the call's arguments before it ran (reflect tells the model). */
  edited: z.boolean().optional(),
});
export type PendingCall = z.infer<typeof PendingCallSchema>;

/** What executing one call produced. Images are store records; reflect gives them ids in call order. */
export const ToolResultSchema = z.object({
  callId: z.string(),
  ok: z.boolean(),
  text: z.string(),
  images: z
    .array(
      z.object({
        sha256: z.string(),
        mime: ImageMimeSchema,
        width: z.int(),
        height: z.int(),
        op: z.string(),
        parent: z.string().nullable(),
        /** For crops/zooms: the box in the parent's pixels, for reflect's checks. */
        box: z.object({ left: z.int(), top: z.int(), width: z.int(), height: z.int() }).optional(),
        /** Standard deviation of the pixel values (0-255), for blank-crop detection. */
        stdev: z.number().optional(),
        /** Where a code cell saved it (see ImageRef.path). */
        path: z.string().optional(),
      }),
    ),
  /** Notes for the model beside the result (e.g. images a code cell made beyond the limit). */
  notes: z.array(z.string()).optional(),
  urls: z.array(z.object({ url: z.string(), title: z.string().optional() })),
  /** Number of search results or pages found; 0 flags an empty search. */
  resultCount: z.int().optional(),
  ms: z.number(),
});
export type ToolResult = z.infer<typeof ToolResultSchema>;

export const ToolCallRecordSchema = z.object({
  step: z.int(),
  turn: z.int(),
  name: z.string(),
  arguments: z.record(z.string(), z.unknown()).nullable(),
  ok: z.boolean(),
  ms: z.number(),
  images: z.array(z.string()),
  error: z.string().optional(),
  /** Pages a search call surfaced, for citations. */
  urls: z.array(z.object({ url: z.string(), title: z.string().optional() })),
});
export type ToolCallRecord = z.infer<typeof ToolCallRecordSchema>;

/** A call the planner refused because the tool-call budget was used up (recorded, but never run and not counted in usage.toolCalls). */
export function isBudgetRefusal(record: Pick<ToolCallRecord, "error">): boolean {
  return /^not run: the budget/.test(record.error ?? "");
}

export const CitationSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("url"), url: z.string(), title: z.string().optional() }),
  z.object({ type: z.literal("image"), id: z.string() }),
]);
export type Citation = z.infer<typeof CitationSchema>;

export const FinalAnswerSchema = z.object({
  answer: z.string(),
  citations: z.array(CitationSchema),
  /**
   * answered: the model gave an answer; budget: a budget ran out and the model, asked once more,
   * wrote an answer; no_answer: a budget ran out and the model wrote none (only thinking or tool
   * calls), so `answer` is a statement saying so.
   */
  reason: z.enum(["answered", "budget", "no_answer"]),
});
export type FinalAnswer = z.infer<typeof FinalAnswerSchema>;

export const UsageSchema = z.object({
  turns: z.int(),
  toolCalls: z.int(),
  promptTokens: z.int(),
  completionTokens: z.int(),
  modelMs: z.number(),
  imagesInContext: z.int(),
  consecutiveErrors: z.int(),
});
export type Usage = z.infer<typeof UsageSchema>;

/** The model's latest reply, parsed: routing reads it. */
export const ReplySchema = z.object({
  kind: z.enum(["calls", "answer", "malformed"]),
  /** The server's id of the reply (its streamed tokens carry it): the answer's message takes it. */
  id: z.string().optional(),
  think: z.string(),
  answer: z.string().optional(),
  problem: z.string().optional(),
});
export type Reply = z.infer<typeof ReplySchema>;

/** Usage before the first turn (fields without a reducer are not defaulted on read, so nodes start from this). */
export const EMPTY_USAGE: Usage = { turns: 0, toolCalls: 0, promptTokens: 0, completionTokens: 0, modelMs: 0, imagesInContext: 0, consecutiveErrors: 0 };

/** Adds one or more model turns' usage: turns, tokens and time. */
export function addModelUsage(usage: Usage, reply: { usage: { promptTokens: number; completionTokens: number }; ms: number }, turns = 1): Usage {
  return {
    ...usage,
    turns: usage.turns + turns,
    promptTokens: usage.promptTokens + reply.usage.promptTokens,
    completionTokens: usage.completionTokens + reply.usage.completionTokens,
    modelMs: usage.modelMs + reply.ms,
  };
}

/** A batch reducer for append-only lists: each write is a list of new items. */
function appendAll<T>(current: T[], writes: T[][]): T[] {
  return writes.length === 1 ? current.concat(writes[0]!) : current.concat(...writes);
}

/**
 * An append-only list checkpointed as deltas (LangGraph's DeltaChannel): a checkpoint holds what a
 * step added, not the whole list again, so a checkpoint after k tool calls is O(1) bytes instead of
 * O(k), and a run's checkpoints O(n) in total instead of O(n²). The value is rebuilt on read by
 * replaying the writes of the checkpoint's ancestors.
 */
function appendOnly<T extends z.ZodType>(item: T) {
  return new DeltaValue(z.array(item).default(() => []), {
    inputSchema: z.array(item),
    reducer: appendAll<z.infer<T>>,
  });
}

/**
 * A value written once (or rarely) and read at every step, checkpointed as a delta: the step that
 * writes it stores it, the other checkpoints do not repeat it. A 1 MB question is then stored once
 * per thread, not once per checkpoint.
 */
function writtenRarely<T extends z.ZodType>(schema: T) {
  return new DeltaValue(schema, {
    inputSchema: schema,
    reducer: (current: z.infer<T>, writes: z.infer<T>[]) => (writes.length ? writes[writes.length - 1]! : current),
  });
}

/** The channels checkpointed as deltas: the lists that only grow, and the inputs written once. */
export const DELTA_CHANNELS = ["question", "imageSources", "conversation", "images", "toolCalls", "messages"] as const;

/** The question being answered: what was asked (its text, the human message it came from, the sources it named), to tell a new question from the same one. */
export const AskedSchema = z.object({
  /** The question's sha256: `asked` is in every checkpoint, so it holds no long text. */
  questionSha256: z.string(),
  messageId: z.string().nullable(),
  sources: z.array(z.string()),
});
export type Asked = z.infer<typeof AskedSchema>;

const question = z.string().describe("The question to answer");
const imageSources = z.array(z.string()).default([]).describe("Input images: file paths, http(s) URLs or data: URLs");

/**
 * The agent graph's state: the question and its input images, image references into the store
 * (never bytes), the append-only conversation with the model, the plan, the calls of the current
 * turn and their results, the record of every tool call, budgets, and the final answer. Each field
 * is validated with its zod schema when a node writes it.
 *
 * conversation, images and toolCalls are delta channels (see appendOnly): a raw checkpoint's
 * `channel_values` does not hold them. Read a thread's state with the compiled graph's `getState`,
 * or with {@link readAgentState} when only the checkpointer is at hand.
 */
export const AgentState = new StateSchema({
  question: writtenRarely(question),
  imageSources: writtenRarely(imageSources),
  images: appendOnly(ImageRefSchema),
  conversation: appendOnly(TurnSchema),
  plan: z.array(PlanStepSchema).nullable().default(null),
  /** Only with plan approval on (optional, so states built elsewhere need not name it). */
  planReview: PlanReviewSchema.nullable().optional(),
  /** The calls of the model's latest turn, validated; the tool nodes run the valid ones. */
  pending: z.array(PendingCallSchema).default([]),
  /** What the tool nodes produced this turn; reflect consumes and clears them. */
  results: new ReducedValue(z.array(ToolResultSchema).default(() => []), {
    inputSchema: z.array(ToolResultSchema),
    reducer: (current: ToolResult[], update: ToolResult[]) => current.concat(update),
  }),
  toolCalls: appendOnly(ToolCallRecordSchema),
  usage: UsageSchema.default(() => ({ ...EMPTY_USAGE })),
  /**
   * LangChain messages for chat front ends and parent agents: the human messages asked (their
   * images stored, no base64), an AI message per model turn, a tool message per call, the answer.
   * Derived from the conversation; the model's requests are built from `conversation` alone.
   */
  messages: MessagesDeltaValue,
  /** What the current question is (set when it is asked). */
  asked: AskedSchema.nullable().default(null),
  reply: ReplySchema.nullable().default(null),
  /** Set by reflect when a budget ran out; routes to the answer node. */
  exhausted: z.string().nullable().default(null),
  final: FinalAnswerSchema.nullable().default(null),
});
export type AgentStateValue = typeof AgentState.State;
/** What a node returns: any subset of the state's fields (append-only ones as the items to add). */
export type AgentStateUpdate = typeof AgentState.Update;

/** A run's input: a `question` with `imageSources`, or `messages` whose last human message asks (text and image blocks). */
export const AgentInput = new StateSchema({
  question: question.optional(),
  imageSources: z.array(z.string()).optional().describe("Input images: file paths, http(s) URLs or data: URLs"),
  messages: MessagesDeltaValue,
});
export type AgentInputValue = typeof AgentInput.Update;

/** The plan graph's input: a question and its images. */
export const PlanInput = z.object({ question, imageSources });

/** What a run returns (the graph's output schema). */
export const AgentOutput = z.object({
  question: z.string(),
  /** The messages channel's list (LangChain messages; see AgentState). */
  messages: z.array(z.custom<BaseMessage>()),
  final: FinalAnswerSchema.nullable(),
  images: z.array(ImageRefSchema),
  toolCalls: z.array(ToolCallRecordSchema),
  usage: UsageSchema,
});
export type AgentOutputValue = z.infer<typeof AgentOutput>;

/** The plan graph (R1V4 Plan mode on its own): the question and images in, the plan out, nothing executed. */
export const PlanOnlyState = z.object({
  question,
  imageSources,
  images: z.array(ImageRefSchema).default([]),
  plan: z.array(PlanStepSchema).nullable().default(null).describe("The steps, or null when the model gave no valid plan"),
  usage: UsageSchema.default(() => ({ ...EMPTY_USAGE })),
});
export type PlanOnlyStateValue = z.infer<typeof PlanOnlyState>;
export const PlanOnlyOutput = z.object({ plan: PlanOnlyState.shape.plan, images: z.array(ImageRefSchema), usage: UsageSchema });

/** Clears the per-turn results channel once reflect has consumed them. */
export function clearedResults(): Overwrite<ToolResult[]> {
  return new Overwrite<ToolResult[]>([]);
}

/** The values of channels never written are absent from a checkpoint: these are their empty values. */
const EMPTY_VALUES: Omit<AgentStateValue, "question" | "usage" | "planReview"> = {
  imageSources: [],
  messages: [],
  asked: null,
  images: [],
  conversation: [],
  plan: null,
  pending: [],
  results: [],
  toolCalls: [],
  reply: null,
  exhausted: null,
  final: null,
};

/** A thread's values with the channels never written filled in with their empty values. */
export function withEmptyChannels(values: Record<string, unknown>): AgentStateValue {
  return { ...EMPTY_VALUES, ...values } as AgentStateValue;
}

/**
 * The state of a thread at its latest checkpoint (or at `checkpointId`), read from the checkpointer
 * alone, with the delta channels rebuilt the way LangGraph rebuilds them; null when the thread does
 * not exist. The same values as `graph.getState(config).values`.
 */
export async function readAgentState(
  saver: BaseCheckpointSaver,
  threadId: string,
  checkpointId?: string,
): Promise<AgentStateValue | null> {
  const config: RunnableConfig = { configurable: { thread_id: threadId, checkpoint_ns: "", ...(checkpointId ? { checkpoint_id: checkpointId } : {}) } };
  const tuple = await saver.getTuple(config);
  const stored = tuple?.checkpoint?.channel_values as Record<string, unknown> | undefined;
  if (!tuple || !stored) return null;
  const values: Record<string, unknown> = { ...stored };
  const channels = AgentState.getChannels() as Record<string, BaseChannel>;
  const missing = DELTA_CHANNELS.filter((k) => !Object.prototype.hasOwnProperty.call(stored, k));
  const histories = missing.length ? await saver.getDeltaChannelHistory({ config: tuple.config, channels: [...missing] }) : {};
  for (const k of DELTA_CHANNELS) {
    const spec = channels[k] as BaseChannel & { replayWrites(writes: unknown[]): void };
    const history = histories[k];
    const channel = spec.fromCheckpoint((history ? history.seed : stored[k]) as never) as typeof spec;
    if (history) channel.replayWrites(history.writes);
    values[k] = channel.isAvailable() ? channel.get() : [];
  }
  // A checkpoint of some other graph, or one made before any input: not an agent thread.
  if (typeof values.question !== "string") return null;
  return withEmptyChannels(values);
}
