// The anchor for orchestration cost: a hand-written agent loop with no graph and no checkpointer.
// It sends the same HTTP requests as Loupe (same client, same turns, same tool results and notes)
// and runs the same image tools; the benchmarks check that the request bytes are identical.
import { readFile } from "node:fs/promises";
import type { LoupeConfig } from "../../src/core/config.js";
import type { ImageRef, ImageStore } from "../../src/core/images.js";
import type { ModelClient } from "../../src/core/model.js";
import {
  finalAnswerRequest,
  observationTurns,
  parseReply,
  questionTurn,
  type CallObservation,
  type ImageRefWithModelView,
} from "../../src/core/protocol.js";
import type { Turn } from "../../src/core/state.js";
import { createToolbox } from "../../tools/index.js";
import { runImageOp, type ImageToolName } from "../../tools/image-ops.js";

export interface BareLoopOptions {
  settings: LoupeConfig;
  images: ImageStore;
  model: ModelClient;
  question: string;
  imagePaths: string[];
}

export interface BareLoopResult {
  answer: string;
  toolCalls: number;
  turns: number;
}

const TAG_STOP = ["</tool_call>"];

/** Runs one question: image tools only (the benchmarks configure no search provider). */
export async function bareLoop({ settings, images: store, model, question, imagePaths }: BareLoopOptions): Promise<BareLoopResult> {
  const { dialect, coords, maxPixels, maxToolCalls, maxImagesInContext } = settings;
  const toolbox = createToolbox([], coords);
  const callOptions = { tools: dialect === "tools" ? toolbox.specs : undefined, stop: dialect === "tags" ? TAG_STOP : undefined };

  const images: ImageRef[] = [];
  const inputs: ImageRefWithModelView[] = [];
  for (const [i, path] of imagePaths.entries()) {
    const stored = await store.ingest(await readFile(path));
    const ref: ImageRef = { id: `img_${i}`, ...stored, parent: null, op: null };
    images.push(ref);
    inputs.push({ ref, view: await store.modelView(stored, maxPixels, { prefetch: true }) });
  }
  const conversation: Turn[] = [
    { role: "system", dialect, tools: toolbox.names, coords },
    questionTurn(question, inputs),
  ];
  let inContext = inputs.length;
  let toolCalls = 0;
  let turns = 0;

  for (;;) {
    const raw = await model.complete(conversation, callOptions);
    const parsed = parseReply(dialect, raw, turns);
    conversation.push(parsed.turn);
    turns++;
    if (parsed.reply.kind === "answer") return { answer: parsed.reply.answer ?? "", toolCalls, turns };
    if (parsed.reply.kind === "malformed") throw new Error(`bare loop: malformed reply: ${parsed.reply.problem}`);

    const observations: CallObservation[] = [];
    const notes: string[] = [];
    for (const [index, call] of parsed.calls.entries()) {
      const args = JSON.parse(call.arguments) as Record<string, unknown>;
      const imageId = String(args.image);
      const source = images.find((i) => i.id === imageId);
      if (!source) throw new Error(`bare loop: no image ${imageId}`);
      const out = await runImageOp(store, call.name as ImageToolName, args, source, { imageId, defaultCoords: coords });
      const ref: ImageRef = { id: `img_${images.length}`, ...out.image, parent: imageId, op: out.op };
      images.push(ref);
      const shown: ImageRefWithModelView[] = [];
      if (inContext < maxImagesInContext) {
        shown.push({ ref, view: await store.modelView(out.image, maxPixels) });
        inContext++;
      } else {
        notes.push(`${ref.id} was made but is not shown: the conversation already holds ${maxImagesInContext} images. Answer from what you have seen, or search.`);
      }
      observations.push({
        call: { index, callId: call.id, name: call.name, args, kind: "image" },
        text: `${call.name} of ${imageId} done: ${out.op}`,
        images: shown,
      });
      toolCalls++;
    }
    const left = maxToolCalls - toolCalls;
    if (left > 0 && left <= 2) notes.push(`${left} tool call${left === 1 ? "" : "s"} left before you must answer.`);
    conversation.push(...observationTurns(dialect, observations, notes));

    if (toolCalls >= maxToolCalls) {
      conversation.push(finalAnswerRequest(dialect, `You have used all ${maxToolCalls} tool calls.`));
      // As the agent does: the tools stay listed, tool calls are forbidden for this request.
      const last = await model.complete(conversation, { ...callOptions, toolChoice: "none" });
      const reply = parseReply(dialect, last, turns).reply;
      return { answer: reply.answer ?? reply.think, toolCalls, turns: turns + 1 };
    }
  }
}
