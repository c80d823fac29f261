// Example: a parent graph that fans a batch of questions out to the Loupe agent (a subgraph, one Send per question) and collects the answers.
// Run: npx tsx examples/batch.ts "What does the sign say?" "Which way is the arrow pointing?" -- photo.jpg https://example.org/b.png
// (questions, then `--`, then the images every question is asked about; the model server comes from LOUPE_MODEL_URL).
import { pathToFileURL } from "node:url";
import { END, MemorySaver, Send, START, StateGraph } from "@langchain/langgraph";
import { registry } from "@langchain/langgraph/zod";
import { z } from "zod/v4";
import { AnyRunContext, createLoupeAgent, recursionLimitFor, runContextOf, type LoupeAgent, type LoupeConfig } from "../src/index.js";

const QuestionSchema = z.object({ question: z.string(), imageSources: z.array(z.string()).default([]) });

const AnswerSchema = z.object({
  index: z.int(),
  question: z.string(),
  answer: z.string().nullable(),
  reason: z.enum(["answered", "budget", "no_answer", "failed"]),
  toolCalls: z.int(),
  error: z.string().optional(),
});
export type BatchAnswer = z.infer<typeof AnswerSchema>;

export const BatchState = z.object({
  questions: z.array(QuestionSchema),
  /** Filled by the parallel agent runs in whatever order they finish. */
  answers: z.array(AnswerSchema).register(registry, { reducer: { fn: (a: BatchAnswer[], b: BatchAnswer[]) => a.concat(b) }, default: () => [] }),
  /** The answers in question order. */
  results: z.array(AnswerSchema).default([]),
});

/** What one Send carries to the agent node. */
interface AgentTask {
  index: number;
  question: string;
  imageSources: string[];
}

/**
 * The batch graph. `agent` is the compiled Loupe agent without a checkpointer of its own, so each
 * run is checkpointed as a subgraph of this graph's thread. With a durable checkpointer (SqliteSaver,
 * PostgresSaver) and the same thread id, a crashed batch could be resumed; main() below uses an
 * in-memory MemorySaver and a fresh thread id per run, so there a crashed batch starts over.
 */
export function buildBatchGraph(agent: LoupeAgent) {
  // The agent's run context is the batch's context too, so one context configures every run.
  return new StateGraph(BatchState, { context: AnyRunContext })
    .addNode("ask_agent", async (task: AgentTask, config) => {
      try {
        const out = await agent.invoke({ question: task.question, imageSources: task.imageSources }, config);
        const answer: BatchAnswer = { index: task.index, question: task.question, answer: out.final?.answer ?? null, reason: out.final?.reason ?? "failed", toolCalls: out.usage.toolCalls };
        return { answers: [answer] };
      } catch (err) {
        // One failing question (an unreadable image) must not sink the batch.
        if ((err as Error).name === "GraphInterrupt") throw err;
        return { answers: [{ index: task.index, question: task.question, answer: null, reason: "failed" as const, toolCalls: 0, error: (err as Error).message }] };
      }
    })
    .addNode("collect", (state: z.infer<typeof BatchState>) => ({ results: [...state.answers].sort((a, b) => a.index - b.index) }))
    .addConditionalEdges(START, (state: z.infer<typeof BatchState>) =>
      state.questions.map((q, index) => new Send("ask_agent", { index, question: q.question, imageSources: q.imageSources } satisfies AgentTask)),
    )
    .addEdge("ask_agent", "collect")
    .addEdge("collect", END);
}

/** LangGraph's step limit for the batch: each agent run counts its own steps, the parent needs only three. */
export function batchRunConfig(settings: LoupeConfig, threadId: string) {
  // LangGraph types a context as having every key; optional settings may be absent, hence the cast.
  return { configurable: { thread_id: threadId }, context: runContextOf(settings) as never, recursionLimit: recursionLimitFor(settings) };
}

async function main(argv: string[]) {
  const split = argv.indexOf("--");
  const questions = split < 0 ? argv : argv.slice(0, split);
  const images = split < 0 ? [] : argv.slice(split + 1);
  if (questions.length === 0) {
    process.stderr.write('usage: npx tsx examples/batch.ts "question 1" "question 2" ... [-- image ...]\n');
    return 2;
  }
  const { agent, deps, config } = createLoupeAgent();
  try {
    const batch = buildBatchGraph(agent).compile({ checkpointer: new MemorySaver() });
    const out = await batch.invoke(
      { questions: questions.map((question) => ({ question, imageSources: images })) },
      batchRunConfig(config, `batch-${Date.now()}`),
    );
    for (const r of out.results) process.stdout.write(`${r.index + 1}. ${r.question}\n   ${r.answer ?? `(failed: ${r.error})`}\n`);
    return 0;
  } finally {
    await deps.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main(process.argv.slice(2));
