// Example: Loupe as a tool of someone else's agent, a `createAgent` from `langchain` (the pattern LangChain recommends for sub-agents): the parent model calls `loupe` with a question and image URLs, and answers from Loupe's answer and sources.
// Run: LOUPE_MODEL_URL=http://gpu:8000/v1 OPENAI_API_KEY=… npx tsx examples/tool.ts "What does the sign say?" https://example.org/photo.jpg
// (the parent model: PARENT_MODEL, default gpt-4.1-mini; any OpenAI-compatible server with PARENT_MODEL_URL and PARENT_API_KEY).
import { pathToFileURL } from "node:url";
import { HumanMessage, type BaseMessage } from "@langchain/core/messages";
import { ChatOpenAI } from "@langchain/openai";
import { createAgent } from "langchain";
import { createLoupeTool, type LoupeToolOptions } from "../src/index.js";

/** The parent agent's model: an OpenAI-compatible chat server. */
export interface ParentModel {
  /** Base URL (…/v1); default OpenAI's. */
  url?: string;
  model: string;
  apiKey?: string;
}

export function chatModel(parent: ParentModel): ChatOpenAI {
  return new ChatOpenAI({ model: parent.model, apiKey: parent.apiKey, configuration: parent.url ? { baseURL: parent.url } : undefined, maxRetries: 1 });
}

/** The parent model from PARENT_MODEL_URL, PARENT_MODEL and PARENT_API_KEY (or OPENAI_API_KEY). */
export function parentModelFromEnv(env: NodeJS.ProcessEnv = process.env): ParentModel {
  return { url: env.PARENT_MODEL_URL, model: env.PARENT_MODEL ?? "gpt-4.1-mini", apiKey: env.PARENT_API_KEY ?? env.OPENAI_API_KEY };
}

const SYSTEM_PROMPT =
  "You are a helpful assistant. When a question is about an image, call the loupe tool with the question and the image URLs, " +
  "then answer from its result and name its sources.";

/** A `createAgent` agent with Loupe among its tools (here its only one). */
export function buildToolAgent(options: { parent: ParentModel; loupe?: LoupeToolOptions }) {
  return createAgent({ model: chatModel(options.parent), tools: [createLoupeTool(options.loupe)], systemPrompt: SYSTEM_PROMPT });
}

/** The user's turn: the question, and the images by URL (a model passes URLs on; it cannot pass on pixels). */
export function userTurn(question: string, images: string[]): HumanMessage {
  return new HumanMessage(images.length ? `${question}\n\nImages:\n${images.map((url) => `- ${url}`).join("\n")}` : question);
}

/** Asks the parent agent a question about images; returns its final answer and the whole conversation. */
export async function askWithLoupeTool(options: { parent: ParentModel; loupe?: LoupeToolOptions; question: string; images: string[] }) {
  const agent = buildToolAgent(options);
  const out = await agent.invoke({ messages: [userTurn(options.question, options.images)] });
  const messages = out.messages as BaseMessage[];
  return { answer: messages.at(-1)?.text ?? "", messages };
}

async function main(argv: string[]) {
  const [question, ...images] = argv;
  if (!question) {
    process.stderr.write('usage: npx tsx examples/tool.ts "question" [image URL ...]\n');
    return 2;
  }
  const { answer } = await askWithLoupeTool({ parent: parentModelFromEnv(), question, images });
  process.stdout.write(`${answer}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main(process.argv.slice(2));
