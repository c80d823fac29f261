// Example: Loupe as a node of a parent graph whose state is a `messages` list (a chat graph): the last human message in (its text the question, its image blocks the images), Loupe's answer back as ONE AI message named `loupe`, not its internal trajectory.
// Run: LOUPE_MODEL_URL=http://gpu:8000/v1 npx tsx examples/subgraph.ts "What does the sign say?" photo.jpg https://example.org/b.png
// (files are sent in the message as data: URLs, URLs as they are; Loupe reads images from URLs only, never from the server's files).
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { pathToFileURL } from "node:url";
import { AIMessage, HumanMessage, type BaseMessage } from "@langchain/core/messages";
import { END, MemorySaver, MessagesValue, START, StateGraph, StateSchema, type BaseCheckpointSaver } from "@langchain/langgraph";
import { createLoupeNode, loupeInputFromMessages, type LoupeNodeOptions } from "../src/index.js";

/** The parent's state: a chat, nothing else. */
export const ChatState = new StateSchema({ messages: MessagesValue });

/** Where the parent sends a human message: to Loupe when it carries an image, else to a reply asking for one. */
function route(state: typeof ChatState.State): "loupe" | "ask_for_image" {
  try {
    return loupeInputFromMessages(state.messages).images.length > 0 ? "loupe" : "ask_for_image";
  } catch {
    return "ask_for_image";
  }
}

/**
 * The chat graph: node `loupe` runs Loupe (as a subgraph, checkpointed in this graph's thread) on
 * the last human message and adds its answer as one AI message named `loupe`; a message without an
 * image gets a reply asking for one.
 */
export function buildChatGraph(loupe: LoupeNodeOptions = {}) {
  return new StateGraph(ChatState)
    .addNode("loupe", createLoupeNode(loupe))
    .addNode("ask_for_image", () => ({ messages: [new AIMessage("Attach an image (or give its URL) and ask me about it.")] }))
    .addConditionalEdges(START, route, ["loupe", "ask_for_image"])
    .addEdge("loupe", END)
    .addEdge("ask_for_image", END);
}

/**
 * A human message with the question and the images as OpenAI-style `image_url` blocks (files as
 * data: URLs): the shape a parent model behind ChatOpenAI takes. (ChatOpenAI 1.6 sends the
 * standard `{type: "image", url | data}` blocks as they are, and they are not OpenAI's format;
 * Loupe's node reads both.)
 */
export async function humanMessageWithImages(question: string, images: string[]): Promise<HumanMessage> {
  const blocks = await Promise.all(
    images.map(async (image) => {
      if (/^(https?|data):/i.test(image)) return { type: "image_url" as const, image_url: { url: image } };
      const mimeType = { ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif" }[extname(image).toLowerCase()] ?? "image/jpeg";
      return { type: "image_url" as const, image_url: { url: `data:${mimeType};base64,${(await readFile(image)).toString("base64")}` } };
    }),
  );
  return new HumanMessage({ content: [{ type: "text", text: question }, ...blocks] });
}

/** Sends one human message through the chat graph; returns the answer and the thread's messages. */
export async function askInChat(options: { loupe?: LoupeNodeOptions; message: HumanMessage; checkpointer?: BaseCheckpointSaver; threadId?: string }) {
  const graph = buildChatGraph(options.loupe).compile({ checkpointer: options.checkpointer ?? new MemorySaver() });
  const out = await graph.invoke({ messages: [options.message] }, { configurable: { thread_id: options.threadId ?? randomUUID() } });
  const messages = out.messages as BaseMessage[];
  return { answer: messages.at(-1)?.text ?? "", messages };
}

async function main(argv: string[]) {
  const [question, ...images] = argv;
  if (!question) {
    process.stderr.write('usage: npx tsx examples/subgraph.ts "question" image ...\n');
    return 2;
  }
  const { answer } = await askInChat({ message: await humanMessageWithImages(question, images) });
  process.stdout.write(`${answer}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main(process.argv.slice(2));
