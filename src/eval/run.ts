// `loupe eval`: runs every benchmark item as its own checkpointed thread, N at a time, scores it, and writes results, summary and report.
import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readFile } from "node:fs/promises";
import { importMmsearchResults } from "../../tools/search/mmsearch-import.js";
import cliProgress from "cli-progress";
import type { LoupeAgent } from "../../graphs/agent.js";
import { commaList, redactDatabaseUrl, type LoupeConfig, type LoupeSecrets } from "../core/config.js";
import type { RuntimeDeps } from "../runtime/deps.js";
import { urlImageReader } from "../core/image-sources.js";
import { ask, summarize, RunError, type AskResult } from "../run/ask.js";
import { withAgent } from "../run/session.js";
import { isBudgetRefusal, type AgentStateValue, type ToolCallRecord } from "../core/state.js";
import type { DatasetFormat, EvalItem, ImageInput } from "./items.js";
import { Judge, JudgeCache, judgeCachePath } from "./judge.js";
import { loadDataset, safeId, sniffExt, type LoadedDataset } from "./loaders.js";
import { writeReport } from "./report.js";
import { extractChoice, matchScore } from "./score.js";
import {
  describeInterval,
  MANIFEST_FILE,
  pct,
  readManifest,
  readResults,
  RESULTS_FILE,
  SUMMARY_FILE,
  summarizeResults,
  writeContentAddressed,
  type EvalSummary,
  type ResultRow,
  type RunManifest,
} from "./summary.js";
import { writeAtomic } from "./output-file.js";
import { readThreadState, toTrajectory, type Trajectory } from "./trajectory.js";

export interface EvalOptions {
  dataset: string;
  format?: DatasetFormat | "auto";
  limit?: number;
  /** CSVQA TSV: which language's question and options to use (default: the recorded one when resuming, else en). */
  lang?: "en" | "zh";
  /** Items in flight at once. */
  concurrency: number;
  judge?: { url: string; model?: string; apiKey?: string };
  /** The run directory. */
  out: string;
  /** Continue the run in `out`: finished items are kept, unfinished ones continue from their last checkpoint. */
  resume: boolean;
  settings: LoupeConfig;
  secrets: LoupeSecrets;
  imagesDir?: string;
  /** Progress bar on stderr. */
  progress: boolean;
  /** Write report.html at the end (default true). */
  report?: boolean;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Replace parts of the agent's dependencies (tests). */
  deps?: Partial<Omit<RuntimeDeps, "defaults">>;
}

export interface EvalOutcome {
  dir: string;
  summary: EvalSummary;
  rows: ResultRow[];
  /** Items run (or continued) by this invocation; the rest were already done. */
  ran: number;
}

export class EvalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EvalError";
  }
}

/** A --resume whose settings differ from the ones the run recorded (its results would mix two configurations). */
export class ResumeMismatchError extends EvalError {
  constructor(
    dir: string,
    readonly differences: string[],
  ) {
    super(
      `cannot resume ${dir} with other settings than it was started with: ${differences.join("; ")}. ` +
        `Resume with the recorded settings (leave these flags out, or give the recorded values), or start a new run with another --out.`,
    );
    this.name = "ResumeMismatchError";
  }
}

/** The settings a resume must share with the run it continues; undefined = not known yet (compared later). */
export interface RunSettingsKey {
  modelUrl?: string;
  model?: string;
  judgeUrl?: string | null;
  judgeModel?: string | null;
  dialect?: string;
  plan?: boolean;
  maxToolCalls?: number;
  maxTurns?: number;
  temperature?: number;
  lang?: string;
}

const KEY_LABELS: Record<keyof RunSettingsKey, string> = {
  modelUrl: "model URL",
  model: "model",
  judgeUrl: "judge URL",
  judgeModel: "judge model",
  dialect: "dialect",
  plan: "plan mode",
  maxToolCalls: "max tool calls",
  maxTurns: "max turns",
  temperature: "temperature",
  lang: "CSVQA language",
};

export function recordedKey(manifest: RunManifest): RunSettingsKey {
  return {
    modelUrl: manifest.model.url,
    model: manifest.model.name,
    judgeUrl: manifest.judge?.url ?? null,
    judgeModel: manifest.judge?.model ?? null,
    dialect: manifest.dialect,
    plan: manifest.plan,
    maxToolCalls: manifest.maxToolCalls,
    maxTurns: manifest.maxTurns,
    temperature: manifest.temperature,
    lang: manifest.lang ?? "en",
  };
}

/** What differs between a run's recorded settings and a resume's, e.g. "dialect tags (recorded: tools)". */
export function resumeDifferences(recorded: RunSettingsKey, now: RunSettingsKey): string[] {
  const show = (v: unknown) => (v === null ? "none" : String(v));
  return (Object.keys(KEY_LABELS) as (keyof RunSettingsKey)[])
    .filter((k) => recorded[k] !== undefined && now[k] !== undefined && recorded[k] !== now[k])
    .map((k) => `${KEY_LABELS[k]} ${show(now[k])} (recorded: ${show(recorded[k])})`);
}

export function threadIdFor(runId: string, itemId: string): string {
  return `eval-${runId}-${safeId(itemId)}`;
}

/** Default run directory: <dataDir>/runs/<dataset>-<UTC timestamp>. */
export function defaultRunDir(dataDir: string, dataset: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
  const name = dataset.split(/[\\/]/).pop()!.replace(/\.[^.]+$/, "");
  return join(resolve(dataDir), "runs", `${name}-${stamp}`);
}

/** Tool calls as the agent counts them (usage.toolCalls): calls refused because the budget ran out were never run. */
function ranCalls(traj: Trajectory): ToolCallRecord[] {
  return traj.toolCalls.filter((c) => !isBudgetRefusal(c));
}

function toolsByName(traj: Trajectory): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of ranCalls(traj)) out[c.name] = (out[c.name] ?? 0) + 1;
  return out;
}

/** Imports an item's recorded reverse image search under the hash its first image gets in the store (what image_search on img_0 looks up). */
async function importRecordedImageSearch(item: EvalItem, firstImage: string | undefined, deps: RuntimeDeps): Promise<void> {
  if (item.imageSearchResult === undefined || !firstImage || !deps.searchCache) return;
  const stored = await deps.images.ingest(await readFile(firstImage));
  await importMmsearchResults(deps.searchCache, [{ imageSha256: stored.sha256, results: item.imageSearchResult }], "serper-lens", { images: deps.images });
}

/**
 * Input images as local files. Embedded images are already files (the loader writes them to the run's inputs folder);
 * remote URLs are downloaded once (through the SSRF guard, as web_visit reads pages) into that folder.
 */
async function materialize(images: ImageInput[], inputsDir: string, settings: LoupeConfig, signal?: AbortSignal): Promise<string[]> {
  const out: string[] = [];
  const allowHosts = commaList(settings.webAllowHosts);
  const download = urlImageReader({ allowHosts });
  for (const image of images) {
    if (image.kind === "path") {
      out.push(image.path);
      continue;
    }
    if (image.kind !== "url") throw new EvalError("image bytes were not written to the run's inputs folder");
    const marker = join(inputsDir, `url-${createHash("sha256").update(image.url).digest("hex").slice(0, 32)}.txt`);
    if (existsSync(marker)) {
      const saved = readFileSync(marker, "utf8").trim();
      if (existsSync(saved)) {
        out.push(saved);
        continue;
      }
    }
    const body = await download(image.url, signal);
    const path = join(inputsDir, `${createHash("sha256").update(body).digest("hex")}${sniffExt(body)}`);
    writeContentAddressed(path, body);
    writeAtomic(marker, path);
    out.push(path);
  }
  return out;
}

function lastReplyText(state: AgentStateValue): string {
  const last = [...state.conversation].reverse().find((t) => t.role === "assistant") as { text: string } | undefined;
  return (last?.text ?? "").replace(/<think>[\s\S]*?(<\/think>|$)/gi, "").trim();
}

function sameLetters(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

type Scored = Pick<ResultRow, "correct" | "method" | "extracted" | "judge" | "match">;

async function scoreItem(item: EvalItem, traj: Trajectory, state: AgentStateValue, judge: Judge | null, signal?: AbortSignal): Promise<Scored> {
  if (item.kind === "choice") {
    const letters = extractChoice(traj.answerTag ?? lastReplyText(state), item.choices);
    return { method: "choice", extracted: letters, correct: letters !== null && sameLetters(letters, item.answers) };
  }
  // R1V4's protocol: only the <answer> text is judged, and no tag means wrong.
  if (!traj.answerTag) return { method: "none", correct: false };
  const match = matchScore(traj.answerTag, item.answers);
  const matchInfo = { exact: match.exact, f1: Math.round(match.f1 * 1000) / 1000 };
  if (!judge) return { method: "match", correct: match.correct, match: matchInfo };
  const verdict = await judge.judge(item.judgeQuestion, traj.answerTag, item.answers, signal);
  return {
    method: "judge",
    correct: verdict.correct,
    judge: { correct: verdict.correct, reasoning: verdict.reasoning, model: verdict.model, cached: verdict.cached },
    match: matchInfo,
  };
}

function baseRow(item: EvalItem, index: number, threadId: string): Omit<ResultRow, "correct" | "method" | "latencyMs" | "finishedAt"> {
  return {
    id: item.id,
    index,
    threadId,
    category: item.category,
    kind: item.kind,
    question: item.judgeQuestion,
    answers: item.answers,
    prediction: null,
    answerTag: null,
    toolCalls: 0,
    failedToolCalls: 0,
    toolsByName: {},
    turns: 0,
    promptTokens: 0,
    completionTokens: 0,
    modelMs: 0,
  };
}

interface Progress {
  itemDone(): void;
  stop(): void;
}

function progressBar(total: number, rows: ResultRow[], enabled: boolean): Progress {
  const correct = () => rows.filter((r) => r.correct).length;
  if (!enabled) return { itemDone: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: "eval |{bar}| {value}/{total} | acc {acc} | {rate} items/min | ETA {eta_formatted} | errors {errors}",
      barsize: 24,
      hideCursor: true,
      noTTYOutput: !process.stderr.isTTY,
      notTTYSchedule: 5000,
      etaBuffer: 20,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let ranHere = 0;
  const payload = () => ({
    acc: rows.length ? pct(correct() / rows.length) : "-",
    rate: ranHere ? ((ranHere / Math.max(1, Date.now() - started)) * 60_000).toFixed(1) : "-",
    errors: rows.filter((r) => r.error).length,
  });
  bar.start(total, rows.length, payload());
  return {
    itemDone() {
      ranHere++;
      bar.update(rows.length, payload());
    },
    stop() {
      bar.update(rows.length, payload());
      bar.stop();
    },
  };
}

type ItemStage = NonNullable<ResultRow["error"]>["stage"];

/** What running one item needs from the evaluation around it. */
interface ItemRun {
  agent: LoupeAgent;
  deps: RuntimeDeps;
  settings: LoupeConfig;
  runId: string;
  inputsDir: string;
  /** The dataset's recorded reverse image searches answer image_search (imported item by item). */
  offlineLens: boolean;
  judge: Judge | null;
  signal?: AbortSignal;
}

/** How far an item got: an error row says at which stage it failed and keeps the trajectory already read. */
interface ItemAttempt {
  stage: ItemStage;
  traj: Trajectory | null;
}

/** A row's usage columns from the agent's counters; what a failed thread has not counted yet is 0. */
function usageColumns(usage: Partial<AskResult["usage"]> | undefined): Pick<ResultRow, "toolCalls" | "turns" | "promptTokens" | "completionTokens" | "modelMs"> {
  return {
    toolCalls: usage?.toolCalls ?? 0,
    turns: usage?.turns ?? 0,
    promptTokens: usage?.promptTokens ?? 0,
    completionTokens: usage?.completionTokens ?? 0,
    modelMs: Math.round(usage?.modelMs ?? 0),
  };
}

/** A row's tool columns from the trajectory; none when the thread could not be read. */
function toolColumns(traj: Trajectory | null): Pick<ResultRow, "failedToolCalls" | "toolsByName"> {
  if (!traj) return { failedToolCalls: 0, toolsByName: {} };
  return { failedToolCalls: ranCalls(traj).filter((c) => !c.ok).length, toolsByName: toolsByName(traj) };
}

/** Answers an item on its thread: a finished thread is read back, a started one continued, a new one asked. */
async function answerItem(run: ItemRun, item: EvalItem, threadId: string, attempt: ItemAttempt): Promise<AskResult> {
  const snapshot = await run.agent.getState({ configurable: { thread_id: threadId } });
  const existing = snapshot.values as AgentStateValue | undefined;
  if (existing?.question !== undefined && existing.final && snapshot.next.length === 0) return summarize(threadId, existing);
  if (existing?.question !== undefined) return await ask(run.agent, { settings: run.settings, resume: threadId, signal: run.signal });
  attempt.stage = "input";
  const images = await materialize(item.images, run.inputsDir, run.settings, run.signal);
  if (run.offlineLens) await importRecordedImageSearch(item, images[0], run.deps);
  attempt.stage = "agent";
  return await ask(run.agent, { settings: run.settings, threadId, question: item.question, images, signal: run.signal });
}

/** The row of an item that failed: what its thread holds so far still counts (tool calls, tokens), so the row is informative. */
async function failedRow(run: ItemRun, base: ReturnType<typeof baseRow>, attempt: ItemAttempt, err: unknown, started: number): Promise<ResultRow> {
  const message = ((err as Error)?.message ?? String(err)).split("\n")[0]!;
  const state = await readThreadState(run.agent, base.threadId).catch(() => null);
  const partial = attempt.traj ?? (state ? toTrajectory(base.threadId, state) : null);
  return {
    ...base,
    prediction: state?.final?.answer ?? null,
    answerTag: partial?.answerTag ?? null,
    correct: false,
    method: "none",
    ...usageColumns(state?.usage),
    ...toolColumns(partial),
    latencyMs: Math.round(performance.now() - started),
    error: { stage: attempt.stage, message },
    finishedAt: new Date().toISOString(),
  };
}

/** Runs one item to its result row; null when the run was interrupted meanwhile (the item continues on --resume). */
async function runItem(run: ItemRun, item: EvalItem, index: number): Promise<ResultRow | null> {
  const threadId = threadIdFor(run.runId, item.id);
  const started = performance.now();
  const base = baseRow(item, index, threadId);
  const attempt: ItemAttempt = { stage: "agent", traj: null };
  try {
    const result = await answerItem(run, item, threadId, attempt);
    attempt.stage = "judge";
    const state = (await readThreadState(run.agent, threadId))!;
    const traj = toTrajectory(threadId, state);
    attempt.traj = traj;
    const scored = await scoreItem(item, traj, state, run.judge, run.signal);
    return {
      ...base,
      prediction: result.answer,
      answerTag: traj.answerTag,
      ...scored,
      ...usageColumns(result.usage),
      ...toolColumns(traj),
      latencyMs: Math.round(performance.now() - started),
      reason: result.reason,
      finishedAt: new Date().toISOString(),
    };
  } catch (err) {
    if (run.signal?.aborted) return null;
    return await failedRow(run, base, attempt, err, started);
  }
}

/** The recorded manifest of the run in dir when resuming (of the same dataset), null for a new run in an unused dir. */
function existingManifest(dir: string, options: EvalOptions): RunManifest | null {
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!options.resume) {
    if (existsSync(manifestPath)) throw new EvalError(`${dir} already holds an evaluation run; continue it with --resume, or choose another --out`);
    return null;
  }
  if (!existsSync(manifestPath)) throw new EvalError(`nothing to resume in ${dir} (no ${MANIFEST_FILE}); start the run without --resume`);
  const manifest = readManifest(dir);
  if (resolve(manifest.dataset) !== resolve(options.dataset)) {
    throw new EvalError(`the run in ${dir} evaluated ${manifest.dataset}, not ${resolve(options.dataset)}; resume it with that dataset or pick another --out`);
  }
  return manifest;
}

/** Refuses a resume with other settings than recorded; undefined fields of `now` are not compared. */
function checkResume(dir: string, manifest: RunManifest | null, now: RunSettingsKey): void {
  if (!manifest) return;
  const differences = resumeDifferences(recordedKey(manifest), now);
  if (differences.length) throw new ResumeMismatchError(dir, differences);
}

/**
 * MMSearch ships each question's recorded reverse image search: image_search on the question image
 * is answered from those (imported into the search cache), with or without a Lens key.
 */
function withRecordedImageSearch(options: EvalOptions, items: EvalItem[]): { settings: LoupeConfig; offlineLens: boolean; recorded: number } {
  const recorded = items.filter((i) => i.imageSearchResult !== undefined).length;
  const offlineLens = recorded > 0 && options.settings.searchCache !== "live" && options.settings.searchCache !== "record";
  const settings: LoupeConfig = offlineLens ? { ...options.settings, cachedImageSearch: true } : options.settings;
  return { settings, offlineLens, recorded };
}

/** What a run is set up with once its dataset is loaded, before the agent opens. */
interface RunSetup {
  options: EvalOptions;
  dir: string;
  inputsDir: string;
  /** The recorded manifest when resuming. */
  manifest: RunManifest | null;
  dataset: LoadedDataset;
  settings: LoupeConfig;
  offlineLens: boolean;
  log: (line: string) => void;
}

/** Reads (when resuming) and checks the run directory, and loads the dataset with the recorded settings for flags left out. */
async function setUpRun(options: EvalOptions, log: (line: string) => void): Promise<RunSetup> {
  const dir = resolve(options.out);
  const manifest = existingManifest(dir, options);
  const inputsDir = join(dir, "inputs");
  mkdirSync(inputsDir, { recursive: true });
  const format = options.format && options.format !== "auto" ? options.format : ((manifest?.format as DatasetFormat | undefined) ?? "auto");
  const limit = options.limit ?? manifest?.limit ?? undefined;
  const lang = options.lang ?? manifest?.lang ?? "en";
  // What can be checked before any request: a changed server, judge or budget is refused before it is asked anything.
  const { settings: st, judge } = options;
  checkResume(dir, manifest, { modelUrl: st.modelUrl, judgeUrl: judge?.url ?? null, dialect: st.dialect, plan: st.plan, maxToolCalls: st.maxToolCalls, maxTurns: st.maxTurns, temperature: st.temperature, lang });
  const dataset = await loadDataset(options.dataset, { format, limit, lang, imagesDir: options.imagesDir, imagesOut: inputsDir });
  const { settings, offlineLens, recorded } = withRecordedImageSearch(options, dataset.items);
  if (offlineLens) log(`loupe eval: ${recorded} recorded reverse image searches in the dataset; image_search on a question's image is answered from them`);
  return { options, dir, inputsDir, manifest, dataset, settings, offlineLens, log };
}

/** A new run's manifest: what it evaluates and with which settings, so a resume can be checked against it. */
function newManifest(setup: RunSetup, modelName: string, judge: RunManifest["judge"]): RunManifest {
  const { options, dataset, settings } = setup;
  return {
    version: 1,
    runId: randomBytes(4).toString("hex"),
    dataset: dataset.file,
    format: dataset.format,
    limit: options.limit ?? null,
    ...(options.lang ? { lang: options.lang } : {}),
    items: dataset.items.length,
    createdAt: new Date().toISOString(),
    model: { url: settings.modelUrl, name: modelName },
    judge,
    dialect: settings.dialect,
    plan: settings.plan,
    maxToolCalls: settings.maxToolCalls,
    maxTurns: settings.maxTurns,
    temperature: settings.temperature,
    dataDir: resolve(settings.dataDir),
    ...(settings.databaseUrl ? { database: redactDatabaseUrl(settings.databaseUrl) } : {}),
  };
}

/** The run's manifest, written to its directory: the recorded one (checked against the model names the servers resolve to now), or a new one. */
async function settleManifest(setup: RunSetup, modelName: string, judge: Judge | null): Promise<RunManifest> {
  const judgeServer = judge ? { url: judge.url, model: await judge.modelName() } : null;
  // The model names the servers resolve to (the first listed one when none was given).
  checkResume(setup.dir, setup.manifest, { model: modelName, judgeModel: judgeServer?.model ?? null });
  const manifest = setup.manifest ?? newManifest(setup, modelName, judgeServer);
  writeAtomic(join(setup.dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Rows of items already finished (kept) and the items still to run (new, unfinished, or failed before). */
function splitFinished(setup: RunSetup): { rows: ResultRow[]; pending: Array<{ item: EvalItem; index: number }> } {
  const { items } = setup.dataset;
  const done = new Map(readResults(setup.dir).filter((r) => !r.error).map((r) => [r.id, r]));
  const wanted = new Set(items.map((i) => i.id));
  const rows: ResultRow[] = [...done.values()].filter((r) => wanted.has(r.id));
  const pending = items.map((item, index) => ({ item, index })).filter(({ item }) => !done.has(item.id));
  if (setup.options.resume) setup.log(`loupe eval: resuming ${setup.dir}: ${rows.length} of ${items.length} items done, ${pending.length} to go`);
  else setup.log(`loupe eval: ${items.length} items from ${setup.dataset.file} (${setup.dataset.format}) → ${setup.dir}`);
  return { rows, pending };
}

/**
 * Runs the pending items, `concurrency` at a time, appending each finished row to the results file as
 * it comes (so a killed run keeps it) and into `rows`. Returns how many items ran.
 */
async function runPending(run: ItemRun, pending: Array<{ item: EvalItem; index: number }>, rows: ResultRow[], setup: RunSetup): Promise<number> {
  const resultsPath = join(setup.dir, RESULTS_FILE);
  const progress = progressBar(setup.dataset.items.length, rows, setup.options.progress);
  let ran = 0;
  let next = 0;
  const worker = async () => {
    while (next < pending.length && !run.signal?.aborted) {
      const { item, index } = pending[next++]!;
      const row = await runItem(run, item, index);
      if (!row) continue;
      ran++;
      appendFileSync(resultsPath, `${JSON.stringify(row)}\n`);
      const at = rows.findIndex((r) => r.id === row.id);
      if (at >= 0) rows.splice(at, 1, row);
      else rows.push(row);
      progress.itemDone();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(setup.options.concurrency, pending.length)) }, worker));
  progress.stop();
  return ran;
}

/** Writes the results in dataset order, the summary and (unless turned off) the report. */
async function finishRun(setup: RunSetup, manifest: RunManifest, rows: ResultRow[], judge: Judge | null, agent: LoupeAgent, deps: RuntimeDeps): Promise<EvalSummary> {
  const { dir } = setup;
  rows.sort((a, b) => a.index - b.index);
  writeAtomic(join(dir, RESULTS_FILE), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const summary = summarizeResults(
    rows,
    { ...manifest, dir, finishedAt: new Date().toISOString() },
    judge ? { requests: judge.calls, cached: rows.filter((r) => r.judge?.cached).length } : null,
  );
  writeAtomic(join(dir, SUMMARY_FILE), `${JSON.stringify(summary, null, 2)}\n`);
  if (setup.options.report !== false) {
    await writeReport(dir, { reader: agent, images: deps.images }).catch((err: Error) => setup.log(`loupe eval: report.html not written: ${err.message}`));
  }
  return summary;
}

/** Runs the items not finished yet, then writes results, summary and report. */
async function runItems(setup: RunSetup, manifest: RunManifest, agent: LoupeAgent, deps: RuntimeDeps, judge: Judge | null): Promise<EvalOutcome> {
  const { options, dir } = setup;
  const { rows, pending } = splitFinished(setup);
  const run: ItemRun = { agent, deps, settings: setup.settings, runId: manifest.runId, inputsDir: setup.inputsDir, offlineLens: setup.offlineLens, judge, signal: options.signal };
  const ran = await runPending(run, pending, rows, setup);
  if (options.signal?.aborted) {
    const total = setup.dataset.items.length;
    throw new RunError(`interrupted after ${rows.length} of ${total} items; everything finished is saved — continue with: loupe eval ${options.dataset} --out ${dir} --resume`);
  }
  const summary = await finishRun(setup, manifest, rows, judge, agent, deps);
  return { dir, summary, rows, ran };
}

/** The run on an open agent: the judge (with its verdict cache, closed at the end) and the manifest, then the items. */
async function evaluate(setup: RunSetup, agent: LoupeAgent, deps: RuntimeDeps): Promise<EvalOutcome> {
  const { options, settings } = setup;
  const modelName = await deps.model(settings).modelName();
  const judgeCache = options.judge ? new JudgeCache(judgeCachePath(settings.dataDir)) : null;
  try {
    const judge =
      options.judge && judgeCache
        ? new Judge({ url: options.judge.url, model: options.judge.model, apiKey: options.judge.apiKey, settings, images: deps.images, cache: judgeCache })
        : null;
    const manifest = await settleManifest(setup, modelName, judge);
    return await runItems(setup, manifest, agent, deps, judge);
  } finally {
    judgeCache?.close();
  }
}

/** Runs (or resumes) an evaluation. Items fail one by one; the run itself fails only on bad input or setup. */
export async function runEval(options: EvalOptions): Promise<EvalOutcome> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const setup = await setUpRun(options, log);
  return withAgent(setup.settings, options.secrets, ({ agent, deps }) => evaluate(setup, agent, deps), options.deps);
}

/** The end-of-run table printed on stdout. */
export function formatSummary(summary: EvalSummary): string {
  const lines: string[] = [];
  lines.push(`accuracy ${describeInterval(summary.accuracy)}`);
  const cats = Object.entries(summary.byCategory);
  if (cats.length > 1) {
    const width = Math.max(8, ...cats.map(([c]) => c.length));
    lines.push(`  ${"category".padEnd(width)}  ${"n".padStart(5)}  accuracy`);
    for (const [c, i] of cats) lines.push(`  ${c.padEnd(width)}  ${String(i.n).padStart(5)}  ${pct(i.accuracy)} ± ${pct(i.halfWidth)}`);
  }
  const tools = Object.entries(summary.toolCalls.byTool).map(([n, t]) => `${n} ${t.total}`).join(", ");
  lines.push(`tool calls per item ${summary.toolCalls.mean.toFixed(2)}${tools ? ` (${tools})` : ""}, failed ${summary.toolCalls.failed}`);
  lines.push(`turns per item ${summary.turns.mean.toFixed(2)}; tokens ${summary.tokens.prompt} prompt + ${summary.tokens.completion} completion`);
  lines.push(`latency p50 ${(summary.latencyMs.p50 / 1000).toFixed(1)} s, p95 ${(summary.latencyMs.p95 / 1000).toFixed(1)} s; errors ${summary.errors.count}`);
  if (summary.judge) lines.push(`judge requests ${summary.judge.requests} (${summary.judge.cached} verdicts from the cache)`);
  lines.push(`results in ${summary.run.dir}: ${RESULTS_FILE}, ${SUMMARY_FILE}, report.html`);
  return lines.join("\n");
}
