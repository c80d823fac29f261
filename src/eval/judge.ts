// The LLM judge for open answers (R1V4's protocol: only the <answer> text is judged; the judge replies `reasoning:` … `correct: yes|no`), with a SQLite verdict cache.
import { toolSpecs } from "../../tools/index.js";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { LoupeConfigSchema, type LoupeConfig } from "../core/config.js";
import type { ImageStore } from "../core/images.js";
import { sha256Hex } from "../core/images.js";
import { OpenAICompatibleModel, type ModelClient } from "../core/model.js";

/** Bump when the prompt or the parsing changes, so cached verdicts of the old protocol stop matching. */
export const JUDGE_PROTOCOL_VERSION = 1;

/**
 * BrowseComp-style grading prompt, as R1V4 uses it with o3-mini: the judge compares the response
 * with the reference answer only, and ends with `correct: yes|no`.
 */
export function judgePrompt(question: string, response: string, correctAnswer: string): string {
  return [
    "Judge whether the following [response] to [question] is correct, based on the precise and unambiguous [correct_answer] below.",
    "",
    `[question]: ${question}`,
    "",
    `[response]: ${response}`,
    "",
    `[correct_answer]: ${correctAnswer}`,
    "",
    "Reply in exactly this format:",
    "",
    "reasoning: Explain why the response is or is not correct with respect to [correct_answer], looking only for meaningful differences between the two. Do not discuss the background of the problem, do not try to solve it yourself, and do not argue for any answer other than [correct_answer].",
    "",
    "correct: 'yes' if the response matches [correct_answer], or is within a small margin of error for numerical answers; 'no' otherwise, i.e. if there is any inconsistency, ambiguity or non-equivalence, or if the response is incorrect.",
  ].join("\n");
}

/** The reference answer as the judge sees it: the first accepted answer, with the others listed as also accepted. */
export function correctAnswerText(answers: string[]): string {
  if (answers.length <= 1) return answers[0] ?? "";
  return `${answers[0]} (also accepted: ${answers.slice(1, 12).join("; ")})`;
}

export interface Verdict {
  correct: boolean;
  reasoning: string;
  /** The judge's whole reply. */
  raw: string;
  model: string;
  cached: boolean;
}

export class JudgeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JudgeError";
  }
}

/** Reads `correct: yes|no` (the last one) and the reasoning from a judge reply. */
export function parseVerdict(text: string): { correct: boolean; reasoning: string } | null {
  const marks = [...text.matchAll(/(?:^|\n)[\s*#_>-]*correct[\s*_]*[:：][\s*_'"`]*(yes|no)\b/gi)];
  if (!marks.length) return null;
  const correct = marks.at(-1)![1]!.toLowerCase() === "yes";
  const reasoning = /reasoning[\s*_]*[:：][\s*_]*([\s\S]*?)(?=\n[\s*#_>-]*correct[\s*_]*[:：]|$)/i.exec(text)?.[1]?.trim() ?? "";
  return { correct, reasoning };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS judge_cache (
  key            TEXT PRIMARY KEY,
  model          TEXT NOT NULL,
  question       TEXT NOT NULL,
  response       TEXT NOT NULL,
  correct_answer TEXT NOT NULL,
  correct        INTEGER NOT NULL,
  reasoning      TEXT NOT NULL,
  raw            TEXT NOT NULL,
  created_at     INTEGER NOT NULL
);`;

export function judgeCachePath(dataDir: string): string {
  return join(resolve(dataDir), "judge-cache.sqlite");
}

/** Verdicts keyed by (judge model, protocol version, question, response, reference answer): a verdict is paid for once. */
export class JudgeCache {
  private readonly db: Database.Database;
  readonly counters = { hits: 0, misses: 0, writes: 0 };
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path, { timeout: 10_000 });
    this.db.pragma("journal_mode = WAL");
    this.db.exec(SCHEMA);
  }

  static key(model: string, question: string, response: string, correctAnswer: string): string {
    return sha256Hex(JSON.stringify([JUDGE_PROTOCOL_VERSION, model, question, response, correctAnswer]));
  }

  get(key: string): Omit<Verdict, "cached" | "model"> | undefined {
    const row = this.db.prepare("SELECT correct, reasoning, raw FROM judge_cache WHERE key = ?").get(key) as
      | { correct: number; reasoning: string; raw: string }
      | undefined;
    if (!row) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    return { correct: row.correct === 1, reasoning: row.reasoning, raw: row.raw };
  }

  put(key: string, model: string, question: string, response: string, correctAnswer: string, verdict: { correct: boolean; reasoning: string; raw: string }): void {
    this.db
      .prepare("INSERT OR REPLACE INTO judge_cache (key, model, question, response, correct_answer, correct, reasoning, raw, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .run(key, model, question, response, correctAnswer, verdict.correct ? 1 : 0, verdict.reasoning, verdict.raw, Date.now());
    this.counters.writes++;
  }

  close(): void {
    this.db.close();
  }
}

export interface JudgeOptions {
  url: string;
  model?: string;
  apiKey?: string;
  /** Settings the judge's client inherits (timeouts, retries); sampling is fixed to temperature 0, no streaming. */
  settings: LoupeConfig;
  images: ImageStore;
  cache?: JudgeCache;
  /** A client to use instead of the HTTP one (tests). */
  client?: ModelClient;
}

/** An LLM judge on any OpenAI-compatible endpoint. */
export class Judge {
  readonly url: string;
  readonly cache?: JudgeCache;
  /** Judge requests actually sent (cache hits excluded). */
  calls = 0;
  private readonly client: ModelClient;

  constructor(options: JudgeOptions) {
    this.url = options.url;
    this.cache = options.cache;
    const config = LoupeConfigSchema.parse({
      ...options.settings,
      modelUrl: options.url,
      model: options.model,
      temperature: 0,
      maxTokens: Math.max(1024, Math.min(options.settings.maxTokens, 4096)),
      stream: false,
    });
    this.client = options.client ?? new OpenAICompatibleModel({ config, apiKey: options.apiKey, images: options.images, toolSpecs });
  }

  modelName(): Promise<string> {
    return this.client.modelName();
  }

  async judge(question: string, response: string, answers: string[], signal?: AbortSignal): Promise<Verdict> {
    const model = await this.client.modelName();
    const correctAnswer = correctAnswerText(answers);
    const key = JudgeCache.key(model, question, response, correctAnswer);
    const hit = this.cache?.get(key);
    if (hit) return { ...hit, model, cached: true };
    const prompt = judgePrompt(question, response, correctAnswer);
    let parsed: { correct: boolean; reasoning: string } | null = null;
    let raw = "";
    // One more try when the reply has no verdict line (a judge that rambled or was cut off).
    for (let attempt = 0; attempt < 2 && !parsed; attempt++) {
      this.calls++;
      const reply = await this.client.complete([{ role: "user", parts: [{ type: "text", text: prompt }] }], { signal });
      raw = reply.content;
      parsed = parseVerdict(raw);
    }
    if (!parsed) {
      throw new JudgeError(`the judge at ${this.url} (${model}) replied without a "correct: yes|no" line: ${JSON.stringify(raw.slice(0, 200))}`);
    }
    this.cache?.put(key, model, question, response, correctAnswer, { ...parsed, raw });
    return { ...parsed, raw, model, cached: false };
  }
}
