// The `loupe` command line: every command's flags and help, and `main`, which runs one. A command's code
// is imported only when it runs, so `loupe --help` and the light commands do not load LangGraph, the model client or sharp.
import { Command, Option } from "commander";
import { COORDS, ENV_VARS, loadDotEnv } from "../core/config.js";
import { terminalText } from "../core/terminal.js";
import type { ExportFormat } from "../eval/export.js";
import { FORMATS } from "../eval/items.js";
import { collect, int } from "./args.js";
import type { AskFlags } from "./ask.js";
import { EXIT_FAILED, EXIT_NO_ANSWER, EXIT_OK, EXIT_PAUSED, EXIT_USAGE, exitCodeFor, oneLine } from "./errors.js";
import type { EvalFlags } from "./eval.js";
import type { ExportFlags } from "./export.js";
import { addDataDirFlag, addRunFlags, checkedBySchema } from "./run-flags.js";
import type { ServeImagesFlags } from "./serve-images.js";

/**
 * `loupe export --format`'s choices in the order --help lists them. Written out rather than imported
 * (EXPORT_FORMATS), as src/eval/export.ts loads the image tools; `satisfies` keeps the two lists the same.
 */
const EXPORT_FORMAT_CHOICES = Object.keys({ r1v4: true, sharegpt: true, messages: true, plan: true } satisfies Record<ExportFormat, true>);

const ASK_HELP_AFTER = `
Environment: TAVILY_API_KEY enables web search (text_search, web_visit); without it the
agent uses image tools only. ${ENV_VARS.tavilyUrl} overrides Tavily's base URL.
${ENV_VARS.databaseUrl}=postgres://user:pass@host/db keeps threads, images and the search cache in
Postgres, shared by every worker. A .env file in the working directory is read too. Flags win
over the environment.

Examples:
  loupe ask --image photo.jpg "What is written on the small sign?"
  loupe ask --model-url http://gpu-box:8000/v1 --dialect tags -i a.png "Where was this taken?"
  loupe ask --resume 3f1c...   # after a crash or a model-server outage
  loupe ask --approve-web-visit -i a.png "Who made this?"   # pauses before each page visit
  loupe ask --resume 3f1c... --approve   # continue a paused run

Exit codes: ${EXIT_OK} answered, ${EXIT_FAILED} the run failed, ${EXIT_USAGE} usage or configuration error, ${EXIT_PAUSED} paused for
your review (the message says how to continue), ${EXIT_NO_ANSWER} a budget ran out and the model gave no answer.`;

const EVAL_HELP_AFTER = `
Formats: ${FORMATS.join(", ")} (auto-detected from the file's extension and fields).
Open answers: only the text inside <answer>…</answer> is judged (no tag = wrong); the judge answers
"correct: yes|no" with its reasoning, and verdicts are cached in <data-dir>/judge-cache.sqlite.
Multiple choice: the option letter is extracted (A–E, \\boxed{}).

Examples:
  loupe eval bench/mmsearch.jsonl --judge-url https://api.openai.com/v1 --judge-model o3-mini --concurrency 8
  loupe eval vstar.tsv --limit 50 --out runs/vstar-qwen3
  loupe eval vstar.tsv --out runs/vstar-qwen3 --resume     # after a crash: finished items are not rerun`;

function declareAsk(program: Command): void {
  const command = program
    .command("ask")
    .description("Answer a question about one or more images. Progress goes to stderr, the answer to stdout.")
    .argument("[question...]", "the question (omit with --resume)")
    .option("-i, --image <path|url>", "input image: a file path, an http(s) URL or a data: URL (repeatable)", collect, []);
  addRunFlags(command, { for: "ask" })
    .option("--max-pixels <n>", `largest image sent to the model, in pixels (env ${ENV_VARS.maxPixels}; default 1048576)`, checkedBySchema("maxPixels"))
    .addOption(new Option("--coords <convention>", `default box convention for image tools (env ${ENV_VARS.coords}; default rel1000)`).choices(COORDS))
    .option("--no-stream", `do not stream model replies (env ${ENV_VARS.stream}=false)`)
    .option("--thread <id>", "thread id for this run, a name without /, \\, .. or control characters (default: a new UUID); the first line on stderr names it")
    .option("--resume <id>", "continue an interrupted, failed or paused run from its last checkpoint")
    .option("--approve", "with --resume: approve the plan or the calls a paused run waits for")
    .option("--deny [reason]", "with --resume: reject the plan (the agent works without one) or deny the calls (the model is told why)")
    .option("--edit-plan <file>", "with --resume: follow this plan (a JSON array of steps) instead of the proposed one")
    .option("--approve-plan", `pause to review the up-front plan before the agent acts (implies --plan; env ${ENV_VARS.approvePlan})`)
    .option("--approve-search", `pause before each text_search or image_search call until you approve it (env ${ENV_VARS.approveSearch})`)
    .option("--approve-web-visit", `pause before each web_visit call until you approve it (env ${ENV_VARS.approveWebVisit})`);
  addDataDirFlag(command, { for: "ask" })
    .option("--json", "print one JSON object on stdout: threadId, answer, citations, toolCalls, steps, images, usage, reason")
    .option("-q, --quiet", "no progress on stderr")
    .addHelpText("after", ASK_HELP_AFTER)
    .action(async (words: string[], flags: AskFlags, self: Command) => {
      const { runAsk } = await import("./ask.js");
      await runAsk(words, flags, self);
    });
}

function declareIndex(program: Command): void {
  program
    .command("index")
    .description("Build or update a local search index (SQLite FTS5) over a folder of .md, .txt, .html and .pdf files; loupe ask then searches it with no API key.")
    .argument("<dir>", "folder to index (recursively)")
    .option("--corpus <path>", `index file (env ${ENV_VARS.corpus}; default <data-dir>/corpus.sqlite)`)
    .option("--data-dir <dir>", `data directory (env ${ENV_VARS.dataDir}; default .loupe)`)
    .action(async (dir: string, flags: { corpus?: string; dataDir?: string }) => {
      const { runIndex } = await import("./index-corpus.js");
      await runIndex(dir, flags);
    });
}

function declareServeImages(program: Command): void {
  program
    .command("serve-images")
    .description(
      "Serve the image store's images at signed, unguessable URLs (/images/<sha256>-<token>.<ext>). Reverse image search (Serper/SerpAPI Lens) downloads images from here: make it reachable at LOUPE_PUBLIC_IMAGE_BASE_URL. Runs until interrupted.",
    )
    .addOption(new Option("--port <n>", "port to listen on").default(8787).argParser(int("--port")))
    .option("--host <host>", "interface to listen on (0.0.0.0 for all)", "127.0.0.1")
    .option("--data-dir <dir>", `data directory holding the image store (env ${ENV_VARS.dataDir}; default .loupe)`)
    .action(async (flags: ServeImagesFlags) => {
      const { runServeImages } = await import("./serve-images.js");
      await runServeImages(flags);
    });
}

function declareEval(program: Command): void {
  const command = program
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
    .addOption(new Option("--lang <lang>", "CSVQA TSV: question language (default en)").choices(["en", "zh"]));
  addRunFlags(command, { for: "eval" });
  addDataDirFlag(command, { for: "eval" })
    .option("--no-report", "do not write report.html")
    .option("--json", "print summary.json on stdout instead of the table")
    .option("-q, --quiet", "no progress bar")
    .addHelpText("after", EVAL_HELP_AFTER)
    .action(async (dataset: string, flags: EvalFlags) => {
      const { runEvalCommand } = await import("./eval.js");
      await runEvalCommand(dataset, flags);
    });
}

function declareReport(program: Command): void {
  program
    .command("report")
    .description("Rebuild report.html of an evaluation run from its results and checkpointed trajectories.")
    .argument("<run-dir>", "the --out directory of a loupe eval run")
    .option("--data-dir <dir>", "where the run's threads and images are (default: the data directory the run used)")
    .action(async (runDir: string, flags: { dataDir?: string }) => {
      const { runReport } = await import("./report.js");
      await runReport(runDir, flags);
    });
}

function declareCompare(program: Command): void {
  program
    .command("compare")
    .description("Compare two evaluation runs item by item (two models, two configurations).")
    .argument("<run-a>", "first run directory")
    .argument("<run-b>", "second run directory")
    .option("--json", "print the comparison as JSON")
    .action(async (a: string, b: string, flags: { json?: boolean }) => {
      const { runCompare } = await import("./compare.js");
      runCompare(a, b, flags);
    });
}

function declareExport(program: Command): void {
  program
    .command("export")
    .description("Export trajectories as fine-tuning data (JSONL, images as files beside it), optionally keeping only R1V4-consistent ones.")
    .argument("[run-dir]", "an evaluation run directory (its verdicts drive the correctness filter)")
    .option("--threads <ids...>", "export these thread ids instead of a run (space- or comma-separated)")
    .addOption(new Option("--format <format>", "r1v4 (tag protocol), messages (ms-swift), sharegpt (LLaMA-Factory) or plan (Plan-mode data)").choices(EXPORT_FORMAT_CHOICES).default("r1v4"))
    .addOption(new Option("--filter <filter>", "consistent: R1V4's stepwise consistency filters").choices(["consistent", "none"]).default("none"))
    .requiredOption("--out <file.jsonl>", "output JSONL file")
    .option("--check-model-url <url>", "with --filter consistent: a vision model that checks each sub-image against the thinking after it")
    .option("--check-model <name>", "check model name (default: the first the endpoint lists)")
    .option("--check-api-key <key>", "check model API key (env LOUPE_CHECK_API_KEY)")
    .option("--data-dir <dir>", "where the threads and images are (default: the run's data directory, else .loupe)")
    .action(async (runDir: string | undefined, flags: ExportFlags) => {
      const { runExport } = await import("./export.js");
      await runExport(runDir, flags);
    });
}

export function buildProgram(): Command {
  const program = new Command();
  // Before the subcommands exist, so they inherit it: usage errors then reach main() (exit 2).
  program.exitOverride();
  program
    .name("loupe")
    .description("An agent that thinks with images and researches, on any OpenAI-compatible vision model (vLLM).")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ outputError: (str, write) => write(str) });
  for (const declare of [declareAsk, declareIndex, declareServeImages, declareEval, declareReport, declareCompare, declareExport]) declare(program);
  return program;
}

/** Runs `loupe` with these arguments (process.argv's shape) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  loadDotEnv();
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT_OK;
  } catch (err) {
    return exitCodeOf(err);
  }
}

/** The exit code for an error a command ended with; prints it unless commander already has. */
function exitCodeOf(err: unknown): number {
  const code = (err as { code?: string } | undefined)?.code;
  if (code === "commander.helpDisplayed" || code === "commander.version" || code === "commander.help") return EXIT_OK;
  if (code?.startsWith("commander.")) return (err as { exitCode?: number }).exitCode ? EXIT_USAGE : EXIT_OK;
  process.stderr.write(`loupe: ${terminalText(oneLine(err))}\n`);
  return exitCodeFor(err);
}
