// Running a question through a compiled agent: thread ids, streaming progress events, resume, and the result summary.
import { randomUUID } from "node:crypto";
import { Command } from "@langchain/langgraph";
import { recursionLimitFor, type LoupeAgent } from "../../graphs/agent.js";
import type { ApprovalDecision, ApprovalRequest } from "../../nodes/approval.js";
import type { AgentEvent } from "../core/events.js";
import { redactDatabaseUrl, runContextOf, type LoupeConfig } from "../core/config.js";
import type { AgentStateValue, Citation, FinalAnswer } from "../core/state.js";
import { threadLocksFor, type ThreadLocks } from "../runtime/thread-lock.js";

export interface AskResult {
  threadId: string;
  answer: string;
  citations: Citation[];
  toolCalls: Array<{ name: string; arguments: Record<string, unknown> | null; ok: boolean; ms: number }>;
  /** Model turns taken (each is think + one action or the answer). */
  steps: number;
  images: Array<{ id: string; width: number; height: number; op: string | null }>;
  usage: { turns: number; toolCalls: number; promptTokens: number; completionTokens: number; modelMs: number };
  reason: FinalAnswer["reason"];
}

export class RunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RunError";
  }
}

/** Another process is running the thread: one thread, one runner (see src/runtime/thread-lock.ts). */
export class ThreadBusyError extends Error {
  constructor(
    readonly threadId: string,
    readonly holder: string | undefined,
  ) {
    super(`thread ${threadId} is being run by another process${holder ? ` (${holder})` : ""}; wait for it to finish or stop it, then --resume ${threadId}`);
    this.name = "ThreadBusyError";
  }
}

/** The run paused for a person (human in the loop): `request` says what to review. Continue with a decision. */
export class RunPaused extends Error {
  constructor(
    readonly threadId: string,
    readonly request: ApprovalRequest,
  ) {
    super(`thread ${threadId} is waiting for a person to review ${request.type === "plan_review" ? "the plan" : "tool calls"}`);
    this.name = "RunPaused";
  }
}

function pendingRequest(snapshot: { tasks?: ReadonlyArray<{ interrupts?: ReadonlyArray<{ value?: unknown }> }> }): ApprovalRequest | undefined {
  return (snapshot.tasks ?? []).flatMap((t) => t.interrupts ?? [])[0]?.value as ApprovalRequest | undefined;
}

export interface AskOptions {
  settings: LoupeConfig;
  question?: string;
  images?: string[];
  /** Thread id for a new run (default: a new UUID). */
  threadId?: string;
  /** Continue an existing thread instead of starting one. */
  resume?: string;
  /** With `resume`: the decision for a thread paused for review (see RunPaused). */
  decision?: ApprovalDecision;
  onEvent?: (event: AgentEvent) => void;
  signal?: AbortSignal;
  /** Where the thread is locked while it runs (default: from settings, beside the checkpoints). */
  locks?: ThreadLocks;
}

export function summarize(threadId: string, state: AgentStateValue): AskResult {
  if (!state.final) throw new RunError(`thread ${threadId} has no answer yet; continue it with --resume ${threadId}`);
  return {
    threadId,
    answer: state.final.answer,
    citations: state.final.citations,
    toolCalls: state.toolCalls.map((c) => ({ name: c.name, arguments: c.arguments, ok: c.ok, ms: c.ms })),
    steps: state.usage.turns,
    images: state.images.map((i) => ({ id: i.id, width: i.width, height: i.height, op: i.op })),
    usage: {
      turns: state.usage.turns,
      toolCalls: state.usage.toolCalls,
      promptTokens: state.usage.promptTokens,
      completionTokens: state.usage.completionTokens,
      modelMs: Math.round(state.usage.modelMs),
    },
    reason: state.final.reason,
  };
}

/**
 * Runs (or resumes) one question to its answer, checkpointing after every super-step.
 * Throws RunPaused when the run stops for a person's approval, and ThreadBusyError, before
 * reading the thread, when another process is running it.
 */
export async function ask(agent: LoupeAgent, options: AskOptions): Promise<AskResult> {
  const threadId = options.resume ?? options.threadId ?? randomUUID();
  const lock = await (options.locks ?? threadLocksFor(options.settings)).tryAcquire(threadId);
  if (!lock.held) throw new ThreadBusyError(threadId, lock.holder);
  try {
    return await runThread(agent, threadId, options);
  } finally {
    await lock.release();
  }
}

/** ask() on the locked thread. */
async function runThread(agent: LoupeAgent, threadId: string, options: AskOptions): Promise<AskResult> {
  const config = { configurable: { thread_id: threadId } };
  const existing = await agent.getState(config);
  const started = existing.values && Object.keys(existing.values).length > 0 && (existing.values as AgentStateValue).question !== undefined;
  let input: Record<string, unknown> | null;
  if (options.resume) {
    if (!started) {
      const where = options.settings.databaseUrl ? `the database at ${redactDatabaseUrl(options.settings.databaseUrl)}` : options.settings.dataDir;
      throw new RunError(`no thread ${threadId} in ${where}; check the id and ${options.settings.databaseUrl ? "LOUPE_DATABASE_URL" : "--data-dir"}`);
    }
    if ((existing.values as AgentStateValue).final && existing.next.length === 0) {
      return summarize(threadId, existing.values as AgentStateValue);
    }
    const waiting = pendingRequest(existing);
    if (waiting && !options.decision) throw new RunPaused(threadId, waiting);
    if (!waiting && options.decision) throw new RunError(`thread ${threadId} is not waiting for a review; continue it with --resume ${threadId} alone`);
    input = null;
  } else {
    if (started) throw new RunError(`thread ${threadId} already exists; continue it with --resume ${threadId} or pick a new id`);
    if (!options.question?.trim()) throw new RunError("no question given");
    input = { question: options.question, imageSources: options.images ?? [] };
  }
  const stream = await agent.stream((options.decision ? new Command({ resume: options.decision }) : input) as never, {
    ...config,
    context: runContextOf(options.settings) as never,
    recursionLimit: recursionLimitFor(options.settings),
    durability: "sync",
    streamMode: ["custom"],
    signal: options.signal,
  });
  for await (const chunk of stream as AsyncIterable<unknown>) {
    const [, event] = chunk as [string, AgentEvent];
    options.onEvent?.(event);
  }
  const state = await agent.getState(config);
  const waiting = pendingRequest(state);
  if (waiting) throw new RunPaused(threadId, waiting);
  return summarize(threadId, state.values as AgentStateValue);
}
