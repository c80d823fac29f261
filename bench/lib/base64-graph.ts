// The anchor for checkpoint growth: a minimal LangGraph agent of the common kind, which keeps every
// image as a base64 data URL inside its messages. Same graph shape as Loupe (agent → tool →
// observe, three super-steps per tool call), same crops (made by Loupe's own image tool, so the
// image bytes are identical), compiled with the same SqliteSaver; only where the bytes live differs.
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from "@langchain/core/messages";
import { Annotation, END, MessagesAnnotation, START, StateGraph, type BaseCheckpointSaver } from "@langchain/langgraph";
import { readFile } from "node:fs/promises";
import type { ImageRef, ImageStore } from "../../src/core/images.js";
import { runImageOp } from "../../tools/image-ops.js";
import { cropBox, SCENARIO_ANSWER } from "./scenarios.js";

const State = Annotation.Root({
  ...MessagesAnnotation.spec,
  /** The image the tool just made, as a data URL, until observe shows it. */
  pendingImage: Annotation<string | null>,
  images: Annotation<ImageRef[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
});
type S = typeof State.State;

function dataUrl(bytes: Buffer, mime: string): string {
  return `data:${mime};base64,${bytes.toString("base64")}`;
}

export interface Base64Agent {
  run(threadId: string): Promise<void>;
}

/** A graph that crops img_0 `steps` times (the same boxes as the Loupe scenario), then answers. */
export async function createBase64Agent(options: {
  store: ImageStore;
  imagePath: string;
  steps: number;
  /** Side of each crop box in rel1000 units, as in the Loupe scenario. */
  boxSize: number;
  maxPixels: number;
  checkpointer: BaseCheckpointSaver;
  question: string;
}): Promise<Base64Agent> {
  const { store, steps, checkpointer } = options;
  const stored = await store.ingest(await readFile(options.imagePath));
  const input: ImageRef = { id: "img_0", ...stored, parent: null, op: null };
  const view = await store.modelView(stored, options.maxPixels, { prefetch: true });

  const graph = new StateGraph(State)
    .addNode("agent", async (s: S) => {
      const k = s.messages.filter((m: BaseMessage) => m.getType() === "ai").length;
      if (k >= steps) return { messages: [new AIMessage(`<think>The sign reads ${SCENARIO_ANSWER}.</think>\n<answer>${SCENARIO_ANSWER}</answer>`)] };
      return {
        messages: [
          new AIMessage({
            content: `<think>Step ${k + 1}: the detail I need is still too small, so I look closer at the next region.</think>`,
            tool_calls: [{ id: `call_${k}`, name: "crop", args: { image: "img_0", bbox: cropBox(k, options.boxSize) }, type: "tool_call" }],
          }),
        ],
      };
    })
    .addNode("tool", async (s: S) => {
      const last = s.messages.at(-1) as AIMessage;
      const call = last.tool_calls![0]!;
      const out = await runImageOp(store, "crop", call.args, input, { imageId: "img_0" });
      const ref: ImageRef = { id: `img_${s.images.length + 1}`, ...out.image, parent: "img_0", op: out.op };
      const shown = await store.modelView(out.image, options.maxPixels);
      return {
        messages: [new ToolMessage({ content: `crop of img_0 done: ${out.op}`, tool_call_id: call.id! })],
        pendingImage: dataUrl(await store.read(shown), shown.mime),
        images: [ref],
      };
    })
    .addNode("observe", async (s: S) => {
      const ref = s.images.at(-1)!;
      return {
        messages: [
          new HumanMessage({
            content: [
              { type: "text", text: `${ref.id} (${ref.width}×${ref.height}; ${ref.op}):` },
              { type: "image_url", image_url: { url: s.pendingImage! } },
            ],
          }),
        ],
        pendingImage: null,
      };
    })
    .addEdge(START, "agent")
    .addConditionalEdges("agent", (s: S) => ((s.messages.at(-1) as AIMessage).tool_calls?.length ? "tool" : END), ["tool", END])
    .addEdge("tool", "observe")
    .addEdge("observe", "agent")
    .compile({ checkpointer });

  const first = new HumanMessage({
    content: [
      { type: "text", text: `img_0 (${input.width}×${input.height}):` },
      { type: "image_url", image_url: { url: dataUrl(await store.read(view), view.mime) } },
      { type: "text", text: options.question },
    ],
  });
  return {
    async run(threadId) {
      await graph.invoke({ messages: [first], images: [input] }, { configurable: { thread_id: threadId }, recursionLimit: 3 * steps + 10, durability: "sync" });
    },
  };
}
