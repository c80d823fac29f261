// Search node: runs one text_search / web_visit / image_search call through the configured providers.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import type { LoupeConfig } from "../src/core/config.js";
import type { ImageStore } from "../src/core/images.js";
import type { ToolResult } from "../src/core/state.js";
import type { RelatedImage, SearchHit, SearchProvider } from "../tools/search/provider.js";
import { emit } from "../src/core/events.js";
import type { ToolTask } from "./image-tool.js";

function trimTo(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… [truncated]`;
}

/** Search results numbered across one tool result, each URL once, with the URL kept for citing. */
class NumberedHits {
  readonly urls: ToolResult["urls"] = [];
  count = 0;
  private readonly seen = new Set<string>();

  /** The lines for these hits (new URLs only) and up to three of their images. */
  lines(hits: SearchHit[], images: RelatedImage[], imageLabel: string): string[] {
    const lines: string[] = [];
    for (const hit of hits) {
      if (this.seen.has(hit.url)) continue;
      this.seen.add(hit.url);
      this.count++;
      this.urls.push({ url: hit.url, title: hit.title });
      const snippet = hit.snippet.replace(/\s+/g, " ").trim();
      lines.push(`[${this.count}] ${hit.title}\n${hit.url}${snippet ? `\n${snippet}` : ""}`);
    }
    for (const img of images.slice(0, 3)) lines.push(`${imageLabel}: ${img.url}${img.description ? ` — ${img.description}` : ""}`);
    return lines;
  }
}

function allWith<K extends keyof SearchProvider>(providers: SearchProvider[], op: K): SearchProvider[] {
  return providers.filter((p) => typeof p[op] === "function");
}

type Outcome = Pick<ToolResult, "text" | "urls" | "resultCount"> & { images?: ToolResult["images"] };

/** Every provider that can search answers every query; results are merged in provider order. */
async function textSearch(providers: SearchProvider[], queries: string[], maxResults: number, budget: number, signal?: AbortSignal): Promise<Outcome> {
  const searchOne = async (q: string) => {
    const answers = await Promise.allSettled(providers.map((p) => p.textSearch!(q, { maxResults, signal })));
    const ok = answers.filter((a) => a.status === "fulfilled").map((a) => a.value);
    if (ok.length === 0) throw (answers[0] as PromiseRejectedResult).reason;
    return { hits: ok.flatMap((a) => a.hits), images: ok.flatMap((a) => a.images) };
  };
  // One failing query (a cache miss in replay mode, a timeout) must not discard the others.
  const settled = await Promise.allSettled(queries.map(searchOne));
  if (settled.every((s) => s.status === "rejected")) throw (settled[0] as PromiseRejectedResult).reason;
  const numbered = new NumberedHits();
  const sections: string[] = [];
  settled.forEach((outcome, qi) => {
    if (outcome.status === "rejected") {
      sections.push(`Results for "${queries[qi]}": failed: ${(outcome.reason as Error).message}`);
      return;
    }
    const lines = numbered.lines(outcome.value.hits, outcome.value.images, "Related image");
    sections.push(`Results for "${queries[qi]}":\n${lines.length ? lines.join("\n\n") : "(no results)"}`);
  });
  return { text: trimTo(sections.join("\n\n"), budget), urls: numbered.urls, resultCount: numbered.count };
}

/** Each URL goes to the provider that holds it (the local corpus), else to the direct web reader, else the first other reader. */
async function webVisit(providers: SearchProvider[], store: ImageStore, urlsIn: string[], goal: string | undefined, budget: number, signal?: AbortSignal): Promise<Outcome> {
  const holder = (url: string) =>
    providers.find((p) => (p as { holds?: (u: string) => boolean }).holds?.(url)) ??
    providers.find((p) => p.name === "web") ??
    providers.find((p) => !(p as { holds?: unknown }).holds) ??
    providers[0]!;
  const groups = new Map<SearchProvider, string[]>();
  for (const url of urlsIn) groups.set(holder(url), [...(groups.get(holder(url)) ?? []), url]);
  const answers = await Promise.all([...groups].map(([p, urls]) => p.webVisit!(urls, { goal, signal })));
  const pages = answers.flatMap((a) => a.pages);
  const failed = answers.flatMap((a) => a.failed);
  const texts = pages.filter((p) => !p.image);
  const per = Math.max(200, Math.floor(budget / Math.max(1, texts.length)));
  const parts: string[] = [];
  const images: Outcome["images"] = [];
  for (const p of pages) {
    if (!p.image) {
      parts.push(`Page: ${p.url}${p.title ? `\nTitle: ${p.title}` : ""}\n${trimTo(p.text.trim(), per)}`);
      continue;
    }
    // An image URL: into the store, shown to the model as a new image it can crop like any other.
    try {
      const stored = await store.ingest(Buffer.from(p.image.base64, "base64"));
      images.push({ ...stored, parent: null, op: `fetched from ${p.url}` });
      parts.push(`Image: ${p.url} (${stored.width}×${stored.height}, shown below as a new image)`);
    } catch (err) {
      failed.push({ url: p.url, error: `not a usable image (${(err as Error).message})` });
    }
  }
  for (const f of failed) parts.push(`Could not read ${f.url}: ${f.error}`);
  return {
    text: `${goal ? `Goal: ${goal}\n` : ""}${parts.join("\n\n") || "(nothing could be read)"}`,
    urls: pages.map((p) => ({ url: p.url, title: p.title })),
    resultCount: pages.length,
    images,
  };
}

/**
 * Reverse image search of each image, through the first provider that answers (a provider that
 * fails for its own reasons — quota, outage, no public URL — hands over to the next).
 */
type ImageSearchAnswer = Awaited<ReturnType<NonNullable<SearchProvider["imageSearch"]>>>;
type SearchImage = { bytes: Buffer; mime: string; sha256: string; id: string };

/** One image through the providers in turn: the first answer, or every provider's error. */
async function searchOneImage(providers: SearchProvider[], image: SearchImage, maxResults: number, signal?: AbortSignal): Promise<{ answer?: ImageSearchAnswer; errors: string[] }> {
  const errors: string[] = [];
  for (const provider of providers) {
    try {
      return { answer: await provider.imageSearch!(image, { maxResults, signal }), errors };
    } catch (err) {
      if (signal?.aborted) throw err;
      errors.push((err as Error).message);
    }
  }
  return { errors };
}

async function imageSearch(providers: SearchProvider[], images: SearchImage[], maxResults: number, budget: number, signal?: AbortSignal): Promise<Outcome> {
  // The images are searched at once (each provider's queue keeps its limits); results keep the call's order.
  const outcomes = await Promise.all(images.map((image) => searchOneImage(providers, image, maxResults, signal)));
  if (images.length === 1 && !outcomes[0]!.answer) throw new Error(outcomes[0]!.errors.join("; "));
  const numbered = new NumberedHits();
  const sections: string[] = [];
  const shots: NonNullable<Outcome["images"]> = [];
  outcomes.forEach(({ answer, errors }, i) => {
    const id = images[i]!.id;
    if (!answer) {
      sections.push(`Matches for ${id}: failed: ${errors.join("; ")}`);
      return;
    }
    const lines = numbered.lines(answer.hits, answer.images ?? [], "Matching image");
    if (answer.screenshot) {
      // A benchmark's recorded result page (MMSearch): shown to the model as an image to read.
      shots.push({ ...answer.screenshot, parent: null, op: `reverse image search results for ${id}` });
      lines.push(`The results page for ${id} is shown below as an image.`);
      numbered.count++;
    }
    sections.push(`Matches for ${id}:\n${lines.length ? lines.join("\n\n") : "(no results)"}`);
  });
  return { text: trimTo(sections.join("\n\n"), budget), urls: numbered.urls, resultCount: numbered.count, images: shots };
}

/** Runs one search call through the providers that can do it; throws what the model should be told. */
async function runSearchCall(deps: AgentDeps, task: ToolTask, settings: LoupeConfig, signal?: AbortSignal): Promise<Outcome> {
  const { call } = task;
  const args = call.args ?? {};
  if (call.name === "text_search") {
    const providers = allWith(deps.search, "textSearch");
    if (!providers.length) throw new Error("text_search is not configured: set TAVILY_API_KEY or build a local index with loupe index DIR");
    return textSearch(providers, args.queries as string[], settings.searchMaxResults, settings.observationChars, signal);
  }
  if (call.name === "web_visit") {
    const providers = allWith(deps.search, "webVisit");
    if (!providers.length) throw new Error("web_visit is not configured: set TAVILY_API_KEY or build a local index with loupe index DIR");
    return webVisit(providers, deps.images, args.urls as string[], args.goal as string | undefined, settings.observationChars, signal);
  }
  const providers = allWith(deps.search, "imageSearch");
  if (!providers.length) throw new Error("image_search is not configured: set SERPER_API_KEY or SERPAPI_API_KEY (with LOUPE_PUBLIC_IMAGE_BASE_URL)");
  const ids = [...new Set(args.image_paths as string[])];
  const images = await Promise.all(
    ids.map(async (id) => {
      const ref = task.images.find((i) => i.id === id)!;
      return { id, bytes: await deps.images.read(ref), mime: ref.mime, sha256: ref.sha256 };
    }),
  );
  return imageSearch(providers, images, settings.searchMaxResults, settings.observationChars, signal);
}

export function createSearchNode(deps: AgentDeps) {
  return async function search(task: ToolTask, config: LangGraphRunnableConfig) {
    const settings = runSettings(deps, config.context);
    const { call } = task;
    const started = performance.now();
    emit(config, { event: "tool_start", callId: call.callId, name: call.name, arguments: call.args });
    let result: ToolResult;
    try {
      const outcome = await runSearchCall(deps, task, settings, config.signal);
      result = { callId: call.callId, ok: true, ...outcome, images: outcome.images ?? [], ms: performance.now() - started };
    } catch (err) {
      result = { callId: call.callId, ok: false, text: `Error: ${call.name} failed: ${(err as Error).message}`, images: [], urls: [], ms: performance.now() - started };
    }
    emit(config, { event: "tool_end", callId: call.callId, name: call.name, arguments: call.args, ok: result.ok, ms: Math.round(result.ms), summary: result.ok ? `${result.resultCount ?? 0} results` : result.text });
    return { results: [result] };
  };
}
