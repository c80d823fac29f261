// Answer node: the final answer with its citations; when a budget ran out, asks the model once more for its best answer.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import { dialectRequestOptions, finalAnswerRequest, parseReply } from "../src/core/protocol.js";
import type { AgentStateValue, Citation, ToolCallRecord, Turn } from "../src/core/state.js";
import { EMPTY_USAGE } from "../src/core/state.js";
import { createToolbox } from "../tools/index.js";
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

export function createAnswerNode(deps: AgentDeps) {
  return async function answer(state: AgentStateValue, config: LangGraphRunnableConfig) {
    const settings = runSettings(deps, config.context);
    const conversation: Turn[] = [];
    const usage = { ...(state.usage ?? EMPTY_USAGE) };
    let text: string;
    let think = state.reply?.think ?? "";
    let reason: "answered" | "budget" = "answered";
    if (state.reply?.kind === "answer" && state.reply.answer) {
      text = state.reply.answer;
    } else {
      reason = "budget";
      const request = finalAnswerRequest(settings.dialect, state.exhausted ?? "You have reached the step limit.");
      const model = deps.model(settings);
      // Same tools and stop strings as every other turn, so the request stays a prefix extension.
      const raw = await model.complete([...state.conversation, request], {
        ...dialectRequestOptions(settings.dialect, createToolbox(deps.search, settings.coords).specs),
        signal: config.signal,
        onRetry: (info) => emit(config, { event: "model_retry", url: model.url, ...info }),
      });
      const parsed = parseReply(settings.dialect, raw, usage.turns);
      conversation.push(request, parsed.turn);
      usage.turns += 1;
      usage.promptTokens += raw.usage.promptTokens;
      usage.completionTokens += raw.usage.completionTokens;
      usage.modelMs += raw.ms;
      think = parsed.reply.think;
      text =
        parsed.reply.kind === "answer" && parsed.reply.answer
          ? parsed.reply.answer
          : think || "(the model gave no answer)";
    }
    const final = { answer: text, citations: collectCitations(`${text}\n${think}`, state.toolCalls ?? []), reason };
    emit(config, { event: "answer", answer: text });
    return { conversation, usage, final };
  };
}
