// A step of the planner: what is being asked (the last human message, or `question` with `imageSources`), and a follow-up question on a thread that has answered one: its new images stored, its turn added, its budgets fresh.
import { HumanMessage, type BaseMessage } from "@langchain/core/messages";
import { randomUUID } from "node:crypto";
import type { AgentDeps } from "../src/core/agent-deps.js";
import type { LoupeConfig } from "../src/core/config.js";
import { humanAsk, lastHuman, replaceMessage, storedHumanMessage } from "../src/core/messages.js";
import { sourceForState } from "../src/core/image-sources.js";
import { sha256Hex } from "../src/core/images.js";
import { questionTurn } from "../src/core/protocol.js";
import type { AgentStateUpdate, AgentStateValue, Asked, ImageRef, Usage } from "../src/core/state.js";
import { questionPaths } from "../tools/code/tool.js";
import { ingestInputs } from "./first-turn.js";

/** A question to answer: its text, the sources of its new images, the images it names that are stored already, and the human message it came in. */
export interface Ask {
  question: string;
  sources: string[];
  known: string[];
  message?: BaseMessage;
}

/**
 * The question not yet asked, or null: the last human message when it is new (by id), else
 * `question` when it differs from what was asked (or new images came with it).
 */
export function newAsk(state: AgentStateValue): Ask | null {
  const human = lastHuman(state.messages ?? []);
  const asked = state.asked;
  if (human && (!asked || !human.id || human.id !== asked.messageId)) {
    const { text, images } = humanAsk(human);
    if (text || images.length) {
      const sources = images.flatMap((i) => ("source" in i ? [i.source] : []));
      const known = images.flatMap((i) => ("storedId" in i ? [i.storedId] : []));
      return { question: text || "Describe the image.", sources, known, message: human };
    }
  }
  const question = state.question?.trim();
  // A thread started before questions were recorded has asked its question already.
  if (!question || (!asked && (state.conversation ?? []).length > 0)) return null;
  const sources = state.imageSources ?? [];
  const askedSources = new Set(asked?.sources ?? []);
  const fresh = [...new Map(sources.filter((s) => !askedSources.has(sourceKey(s))).map((s) => [sourceKey(s), s])).values()];
  if (asked && asked.questionSha256 === sha256Hex(question) && fresh.length === 0) return null;
  return { question, sources: asked ? fresh : sources, known: [] };
}

/** How a source is remembered as asked: a data: URL by its hash (state keeps no image bytes), anything else as it is. */
export function sourceKey(source: string): string {
  return source.startsWith("data:") ? `data:sha256:${sha256Hex(source)}` : source;
}

/**
 * The human message as state keeps it once its images are stored: no base64, the same id. A
 * question given as `question` gets a human message too, so chat front ends show what was asked.
 * Also returns what state keeps of the ask (`asked`): the question, the message's id, the sources
 * (as given, by sourceKey, and as the imageSources channel now holds them, `written`), so that
 * only a source not seen before makes `question` a new ask.
 */
export function askedUpdate(state: AgentStateValue, ask: Ask, refs: ImageRef[], sources: string[], deps: AgentDeps, written: string[] = []): { messages: BaseMessage[]; asked: Asked } {
  const original = ask.message ?? new HumanMessage({ id: randomUUID(), content: ask.question });
  const stored = storedHumanMessage(original, refs, deps.imageUrl);
  const messages = ask.message ? replaceMessage(state.messages ?? [], ask.message, stored) : [stored];
  return { messages, asked: { questionSha256: sha256Hex(ask.question), messageId: stored.id ?? null, sources: [...new Set([...(state.asked?.sources ?? []), ...sources.map(sourceKey), ...written])] } };
}

/** Budgets are per question: a follow-up starts with fresh turn and tool-call counts (tokens and time keep adding up). */
function freshBudgets(usage: Usage): Usage {
  return { ...usage, turns: 0, toolCalls: 0, consecutiveErrors: 0 };
}

/**
 * A follow-up question on a thread that answered one: its new images stored (numbered after the
 * thread's), the question turn added to the conversation, the answer and budgets cleared.
 */
export async function followUp(deps: AgentDeps, state: AgentStateValue, ask: Ask, settings: LoupeConfig, usage: Usage, signal?: AbortSignal) {
  const images = state.images ?? [];
  const inputs = await ingestInputs(deps, ask.sources, settings.maxPixels, signal, settings.maxImagesInContext, images.length);
  const refs = inputs.map((i) => i.ref);
  const known = ask.known.map((id) => images.find((i) => i.id === id)).filter((i): i is ImageRef => Boolean(i));
  const system = (state.conversation ?? []).find((t) => t.role === "system");
  const turn = questionTurn(ask.question, inputs, questionPaths(system?.role === "system" ? system.tools : [], refs));
  const stored = ask.sources.map((source, i) => sourceForState(source, refs[i]!));
  // A data: URL is kept as what it became (given again, as a description), as the first question's were.
  const written = ask.message ? undefined : (state.imageSources ?? []).map((s) => (ask.sources.includes(s) ? stored[ask.sources.indexOf(s)]! : s.startsWith("data:") ? `(data: URL, ${s.length} characters: asked before)` : s));
  const update: AgentStateUpdate = {
    images: refs,
    ...askedUpdate(state, ask, [...known, ...refs], ask.sources, deps, written),
    // The question channel says what is being answered (a `question` given is there already).
    ...(ask.message ? { question: ask.question } : {}),
    ...(written ? { imageSources: written } : {}),
    final: null,
    exhausted: null,
  };
  return { update, turn, images: [...images, ...refs], usage: { ...freshBudgets(usage), imagesInContext: usage.imagesInContext + refs.length } };
}
