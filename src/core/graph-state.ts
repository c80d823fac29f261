// The agent graph's state schema: AgentState's fields, with the append-only lists checkpointed as deltas, and reading a thread's state from a checkpointer.
import {
  DeltaValue,
  ReducedValue,
  StateSchema,
  type BaseChannel,
  type BaseCheckpointSaver,
} from "@langchain/langgraph";
import type { RunnableConfig } from "@langchain/core/runnables";
import { z } from "zod/v4";
import {
  AgentState,
  ImageRefSchema,
  ToolCallRecordSchema,
  ToolResultSchema,
  TurnSchema,
  type AgentStateValue,
  type ToolResult,
} from "./state.js";

/** A batch reducer for append-only lists: each write is a list of new items. */
function appendAll<T>(current: T[], writes: T[][]): T[] {
  return writes.length === 1 ? current.concat(writes[0]!) : current.concat(...writes);
}

function appendOnly<T extends z.ZodType>(item: T) {
  return new DeltaValue(z.array(item).default(() => []), {
    inputSchema: z.array(item),
    reducer: appendAll<z.infer<T>>,
  });
}

/**
 * The channels that only ever grow: checkpointed as deltas (LangGraph's DeltaChannel), so a
 * checkpoint holds what a step added, not the whole list again. A checkpoint after k tool calls is
 * then O(1) bytes instead of O(k), and a run's checkpoints O(n) in total instead of O(n²). The value
 * is rebuilt on read by replaying the writes of the checkpoint's ancestors.
 */
export const DELTA_CHANNELS = ["conversation", "images", "toolCalls"] as const;

/**
 * The state schema of the agent graph: every field of AgentState (validated with its zod schema
 * when a node writes it), with conversation, images and toolCalls as delta channels, and the
 * per-turn results appended until reflect clears them. Nodes see the same values as before
 * (`AgentStateValue`); only how the checkpoints store them differs.
 *
 * Consequence: a raw checkpoint's `channel_values` no longer holds the delta channels. Read a
 * thread's state with the compiled graph's `getState`, or with {@link readAgentState} when only the
 * checkpointer is at hand.
 */
export const AgentGraphState = new StateSchema({
  ...AgentState.shape,
  conversation: appendOnly(TurnSchema),
  images: appendOnly(ImageRefSchema),
  toolCalls: appendOnly(ToolCallRecordSchema),
  results: new ReducedValue(z.array(ToolResultSchema).default(() => []), {
    inputSchema: z.array(ToolResultSchema),
    reducer: (current: ToolResult[], update: ToolResult[]) => current.concat(update),
  }),
});

/** The values of channels never written are absent from a checkpoint: these are their empty values. */
const EMPTY_VALUES: Omit<AgentStateValue, "question" | "usage"> = {
  imageSources: [],
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
  if (!tuple || !stored || stored.question === undefined) return null;
  const values: Record<string, unknown> = { ...stored };
  const channels = AgentGraphState.getChannels() as Record<string, BaseChannel>;
  const missing = DELTA_CHANNELS.filter((k) => !Object.prototype.hasOwnProperty.call(stored, k));
  const histories = missing.length ? await saver.getDeltaChannelHistory({ config: tuple.config, channels: [...missing] }) : {};
  for (const k of DELTA_CHANNELS) {
    const spec = channels[k] as BaseChannel & { replayWrites(writes: unknown[]): void };
    const history = histories[k];
    const channel = spec.fromCheckpoint((history ? history.seed : stored[k]) as never) as typeof spec;
    if (history) channel.replayWrites(history.writes);
    values[k] = channel.isAvailable() ? channel.get() : [];
  }
  return withEmptyChannels(values);
}
