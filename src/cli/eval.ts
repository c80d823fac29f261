// The evaluation commands of the CLI: `loupe eval`, `loupe report`, `loupe compare`, `loupe export`.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { createAgent } from "../../graphs/agent.js";
import { openCheckpointer } from "../runtime/checkpointer.js";
import type { ImageStore } from "../core/images.js";
import type { ThreadReader } from "../eval/trajectory.js";
import { commaList, ENV_VARS, LoupeConfigSchema, resolveConfig, resolveSecrets, type LoupeConfig } from "../core/config.js";
import { createDeps } from "../runtime/deps.js";
import { OpenAICompatibleModel } from "../core/model.js";
import { compareRuns, formatComparison } from "../eval/compare.js";
import { EXPORT_FORMATS, exportTrajectories, formatExportReport, type ExportFormat } from "../eval/export.js";
import { FORMATS, type DatasetFormat } from "../eval/items.js";
import { writeReport } from "../eval/report.js";
import { int, num } from "./args.js";
import { defaultRunDir, formatSummary, ResumeMismatchError, runEval } from "../eval/run.js";
import { UsageError } from "./review.js";
import { MANIFEST_FILE, readManifest, type RunManifest } from "../eval/summary.js";


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

/** Settings to read a run's threads and images back: its data directory unless told otherwise (Postgres from the environment). */
function readerSettings(dataDir: string): LoupeConfig {
  return resolveConfig({ dataDir, searchCache: "live" });
}

/** The run's threads (read through the compiled agent over the checkpointer) and image store. */
async function withStores<T>(settings: LoupeConfig, fn: (s: { reader: ThreadReader; images: ImageStore }) => Promise<T>): Promise<T> {
  const deps = createDeps(settings, {});
  const checkpointer = await openCheckpointer(settings, deps.database).catch(async (err) => {
    await deps.close();
    throw err;
  });
  try {
    return await fn({ reader: createAgent({ deps, checkpointer: checkpointer.saver }), images: deps.images });
  } finally {
    await checkpointer.close();
    await deps.close();
  }
}

export function registerEvalCommands(program: Command): void {
  program
    .command("eval")
    .description("Evaluate the agent on a benchmark file: every item a checkpointed thread, scored by option extraction, an LLM judge or exact match; writes results.jsonl, summary.json and report.html.")
    .argument("<dataset>", "benchmark file: .jsonl, .json, .parquet or .tsv")
    .addOption(new Option("--format <format>", "dataset format (default: detected from the file)").choices(["auto", ...FORMATS]).default("auto"))
    .option("--limit <n>", "evaluate only the first N items", int("--limit", 1))
    .option("--concurrency <n>", "items in flight at once (keeps a vLLM server busy; search calls stay within their providers' limits)", int("--concurrency", 1), 4)
    .option("--judge-url <url>", "OpenAI-compatible endpoint of the LLM judge for open answers (env LOUPE_JUDGE_URL; without one, exact match / containment)")
    .option("--judge-model <name>", "judge model name (env LOUPE_JUDGE_MODEL; default: the first model the endpoint lists)")
    .option("--judge-api-key <key>", "judge API key (env LOUPE_JUDGE_API_KEY or OPENAI_API_KEY)")
    .option("--no-judge", "score open answers by exact match / containment even when LOUPE_JUDGE_URL is set")
    .option("--out <dir>", "run directory (default <data-dir>/runs/<dataset>-<time>)")
    .option("--resume", "continue the run in --out (default: this dataset's latest run): finished items are kept, the rest continue from their checkpoints; flags left out take the run's recorded values, different ones are refused")
    .option("--images <dir>", "another folder to look for the dataset's relative image paths in")
    .addOption(new Option("--lang <lang>", "CSVQA TSV: question language (default en)").choices(["en", "zh"]))
    .option("--model-url <url>", `model server base URL (env ${ENV_VARS.modelUrl}; default http://localhost:8000/v1)`)
    .option("--model <name>", `model name (env ${ENV_VARS.model})`)
    .option("--api-key <key>", "model server API key (env LOUPE_API_KEY or OPENAI_API_KEY)")
    .addOption(new Option("--dialect <dialect>", `tools or tags (env ${ENV_VARS.dialect}; default tools)`).choices(["tools", "tags"]))
    .option("--plan", `R1V4 Plan mode: an up-front plan per item (env ${ENV_VARS.plan})`)
    .option("--max-tool-calls <n>", `tool-call budget per item (env ${ENV_VARS.maxToolCalls}; default 24)`, int("--max-tool-calls", 0))
    .option("--max-turns <n>", `model-turn budget per item (env ${ENV_VARS.maxTurns}; default 40)`, int("--max-turns", 1))
    .option("--temperature <t>", `sampling temperature (env ${ENV_VARS.temperature}; default 0.2, as R1V4's evaluation)`, num("--temperature"))
    .option("--max-tokens <n>", `most tokens per model turn (env ${ENV_VARS.maxTokens}; default 4096)`, int("--max-tokens", 16))
    .option("--timeout-ms <ms>", `time limit per model request (env ${ENV_VARS.timeoutMs})`, int("--timeout-ms", 100))
    .option("--retries <n>", `retries of a failed model request (env ${ENV_VARS.retries})`, int("--retries", 0))
    .option("--data-dir <dir>", `checkpoints, images, search and judge caches (env ${ENV_VARS.dataDir}; default .loupe)`)
    .option("--no-report", "do not write report.html")
    .option("--json", "print summary.json on stdout instead of the table")
    .option("-q, --quiet", "no progress bar")
    .addHelpText(
      "after",
      `
Formats: ${FORMATS.join(", ")} (auto-detected from the file's extension and fields).
Open answers: only the text inside <answer>…</answer> is judged (no tag = wrong); the judge answers
"correct: yes|no" with its reasoning, and verdicts are cached in <data-dir>/judge-cache.sqlite.
Multiple choice: the option letter is extracted (A–E, \\boxed{}).

Examples:
  loupe eval bench/mmsearch.jsonl --judge-url https://api.openai.com/v1 --judge-model o3-mini --concurrency 8
  loupe eval vstar.tsv --limit 50 --out runs/vstar-qwen3
  loupe eval vstar.tsv --out runs/vstar-qwen3 --resume     # after a crash: finished items are not rerun`,
    )
    .action(async (dataset: string, opts: Record<string, unknown>) => {
      // With --resume, what the command line leaves out is what the run recorded (not the environment),
      // so a bare --resume continues the run as it was started; runEval refuses explicit differences.
      const settingsWith = (recorded?: RunManifest) =>
        resolveConfig({
          modelUrl: opts.modelUrl ?? recorded?.model.url,
          model: opts.model ?? recorded?.model.name,
          dialect: opts.dialect ?? recorded?.dialect,
          plan: opts.plan ? true : recorded?.plan,
          maxToolCalls: opts.maxToolCalls ?? recorded?.maxToolCalls,
          maxTurns: opts.maxTurns ?? recorded?.maxTurns,
          temperature: opts.temperature ?? recorded?.temperature,
          maxTokens: opts.maxTokens,
          timeoutMs: opts.timeoutMs,
          retries: opts.retries,
          dataDir: opts.dataDir ?? recorded?.dataDir,
          // A benchmark runs unattended: no pauses for human approval, whatever the environment says.
          approvePlan: false,
          approveSearch: false,
          approveWebVisit: false,
        });
      let settings = settingsWith();
      let out = opts.out as string | undefined;
      if (opts.resume && !out) {
        out = latestRunOf(settings.dataDir, dataset);
        if (!out) throw new InvalidArgumentError(`no earlier run of ${dataset} under ${join(resolve(settings.dataDir), "runs")}; give its directory with --out`);
      }
      out ??= defaultRunDir(settings.dataDir, dataset);
      const recorded = opts.resume && existsSync(join(out, MANIFEST_FILE)) ? readManifest(out) : undefined;
      if (recorded) settings = settingsWith(recorded);
      const secrets = resolveSecrets({ apiKey: opts.apiKey as string | undefined });
      const judgeUrl =
        opts.judge === false ? undefined : ((opts.judgeUrl as string | undefined) ?? (recorded ? recorded.judge?.url : process.env.LOUPE_JUDGE_URL || undefined));
      if (judgeUrl && !/^https?:\/\//.test(judgeUrl)) throw new InvalidArgumentError(`--judge-url must be an http(s) URL, got "${judgeUrl}"`);
      const judgeModel = (opts.judgeModel as string | undefined) ?? (recorded ? recorded.judge?.model : process.env.LOUPE_JUDGE_MODEL || undefined);
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      try {
        const outcome = await runEval({
          dataset,
          format: opts.format as DatasetFormat | "auto",
          limit: opts.limit as number | undefined,
          lang: opts.lang as "en" | "zh" | undefined,
          concurrency: opts.concurrency as number,
          judge: judgeUrl
            ? {
                url: judgeUrl,
                model: judgeModel,
                apiKey: (opts.judgeApiKey as string | undefined) ?? process.env.LOUPE_JUDGE_API_KEY ?? process.env.OPENAI_API_KEY,
              }
            : undefined,
          out,
          resume: Boolean(opts.resume),
          settings,
          secrets,
          imagesDir: opts.images as string | undefined,
          progress: !opts.quiet,
          report: opts.report !== false,
          signal: controller.signal,
          log: opts.quiet ? () => {} : undefined,
        });
        process.stdout.write(opts.json ? `${JSON.stringify(outcome.summary)}\n` : `${formatSummary(outcome.summary)}\n`);
        if (outcome.summary.errors.count && !opts.quiet) {
          process.stderr.write(`loupe eval: ${outcome.summary.errors.count} items failed (see results.jsonl); rerun with --out ${outcome.dir} --resume to retry them\n`);
        }
      } catch (err) {
        throw err instanceof ResumeMismatchError ? new UsageError(err.message) : err;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });

  program
    .command("report")
    .description("Rebuild report.html of an evaluation run from its results and checkpointed trajectories.")
    .argument("<run-dir>", "the --out directory of a loupe eval run")
    .option("--data-dir <dir>", "where the run's threads and images are (default: the data directory the run used)")
    .action(async (runDir: string, opts: { dataDir?: string }) => {
      const manifest = readManifest(runDir);
      const path = await withStores(readerSettings(opts.dataDir ?? manifest.dataDir), (s) => writeReport(resolve(runDir), s));
      process.stdout.write(`${path}\n`);
    });

  program
    .command("compare")
    .description("Compare two evaluation runs item by item (two models, two configurations).")
    .argument("<run-a>", "first run directory")
    .argument("<run-b>", "second run directory")
    .option("--json", "print the comparison as JSON")
    .action((a: string, b: string, opts: { json?: boolean }) => {
      const comparison = compareRuns(resolve(a), resolve(b));
      process.stdout.write(opts.json ? `${JSON.stringify(comparison)}\n` : `${formatComparison(comparison)}\n`);
    });

  program
    .command("export")
    .description("Export trajectories as fine-tuning data (JSONL, images as files beside it), optionally keeping only R1V4-consistent ones.")
    .argument("[run-dir]", "an evaluation run directory (its verdicts drive the correctness filter)")
    .option("--threads <ids...>", "export these thread ids instead of a run (space- or comma-separated)")
    .addOption(new Option("--format <format>", "r1v4 (tag protocol), messages (ms-swift), sharegpt (LLaMA-Factory) or plan (planner data)").choices([...EXPORT_FORMATS]).default("r1v4"))
    .addOption(new Option("--filter <filter>", "consistent: R1V4's stepwise consistency filters").choices(["consistent", "none"]).default("none"))
    .requiredOption("--out <file.jsonl>", "output JSONL file")
    .option("--check-model-url <url>", "with --filter consistent: a vision model that checks each sub-image against the thinking after it")
    .option("--check-model <name>", "check model name (default: the first the endpoint lists)")
    .option("--check-api-key <key>", "check model API key (env LOUPE_CHECK_API_KEY)")
    .option("--data-dir <dir>", "where the threads and images are (default: the run's data directory, else .loupe)")
    .action(async (runDir: string | undefined, opts: Record<string, unknown>) => {
      const threads = ((opts.threads as string[] | undefined) ?? []).flatMap(commaList);
      if (!runDir && !threads.length) throw new InvalidArgumentError("give a run directory or --threads ID...");
      if (runDir && threads.length) throw new InvalidArgumentError("give either a run directory or --threads, not both");
      const dataDir = (opts.dataDir as string | undefined) ?? (runDir ? readManifest(runDir).dataDir : undefined);
      const settings = dataDir ? readerSettings(dataDir) : resolveConfig({ searchCache: "live" });
      const filter = opts.filter as "consistent" | "none";
      const report = await withStores(settings, async (s) => {
        const checkModel = opts.checkModelUrl
          ? new OpenAICompatibleModel({
              config: LoupeConfigSchema.parse({ ...settings, modelUrl: opts.checkModelUrl, model: opts.checkModel, temperature: 0, maxTokens: 64, stream: false }),
              apiKey: (opts.checkApiKey as string | undefined) ?? process.env.LOUPE_CHECK_API_KEY,
              images: s.images,
            })
          : undefined;
        return exportTrajectories({
          runDir: runDir ? resolve(runDir) : undefined,
          threads: runDir ? undefined : threads,
          format: opts.format as ExportFormat,
          filter,
          out: opts.out as string,
          reader: s.reader,
          images: s.images,
          checkModel,
        });
      });
      process.stderr.write(`${formatExportReport(report, filter)}\n`);
    });
}
