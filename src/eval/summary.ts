// Results of an evaluation: one row per item (results.jsonl) and the summary (summary.json): accuracy with Wald CIs, tools, turns, tokens, latency, errors.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeAtomic } from "./output-file.js";
import type { FinalAnswer } from "../core/state.js";
import { waldInterval, type Interval } from "./score.js";

export interface ResultRow {
  id: string;
  /** Position in the dataset (0-based), for ordering. */
  index: number;
  threadId: string;
  category: string;
  kind: "choice" | "open";
  question: string;
  /** Accepted answers (option letters for multiple choice). */
  answers: string[];
  /** The agent's final answer (null when the item failed before answering). */
  prediction: string | null;
  /** Text inside the final reply's <answer> tag; null when there was no tag. */
  answerTag: string | null;
  /** Multiple choice: the letters extracted from the answer. */
  extracted?: string[] | null;
  correct: boolean;
  /** choice: option extraction; judge: LLM judge; match: exact match / containment; none: unscorable (no <answer> tag, or an error). */
  method: "choice" | "judge" | "match" | "none";
  judge?: { correct: boolean; reasoning: string; model: string; cached: boolean };
  match?: { exact: boolean; f1: number };
  toolCalls: number;
  failedToolCalls: number;
  toolsByName: Record<string, number>;
  turns: number;
  promptTokens: number;
  completionTokens: number;
  /** Wall time of the item in the attempt that finished it. */
  latencyMs: number;
  modelMs: number;
  reason?: FinalAnswer["reason"];
  error?: { stage: "input" | "agent" | "judge"; message: string };
  finishedAt: string;
}

export interface RunManifest {
  version: 1;
  runId: string;
  dataset: string;
  format: string;
  limit: number | null;
  /** CSVQA TSV: the question language, when one was chosen. */
  lang?: "en" | "zh";
  items: number;
  createdAt: string;
  model: { url: string; name: string };
  judge: { url: string; model: string } | null;
  dialect: string;
  plan: boolean;
  maxToolCalls: number;
  maxTurns: number;
  temperature: number;
  /** Where the checkpointed threads and images are (absolute data dir; a database URL is recorded without its password). */
  dataDir: string;
  database?: string;
}

export interface Distribution {
  mean: number;
  p50: number;
  p95: number;
  max: number;
}

export interface EvalSummary {
  run: RunManifest & { dir: string; finishedAt: string };
  items: number;
  accuracy: Interval;
  byCategory: Record<string, Interval>;
  byMethod: Record<string, Interval>;
  answered: { withAnswerTag: number; withoutAnswerTag: number; budgetExhausted: number };
  toolCalls: {
    total: number;
    mean: number;
    failed: number;
    /** Items by number of tool calls: {"0": 3, "1": 10, …}. */
    histogram: Record<string, number>;
    byTool: Record<string, { total: number; meanPerItem: number; items: number }>;
  };
  turns: { total: number; mean: number };
  tokens: { prompt: number; completion: number; meanPrompt: number; meanCompletion: number };
  latencyMs: Distribution;
  modelMs: Distribution;
  errors: { count: number; byStage: Record<string, number>; items: Array<{ id: string; stage: string; message: string }> };
  judge: { requests: number; cached: number } | null;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

function distribution(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.length ? sorted.reduce((s, v) => s + v, 0) / sorted.length : 0;
  return { mean: Math.round(mean), p50: Math.round(percentile(sorted, 0.5)), p95: Math.round(percentile(sorted, 0.95)), max: Math.round(sorted.at(-1) ?? 0) };
}

function intervalsBy(rows: ResultRow[], key: (r: ResultRow) => string): Record<string, Interval> {
  const groups = new Map<string, ResultRow[]>();
  for (const r of rows) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
  return Object.fromEntries(
    [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, g]) => [k, waldInterval(g.filter((r) => r.correct).length, g.length)]),
  );
}

/** Every item counts: an item that errored is wrong, as a missing answer is in R1V4's protocol. */
export function summarizeResults(rows: ResultRow[], run: EvalSummary["run"], judgeCounts: EvalSummary["judge"]): EvalSummary {
  const n = rows.length;
  const histogram: Record<string, number> = {};
  const byTool: Record<string, { total: number; meanPerItem: number; items: number }> = {};
  for (const r of rows) {
    histogram[String(r.toolCalls)] = (histogram[String(r.toolCalls)] ?? 0) + 1;
    for (const [name, count] of Object.entries(r.toolsByName)) {
      const t = (byTool[name] ??= { total: 0, meanPerItem: 0, items: 0 });
      t.total += count;
      t.items += 1;
    }
  }
  for (const t of Object.values(byTool)) t.meanPerItem = n ? t.total / n : 0;
  const sum = (f: (r: ResultRow) => number) => rows.reduce((s, r) => s + f(r), 0);
  const errors = rows.filter((r) => r.error);
  const byStage: Record<string, number> = {};
  for (const r of errors) byStage[r.error!.stage] = (byStage[r.error!.stage] ?? 0) + 1;
  return {
    run,
    items: n,
    accuracy: waldInterval(rows.filter((r) => r.correct).length, n),
    byCategory: intervalsBy(rows, (r) => r.category),
    byMethod: intervalsBy(rows, (r) => r.method),
    answered: {
      withAnswerTag: rows.filter((r) => r.answerTag !== null).length,
      withoutAnswerTag: rows.filter((r) => r.answerTag === null && !r.error).length,
      budgetExhausted: rows.filter((r) => r.reason === "budget" || r.reason === "no_answer").length,
    },
    toolCalls: {
      total: sum((r) => r.toolCalls),
      mean: n ? sum((r) => r.toolCalls) / n : 0,
      failed: sum((r) => r.failedToolCalls),
      histogram,
      byTool: Object.fromEntries(Object.entries(byTool).sort(([a], [b]) => a.localeCompare(b))),
    },
    turns: { total: sum((r) => r.turns), mean: n ? sum((r) => r.turns) / n : 0 },
    tokens: {
      prompt: sum((r) => r.promptTokens),
      completion: sum((r) => r.completionTokens),
      meanPrompt: n ? Math.round(sum((r) => r.promptTokens) / n) : 0,
      meanCompletion: n ? Math.round(sum((r) => r.completionTokens) / n) : 0,
    },
    latencyMs: distribution(rows.filter((r) => !r.error).map((r) => r.latencyMs)),
    modelMs: distribution(rows.filter((r) => !r.error).map((r) => r.modelMs)),
    errors: { count: errors.length, byStage, items: errors.map((r) => ({ id: r.id, stage: r.error!.stage, message: r.error!.message })) },
    judge: judgeCounts,
  };
}

export const RESULTS_FILE = "results.jsonl";
export const SUMMARY_FILE = "summary.json";
export const MANIFEST_FILE = "run.json";
export const REPORT_FILE = "report.html";

/** Rows of a results file; a later row for the same item replaces an earlier one (a retried item). */
export function readResults(runDir: string): ResultRow[] {
  const path = join(runDir, RESULTS_FILE);
  if (!existsSync(path)) return [];
  const byId = new Map<string, ResultRow>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    let row: ResultRow;
    try {
      row = JSON.parse(line) as ResultRow;
    } catch {
      continue; // a line cut short by a crash; that item is simply run again
    }
    byId.set(row.id, row);
  }
  return [...byId.values()].sort((a, b) => a.index - b.index);
}

export function readManifest(runDir: string): RunManifest {
  const path = join(runDir, MANIFEST_FILE);
  if (!existsSync(path)) throw new Error(`${runDir} is not an evaluation run (no ${MANIFEST_FILE}); give the --out directory of a loupe eval run`);
  return JSON.parse(readFileSync(path, "utf8")) as RunManifest;
}

export function readSummary(runDir: string): EvalSummary | null {
  const path = join(runDir, SUMMARY_FILE);
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as EvalSummary) : null;
}

/**
 * Writes bytes to their content-addressed (hash-named) file, atomically, unless the file is already
 * there whole; one of another size (cut short by a crash of an older version) is written again.
 */
export function writeContentAddressed(path: string, bytes: Uint8Array): void {
  if (existsSync(path) && statSync(path).size === bytes.byteLength) return;
  writeAtomic(path, bytes);
}

export function pct(x: number, digits = 1): string {
  return `${(x * 100).toFixed(digits)}%`;
}

/** "70.0% ± 20.1% (95% CI 49.9–90.1%, n=20)" */
export function describeInterval(i: Interval): string {
  return `${pct(i.accuracy)} ± ${pct(i.halfWidth)} (95% CI ${pct(i.ci95[0])}–${pct(i.ci95[1])}, n=${i.n})`;
}
