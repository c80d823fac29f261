// Answer node: the final answer with its citations; when a budget ran out, asks the model once more for its best answer.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import { dialectRequestOptions, finalAnswerRequest, parseReply, textOutsideCalls } from "../src/core/protocol.js";
import { randomUUID } from "node:crypto";
import { answerMessage } from "../src/core/messages.js";
import { addModelUsage, EMPTY_USAGE, type AgentStateUpdate, type AgentStateValue, type Citation, type FinalAnswer, type ToolCallRecord } from "../src/core/state.js";
import { toolboxOfConversation } from "../tools/index.js";
import { emit } from "../src/core/events.js";

/**
 * Citations: pages and images the answer or its final reasoning names; failing that, the pages
 * read with web_visit, else the results of the last search; and the last image made.
 */
export function collectCitations(text: string, toolCalls: ToolCallRecord[]): Citation[] {
  const citations: Citation[] = [];
  const seen = new Set<string>();
  const addUrl = (url: string, title?: string) => {
    if (seen.has(url)) return;
    seen.add(url);
    citations.push(title ? { type: "url", url, title } : { type: "url", url });
  };
  const allUrls = toolCalls.filter((c) => c.ok).flatMap((c) => c.urls);
  for (const u of allUrls) if (text.includes(u.url)) addUrl(u.url, u.title);
  if (seen.size === 0) {
    const visited = toolCalls.filter((c) => c.ok && c.name === "web_visit").flatMap((c) => c.urls);
    const lastSearch = [...toolCalls].reverse().find((c) => c.ok && c.urls.length > 0);
    for (const u of visited.length ? visited : (lastSearch?.urls.slice(0, 3) ?? [])) addUrl(u.url, u.title);
  }
  const imageIds = new Set(toolCalls.flatMap((c) => c.images));
  const named = [...text.matchAll(/\bimg_\d+\b/g)].map((m) => m[0]).filter((id) => imageIds.has(id));
  const lastMade = [...toolCalls].reverse().find((c) => c.ok && c.images.length > 0)?.images ?? [];
  for (const id of new Set(named.length ? named : lastMade)) citations.push({ type: "image", id });
  return citations;
}

/** The answer when a budget ran out and the model, asked for its last answer, wrote none. */
export const NO_ANSWER = "(no answer: the budget ran out and the model gave none)";

/**
 * The final request when a budget ran out: the same tools and stop strings as every other turn, so
 * the request stays a prefix extension, but in the tools dialect `tool_choice: "none"` so the
 * model must write. What it writes is the answer: its <answer>, else the text it wrote outside
 * thinking and tool calls. Thinking alone (often cut off) is not an answer: then `text` is null.
 */
async function askForFinalAnswer(deps: AgentDeps, state: AgentStateValue, config: LangGraphRunnableConfig) {
  const settings = runSettings(deps, config.context);
  const request = finalAnswerRequest(settings.dialect, state.exhausted ?? "You have reached the step limit.");
  const model = deps.model(settings);
  const turn = (state.usage ?? EMPTY_USAGE).turns;
  const raw = await model.complete([...(state.conversation ?? []), request], {
    ...dialectRequestOptions(settings.dialect, toolboxOfConversation(deps.search, settings.coords, state.conversation ?? []).specs),
    toolChoice: "none",
    signal: config.signal,
    onRetry: (info) => emit(config, { event: "model_retry", url: model.url, ...info }),
  });
  const parsed = parseReply(settings.dialect, raw, turn);
  const answered = parsed.reply.kind === "answer" && parsed.reply.answer;
  const text = answered ? parsed.reply.answer! : textOutsideCalls(raw.content ?? "") || null;
  return { turns: [request, parsed.turn], usage: addModelUsage(state.usage ?? EMPTY_USAGE, raw), text, think: parsed.reply.think, id: raw.id };
}

export function createAnswerNode(deps: AgentDeps) {
  return async function answer(state: AgentStateValue, config: LangGraphRunnableConfig): Promise<AgentStateUpdate> {
    const modelName = () => deps.model(runSettings(deps, config.context)).modelName().catch(() => undefined);
    if (state.reply?.kind === "answer" && state.reply.answer) {
      const text = state.reply.answer;
      emit(config, { event: "answer", answer: text });
      const final: FinalAnswer = { answer: text, citations: collectCitations(`${text}\n${state.reply.think}`, state.toolCalls ?? []), reason: "answered" };
      return { final, messages: [answerMessage(state.reply.id ?? randomUUID(), final, await modelName())] };
    }
    const last = await askForFinalAnswer(deps, state, config);
    const answer = last.text ?? NO_ANSWER;
    emit(config, { event: "answer", answer });
    const citations = collectCitations(`${last.text ?? ""}\n${last.think}`, state.toolCalls ?? []);
    const final: FinalAnswer = { answer, citations, reason: last.text === null ? "no_answer" : "budget" };
    return { conversation: last.turns, usage: last.usage, final, messages: [answerMessage(last.id ?? randomUUID(), final, await modelName())] };
  };
}
