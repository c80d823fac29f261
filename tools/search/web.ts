// Direct web_visit provider: reads pages through the guarded fetch, and has the model condense long ones toward the call's goal.
import { BlockedAddressError, FetchError, guardedFetch, type GuardedFetchOptions } from "../../src/core/http.js";
import type { ModelClient } from "../../src/core/model.js";
import type { Turn } from "../../src/core/state.js";
import type { PageContent, PageFailure, SearchProvider } from "./provider.js";
import { readableText } from "./readable.js";

export interface DirectWebOptions {
  /** Options for every fetch (allowHosts, allowPrivate, limits, a resolver); the call's signal is added. */
  fetch?: Omit<GuardedFetchOptions, "signal">;
  /** Condense pages longer than maxChars toward the call's goal with this model. */
  summarize?: {
    model: ModelClient;
    /** Pages up to this many characters are returned as they are (default 12000). */
    maxChars?: number;
    /** Characters of the page the model is shown at most (default 48000). */
    inputChars?: number;
    /** Time for one summary, retries included, after which the page is returned unsummarised (default 90 s). */
    timeoutMs?: number;
  };
}

const DEFAULT_MAX_CHARS = 12_000;
const DEFAULT_INPUT_CHARS = 48_000;
const DEFAULT_SUMMARY_TIMEOUT_MS = 90_000;

const SUMMARY_PROMPT = [
  "You read one web page for a research agent and report what it says about the agent's goal.",
  "Reply in exactly this form and nothing else:",
  "Summary: <two to four sentences on what the page says about the goal, or that it does not address it>",
  "Evidence:",
  "> <a sentence copied word for word from the page>",
  "Give one to five evidence lines, each starting with >, copied exactly (no paraphrase, no ellipsis inside); none if nothing on the page is relevant.",
  "Use only the page, not what you know.",
].join("\n");

const STOPWORDS = new Set("the and for with that this from what which who whom whose when where why how are was were was been has have had its into about does did not any all can".split(" "));

function goalTerms(goal: string): string[] {
  return [...new Set(goal.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) ?? [])].filter((t) => !STOPWORDS.has(t));
}

/**
 * At most `budget` characters of the page for the model: the opening (what the page is about), then
 * the paragraphs that mention the goal's words most, kept in page order with the gaps marked.
 */
export function excerptForGoal(text: string, goal: string, budget: number): string {
  if (text.length <= budget) return text;
  const paragraphs = text.split(/\n{2,}/).map((p) => p.slice(0, budget / 4));
  const terms = goalTerms(goal);
  const keep = new Set<number>();
  let used = 0;
  for (let i = 0; i < paragraphs.length && used < budget / 6; i++) {
    keep.add(i);
    used += paragraphs[i]!.length + 2;
  }
  const ranked = paragraphs
    .map((p, i) => {
      const lower = p.toLowerCase();
      return { i, score: terms.reduce((s, t) => s + (lower.includes(t) ? 1 : 0), 0) };
    })
    .filter((r) => r.score > 0 && !keep.has(r.i))
    .sort((a, b) => b.score - a.score || a.i - b.i);
  for (const { i } of ranked) {
    if (used + paragraphs[i]!.length + 2 > budget) continue;
    keep.add(i);
    used += paragraphs[i]!.length + 2;
  }
  const parts: string[] = [];
  let last = -1;
  for (const i of [...keep].sort((a, b) => a - b)) {
    if (i !== last + 1) parts.push("[…]");
    parts.push(paragraphs[i]!);
    last = i;
  }
  if (last < paragraphs.length - 1) parts.push("[…]");
  return parts.join("\n\n");
}

function comparable(text: string): string {
  return text
    .toLowerCase()
    .replace(/[“”„‟"«»]/g, '"')
    .replace(/[‘’‚‛]/g, "'")
    .replace(/[–—]/g, "-")
    .replace(/\s+/g, " ")
    .trim();
}

/** The model's reply as "Summary toward goal: …" and quoted evidence, each quote checked against the page. */
export function formatSummary(reply: string, pageText: string): string | undefined {
  const body = reply.replace(/<think>[\s\S]*?<\/think>/gi, "").replace(/^[\s\S]*<\/think>/i, "").trim();
  if (!body) return undefined;
  const evidenceAt = body.search(/^\s*\**evidence\**\s*:/im);
  const summaryPart = (evidenceAt >= 0 ? body.slice(0, evidenceAt) : body).replace(/^\s*\**summary\**\s*:\s*/i, "").trim();
  const quotes = (evidenceAt >= 0 ? body.slice(evidenceAt).split("\n").slice(1) : [])
    .map((line) => line.replace(/^\s*(?:>|[-*•]|\d+[.)])\s*/, "").trim().replace(/^["“](.*)["”]$/s, "$1").trim())
    .filter((q) => q.length > 0 && !/^none\b/i.test(q));
  const page = comparable(pageText);
  const lines = [`Summary toward goal: ${summaryPart || "(the model gave no summary)"}`];
  if (quotes.length === 0) {
    lines.push("Evidence: none found on the page.");
  } else {
    lines.push("Evidence:");
    for (const q of quotes.slice(0, 8)) lines.push(`> "${q}"${page.includes(comparable(q)) ? "" : " (not found word for word on the page)"}`);
  }
  return lines.join("\n");
}

/** One line saying why a page could not be read, for the model. */
function failureReason(err: unknown, requested: string): string {
  if (err instanceof FetchError) {
    const redirected = err.url !== requested && err.url !== new URL(requested).href ? ` (after a redirect to ${err.url})` : "";
    return err instanceof BlockedAddressError ? `refused${redirected}: ${err.detail}` : `${err.detail}${redirected}`;
  }
  return ((err as Error)?.message ?? String(err)).split("\n")[0]!;
}

type PageSummarizer = NonNullable<DirectWebOptions["summarize"]>;

/** The page condensed toward the goal by the model; undefined when the model failed or ran out of time (then the page is returned as it is). */
async function summarizeForGoal(summarizer: PageSummarizer, page: PageContent, goal: string, signal?: AbortSignal): Promise<string | undefined> {
  const excerpt = excerptForGoal(page.text, goal, summarizer.inputChars ?? DEFAULT_INPUT_CHARS);
  const cut = excerpt.length < page.text.length ? ` (the parts most related to the goal; the page has ${page.text.length} characters)` : "";
  const turns: Turn[] = [
    { role: "system_text", text: SUMMARY_PROMPT },
    {
      role: "user",
      parts: [{ type: "text", text: `Goal: ${goal}\nURL: ${page.url}${page.title ? `\nTitle: ${page.title}` : ""}\n\nPage text${cut}:\n"""\n${excerpt}\n"""` }],
    },
  ];
  const timeout = AbortSignal.timeout(summarizer.timeoutMs ?? DEFAULT_SUMMARY_TIMEOUT_MS);
  try {
    const reply = await summarizer.model.complete(turns, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    return formatSummary(reply.content, page.text);
  } catch (err) {
    if (signal?.aborted) throw err;
    return undefined;
  }
}

/** Reads one page: an image as itself, anything else as readable text (condensed toward the goal when it is long). */
async function visitPage(url: string, goal: string | undefined, options: DirectWebOptions, signal?: AbortSignal): Promise<{ page: PageContent } | { failure: PageFailure }> {
  const summarizer = options.summarize;
  const maxChars = summarizer?.maxChars ?? DEFAULT_MAX_CHARS;
  try {
    const res = await guardedFetch(url, { ...options.fetch, signal });
    const mime = res.contentType.split(";")[0]!.trim().toLowerCase();
    if (/^image\/(jpeg|png|webp|gif)$/.test(mime)) {
      return { page: { url: res.url, text: "", image: { base64: res.body.toString("base64"), mime } } };
    }
    const readable = await readableText(res.body, res.contentType, res.url);
    if (!readable.text) return { failure: { url, error: "the page has no readable text" } };
    const page: PageContent = { url: res.url, title: readable.title, text: readable.text };
    if (summarizer && goal?.trim() && page.text.length > maxChars) {
      const summary = await summarizeForGoal(summarizer, page, goal.trim(), signal);
      if (summary) return { page: { ...page, text: summary } };
    }
    return { page };
  } catch (err) {
    if (signal?.aborted) throw err;
    return { failure: { url, error: failureReason(err, url) } };
  }
}

/** A web_visit provider that reads pages itself, with no search API: text_search and image_search come from others. */
export function createDirectWebProvider(options: DirectWebOptions = {}): SearchProvider {
  return {
    name: "web",
    async webVisit(urls, { goal, signal }) {
      const unique = [...new Set(urls)];
      const outcomes = await Promise.all(unique.map((url) => visitPage(url, goal, options, signal)));
      const pages: PageContent[] = [];
      const failed: PageFailure[] = [];
      for (const outcome of outcomes) {
        if ("page" in outcome) pages.push(outcome.page);
        else failed.push(outcome.failure);
      }
      return { pages, failed };
    },
  };
}
