// `loupe eval`: runs the agent over a benchmark file (or continues such a run) and prints the summary.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { resolveConfig, resolveSecrets, type LoupeConfig } from "../core/config.js";
import type { DatasetFormat } from "../eval/items.js";
import { defaultRunDir, formatSummary, ResumeMismatchError, runEval, type EvalOptions, type EvalOutcome } from "../eval/run.js";
import { MANIFEST_FILE, readManifest, type RunManifest } from "../eval/summary.js";
import { UsageError } from "./errors.js";
import { codeToolNotes, settingsFromSharedFlags, type RunFlags, type SharedFlagSettings } from "./run-flags.js";
import { abortOnInterrupt } from "./signals.js";

/** `loupe eval`'s flags as commander parses them. */
export type EvalFlags = RunFlags & {
  format: DatasetFormat | "auto";
  limit?: number;
  concurrency: number;
  /** false with --no-judge. */
  judge: boolean;
  judgeUrl?: string;
  judgeModel?: string;
  judgeApiKey?: string;
  out?: string;
  resume?: true;
  images?: string;
  lang?: "en" | "zh";
  /** false with --no-report. */
  report: boolean;
  json?: true;
  quiet?: true;
};

export async function runEvalCommand(dataset: string, flags: EvalFlags): Promise<void> {
  const { out, recorded } = runDirFor(dataset, flags);
  const settings = evalSettings(flags, recorded);
  const judge = judgeFor(flags, recorded);
  for (const note of await codeToolNotes(settings)) if (!flags.quiet) process.stderr.write(`loupe eval: note: ${note}\n`);
  const interrupt = abortOnInterrupt();
  try {
    const outcome = await runEval({
      dataset,
      format: flags.format,
      limit: flags.limit,
      lang: flags.lang,
      concurrency: flags.concurrency,
      judge,
      out,
      resume: Boolean(flags.resume),
      settings,
      secrets: resolveSecrets({ apiKey: flags.apiKey }),
      imagesDir: flags.images,
      progress: !flags.quiet,
      report: flags.report !== false,
      signal: interrupt.signal,
      log: flags.quiet ? () => {} : undefined,
    });
    printOutcome(outcome, flags);
  } catch (err) {
    throw err instanceof ResumeMismatchError ? new UsageError(err.message) : err;
  } finally {
    interrupt.stop();
  }
}

/**
 * The settings of this run. With --resume, what the command line leaves out is what the run
 * recorded (not the environment), so a bare --resume continues the run as it was started;
 * runEval refuses explicit differences.
 */
function evalSettings(flags: EvalFlags, recorded?: RunManifest): LoupeConfig {
  return resolveConfig({
    ...settingsFromSharedFlags(flags, recorded && recordedSettings(recorded)),
    // A benchmark runs unattended: no pauses for human approval, whatever the environment says.
    approvePlan: false,
    approveSearch: false,
    approveWebVisit: false,
  });
}

function recordedSettings(manifest: RunManifest): SharedFlagSettings {
  return {
    modelUrl: manifest.model.url,
    model: manifest.model.name,
    dialect: manifest.dialect,
    plan: manifest.plan,
    maxToolCalls: manifest.maxToolCalls,
    maxTurns: manifest.maxTurns,
    temperature: manifest.temperature,
    dataDir: manifest.dataDir,
  };
}

/** The run directory (--out; with a bare --resume, this dataset's latest run) and, when resuming, what the run recorded. */
function runDirFor(dataset: string, flags: EvalFlags): { out: string; recorded?: RunManifest } {
  const { dataDir } = evalSettings(flags);
  let out = flags.out;
  if (flags.resume && !out) {
    out = latestRunOf(dataDir, dataset);
    if (!out) throw new UsageError(`no earlier run of ${dataset} under ${join(resolve(dataDir), "runs")}; give its directory with --out`);
  }
  out ??= defaultRunDir(dataDir, dataset);
  const recorded = flags.resume && existsSync(join(out, MANIFEST_FILE)) ? readManifest(out) : undefined;
  return { out, recorded };
}

/** The most recent run of this dataset under <dataDir>/runs, for `--resume` without `--out`. */
function latestRunOf(dataDir: string, dataset: string): string | undefined {
  const root = join(resolve(dataDir), "runs");
  if (!existsSync(root)) return undefined;
  const runs = readdirSync(root)
    .map((name) => join(root, name))
    .filter((dir) => existsSync(join(dir, MANIFEST_FILE)))
    .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8")) as RunManifest }))
    .filter((r) => resolve(r.manifest.dataset) === resolve(dataset))
    .sort((a, b) => a.manifest.createdAt.localeCompare(b.manifest.createdAt));
  return runs.at(-1)?.dir;
}

/** The LLM judge for open answers: the flags, else (resuming) the run's judge, else the environment's; none with --no-judge. */
function judgeFor(flags: EvalFlags, recorded?: RunManifest): EvalOptions["judge"] {
  if (flags.judge === false) return undefined;
  const url = flags.judgeUrl ?? (recorded ? recorded.judge?.url : process.env.LOUPE_JUDGE_URL || undefined);
  if (!url) return undefined;
  if (!/^https?:\/\//.test(url)) throw new UsageError(`--judge-url must be an http(s) URL, got "${url}"`);
  return {
    url,
    model: flags.judgeModel ?? (recorded ? recorded.judge?.model : process.env.LOUPE_JUDGE_MODEL || undefined),
    apiKey: flags.judgeApiKey ?? process.env.LOUPE_JUDGE_API_KEY ?? process.env.OPENAI_API_KEY,
  };
}

function printOutcome(outcome: EvalOutcome, flags: EvalFlags): void {
  process.stdout.write(flags.json ? `${JSON.stringify(outcome.summary)}\n` : `${formatSummary(outcome.summary)}\n`);
  if (outcome.summary.errors.count && !flags.quiet) {
    process.stderr.write(`loupe eval: ${outcome.summary.errors.count} items failed (see results.jsonl); rerun with --out ${outcome.dir} --resume to retry them\n`);
  }
}
