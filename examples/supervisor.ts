// Example: Loupe as a member of a multi-agent supervisor (`createSupervisor` from `@langchain/langgraph-supervisor`): the supervisor's model hands an image question off to `loupe`, gets Loupe's answer back as one message, and answers the user.
// Run: LOUPE_MODEL_URL=http://gpu:8000/v1 OPENAI_API_KEY=… npx tsx examples/supervisor.ts "What does the sign say?" photo.jpg https://example.org/b.png
// (the supervisor's model: PARENT_MODEL, PARENT_MODEL_URL, PARENT_API_KEY as in examples/tool.ts).
import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import type { BaseMessage, HumanMessage } from "@langchain/core/messages";
import { END, MemorySaver, MessagesAnnotation, START, StateGraph, type BaseCheckpointSaver } from "@langchain/langgraph";
import { createSupervisor } from "@langchain/langgraph-supervisor";
import { createLoupeNode, type LoupeNodeOptions } from "../src/index.js";
import { humanMessageWithImages } from "./subgraph.js";
import { chatModel, parentModelFromEnv, type ParentModel } from "./tool.js";

/**
 * Loupe as a supervisor member: a graph over the supervisor's `messages` (MessagesAnnotation, the
 * supervisor's own state) with one node that answers the last human message through Loupe,
 * compiled with the member's name `loupe` (the supervisor names its handoff tool
 * `transfer_to_loupe` after it, and shows the description to its model). The supervisor keeps
 * only the member's last message: Loupe's one answer.
 */
export function buildLoupeMember(loupe: LoupeNodeOptions = {}) {
  return new StateGraph(MessagesAnnotation)
    .addNode("loupe", createLoupeNode(loupe))
    .addEdge(START, "loupe")
    .addEdge("loupe", END)
    .compile({ name: "loupe", description: "Answers questions about the images in the user's message by looking closely at them and searching the web." });
}

const PROMPT =
  "You are a supervisor. For a question about images, hand off to loupe; when it has answered, give the user its answer with its sources.";

/** The supervisor graph with Loupe as its member (add your other agents beside it). */
export function buildSupervisor(options: { parent: ParentModel; loupe?: LoupeNodeOptions; checkpointer?: BaseCheckpointSaver }) {
  return createSupervisor({ agents: [buildLoupeMember(options.loupe)], llm: chatModel(options.parent), prompt: PROMPT }).compile({
    checkpointer: options.checkpointer ?? new MemorySaver(),
  });
}

/** Sends one human message to the supervisor; returns its final answer and the thread's messages. */
export async function askSupervisor(options: { parent: ParentModel; loupe?: LoupeNodeOptions; message: HumanMessage; threadId?: string }) {
  const supervisor = buildSupervisor(options);
  const out = await supervisor.invoke({ messages: [options.message] }, { configurable: { thread_id: options.threadId ?? randomUUID() } });
  const messages = out.messages as BaseMessage[];
  return { answer: messages.at(-1)?.text ?? "", messages };
}

async function main(argv: string[]) {
  const [question, ...images] = argv;
  if (!question) {
    process.stderr.write('usage: npx tsx examples/supervisor.ts "question" image ...\n');
    return 2;
  }
  const { answer } = await askSupervisor({ parent: parentModelFromEnv(), message: await humanMessageWithImages(question, images) });
  process.stdout.write(`${answer}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main(process.argv.slice(2));
