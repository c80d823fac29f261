// The agent's graph state: question, image references, the append-only conversation, plan, tool calls, budgets, answer.
import { Overwrite } from "@langchain/langgraph";
import { registry } from "@langchain/langgraph/zod";
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
  }),
  /** A system prompt given as text (the planner's). */
  z.object({ role: z.literal("system_text"), text: z.string() }),
  z.object({ role: z.literal("user"), parts: z.array(PartSchema) }),
  z.object({
    role: z.literal("assistant"),
    text: z.string(),
    toolCalls: z.array(RawToolCallSchema).optional(),
  }),
  z.object({ role: z.literal("tool"), toolCallId: z.string(), text: z.string() }),
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
  kind: z.enum(["image", "search", "invalid"]),
  error: z.string().optional(),
  /** Human-in-the-loop: the call waits for a person's approval (required) or has it (approved). */
  approval: z.enum(["required", "approved"]).optional(),
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
      }),
    ),
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
  /** answered: the model gave an answer; budget: a budget ran out and the model was asked once more. */
  reason: z.enum(["answered", "budget"]),
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
  think: z.string(),
  answer: z.string().optional(),
  problem: z.string().optional(),
});
export type Reply = z.infer<typeof ReplySchema>;

/** Usage before the first turn (fields without a reducer are not defaulted on read, so nodes start from this). */
export const EMPTY_USAGE: Usage = { turns: 0, toolCalls: 0, promptTokens: 0, completionTokens: 0, modelMs: 0, imagesInContext: 0, consecutiveErrors: 0 };

const append = <T>() => ({
  fn: (current: T[], update: T[]) => current.concat(update),
});

export const AgentState = z.object({
  question: z.string().describe("The question to answer"),
  imageSources: z
    .array(z.string())
    .default([])
    .describe("Input images: file paths, http(s) URLs or data: URLs"),
  images: z
    .array(ImageRefSchema)
    .register(registry, { reducer: append<z.infer<typeof ImageRefSchema>>(), default: () => [] }),
  conversation: z
    .array(TurnSchema)
    .register(registry, { reducer: append<Turn>(), default: () => [] }),
  plan: z.array(PlanStepSchema).nullable().default(null),
  /** Only with plan approval on (optional, so states built elsewhere need not name it). */
  planReview: PlanReviewSchema.nullable().optional(),
  pending: z.array(PendingCallSchema).default([]),
  results: z
    .array(ToolResultSchema)
    .register(registry, { reducer: append<ToolResult>(), default: () => [] }),
  toolCalls: z
    .array(ToolCallRecordSchema)
    .register(registry, { reducer: append<ToolCallRecord>(), default: () => [] }),
  usage: UsageSchema.default(() => ({ ...EMPTY_USAGE })),
  reply: ReplySchema.nullable().default(null),
  /** Set by reflect when a budget ran out; routes to the answer node. */
  exhausted: z.string().nullable().default(null),
  final: FinalAnswerSchema.nullable().default(null),
});
export type AgentStateValue = z.infer<typeof AgentState>;

export const AgentInput = z.object({
  question: AgentState.shape.question,
  imageSources: AgentState.shape.imageSources,
});
export type AgentInputValue = z.input<typeof AgentInput>;

/** What a run returns (the graph's output schema). */
export const AgentOutput = z.object({
  question: z.string(),
  final: FinalAnswerSchema.nullable(),
  images: z.array(ImageRefSchema),
  toolCalls: z.array(ToolCallRecordSchema),
  usage: UsageSchema,
});
export type AgentOutputValue = z.infer<typeof AgentOutput>;

/** The planner-only graph (R1V4 Plan mode on its own): the question and images in, the plan out, nothing executed. */
export const PlanOnlyState = z.object({
  question: AgentState.shape.question,
  imageSources: AgentState.shape.imageSources,
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
