// The `loupe` command line: `loupe ask` runs the agent on a question and images against a model server.
import { randomUUID } from "node:crypto";
import { Command, InvalidArgumentError, Option } from "commander";
import { createAgent } from "../../graphs/agent.js";
import type { AgentEvent } from "../core/events.js";
import { openCheckpointer } from "../runtime/checkpointer.js";
import { ConfigError, ENV_VARS, loadDotEnv, resolveConfig, resolveSecrets, type LoupeConfig } from "../core/config.js";
import { corpusPath, createDeps } from "../runtime/deps.js";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { runIndexCommand } from "../../tools/search/corpus.js";
import { ImageInputError } from "../core/images.js";
import { ModelServerError } from "../core/model.js";
import { int, num } from "./args.js";
import { ask, RunError, RunPaused, type AskResult } from "../run/ask.js";
import { continueCommand, decisionFromFlags, EXIT_PAUSED, reportPause, UsageError } from "./review.js";
import { runServeImages } from "./serve-images.js";
import { registerEvalCommands } from "./eval.js";


function collect(value: string, previous: string[] = []) {
  return [...previous, value];
}

function shortArgs(args: Record<string, unknown> | null): string {
  if (!args) return "";
  const text = Object.entries(args)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return text.length > 90 ? `${text.slice(0, 87)}...` : text;
}

function progressPrinter(write: (line: string) => void) {
  let step = 0;
  return (event: AgentEvent) => {
    switch (event.event) {
      case "model_end":
        if (event.kind === "malformed") write(`  turn ${event.turn + 1}: model reply could not be used (${event.ms} ms); told the model why`);
        break;
      case "model_retry":
        write(`  model server ${event.url}: ${event.error}; retrying (attempt ${event.attempt + 1})`);
        break;
      case "tool_end": {
        step++;
        const made = event.images?.length ? ` -> ${event.images.map((i) => `${i.width}x${i.height}`).join(", ")}` : "";
        const status = event.ok ? "" : `  FAILED: ${event.summary.replace(/^Error: /, "").slice(0, 120)}`;
        write(`  [${step}] ${event.name} ${shortArgs(event.arguments)}${made}  (${event.ms} ms)${status}`);
        break;
      }
      default:
        break;
    }
  };
}

function printResult(result: AskResult, json: boolean) {
  if (json) {
    const { reason: _reason, ...out } = result;
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  process.stdout.write(`${result.answer}\n`);
  const urls = result.citations.filter((c) => c.type === "url");
  if (urls.length) {
    process.stdout.write(`\nSources:\n${urls.map((c) => `  ${(c as { url: string }).url}`).join("\n")}\n`);
  }
}

function oneLine(err: unknown): string {
  if (err instanceof ModelServerError || err instanceof ImageInputError || err instanceof ConfigError || err instanceof RunError) {
    return err.message;
  }
  const e = err as Error;
  return (e?.message ?? String(err)).split("\n")[0]!;
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

  program
    .command("ask")
    .description("Answer a question about one or more images. Progress goes to stderr, the answer to stdout.")
    .argument("[question...]", "the question (omit with --resume)")
    .option("-i, --image <path|url>", "input image: a file path, an http(s) URL or a data: URL (repeatable)", collect, [])
    .option("--model-url <url>", `model server base URL (env ${ENV_VARS.modelUrl}; default http://localhost:8000/v1)`)
    .option("--model <name>", `model name (env ${ENV_VARS.model}; default: first id from GET {model-url}/models)`)
    .option("--api-key <key>", "model server API key (env LOUPE_API_KEY or OPENAI_API_KEY)")
    .addOption(new Option("--dialect <dialect>", `tools (OpenAI function calling) or tags (R1V4 text protocol) (env ${ENV_VARS.dialect}; default tools)`).choices(["tools", "tags"]))
    .option("--max-tool-calls <n>", `tool-call budget (env ${ENV_VARS.maxToolCalls}; default 24)`, int("--max-tool-calls"))
    .option("--max-turns <n>", `model-turn budget (env ${ENV_VARS.maxTurns}; default 40)`, int("--max-turns"))
    .option("--max-pixels <n>", `largest image sent to the model, in pixels (env ${ENV_VARS.maxPixels}; default 1048576)`, int("--max-pixels"))
    .addOption(new Option("--coords <convention>", `default box convention for image tools (env ${ENV_VARS.coords}; default rel1000)`).choices(["rel1000", "norm1", "pixel"]))
    .option("--plan", `ask for an up-front plan first (R1V4 Plan mode; env ${ENV_VARS.plan})`)
    .option("--temperature <t>", `sampling temperature (env ${ENV_VARS.temperature}; default 0.2)`, num("--temperature"))
    .option("--max-tokens <n>", `most tokens per model turn (env ${ENV_VARS.maxTokens}; default 4096)`, int("--max-tokens"))
    .option("--timeout-ms <ms>", `time limit per model request (env ${ENV_VARS.timeoutMs}; default 300000)`, int("--timeout-ms"))
    .option("--retries <n>", `retries of a failed model request (env ${ENV_VARS.retries}; default 4)`, int("--retries"))
    .option("--no-stream", `do not stream model replies (env ${ENV_VARS.stream}=false)`)
    .option("--thread <id>", "thread id for this run (default: a new UUID); printed with --json")
    .option("--resume <id>", "continue an interrupted, failed or paused run from its last checkpoint")
    .option("--approve", "with --resume: approve the plan or the calls a paused run waits for")
    .option("--deny [reason]", "with --resume: reject the plan (the agent works without one) or deny the calls (the model is told why)")
    .option("--edit-plan <file>", "with --resume: follow this plan (a JSON array of steps) instead of the proposed one")
    .option("--approve-plan", `pause to review the up-front plan before the agent acts (implies --plan; env ${ENV_VARS.approvePlan})`)
    .option("--approve-search", `pause before each text_search or image_search call until you approve it (env ${ENV_VARS.approveSearch})`)
    .option("--approve-web-visit", `pause before each web_visit call until you approve it (env ${ENV_VARS.approveWebVisit})`)
    .option("--data-dir <dir>", `where checkpoints and images are kept (env ${ENV_VARS.dataDir}; default .loupe); with ${ENV_VARS.databaseUrl} they are kept in Postgres`)
    .option("--json", "print one JSON object on stdout: threadId, answer, citations, toolCalls, steps, images, usage")
    .option("-q, --quiet", "no progress on stderr")
    .addHelpText(
      "after",
      `
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

Exit codes: 0 answered, 1 the run failed, 2 usage or configuration error, ${EXIT_PAUSED} paused for
your review (the message says how to continue).`,
    )
    .action(async (words: string[], opts: Record<string, unknown>, command: Command) => {
      const question = words.join(" ").trim();
      if (!question && !opts.resume) {
        throw new UsageError("give a question, or --resume ID to continue a run");
      }
      const decision = decisionFromFlags(opts);
      const settings: LoupeConfig = resolveConfig({
        modelUrl: opts.modelUrl,
        model: opts.model,
        dialect: opts.dialect,
        maxToolCalls: opts.maxToolCalls,
        maxTurns: opts.maxTurns,
        maxPixels: opts.maxPixels,
        coords: opts.coords,
        plan: opts.plan ? true : undefined,
        approvePlan: opts.approvePlan ? true : undefined,
        approveSearch: opts.approveSearch ? true : undefined,
        approveWebVisit: opts.approveWebVisit ? true : undefined,
        temperature: opts.temperature,
        maxTokens: opts.maxTokens,
        timeoutMs: opts.timeoutMs,
        retries: opts.retries,
        stream: opts.stream === false ? false : undefined,
        dataDir: opts.dataDir,
      });
      const secrets = resolveSecrets({ apiKey: opts.apiKey as string | undefined });
      const deps = createDeps(settings, secrets);
      const checkpointer = await openCheckpointer(settings, deps.database).catch(async (err) => {
        await deps.close();
        throw err;
      });
      const agent = createAgent({ deps, checkpointer: checkpointer.saver });
      const write = (line: string) => process.stderr.write(`${line}\n`);
      const controller = new AbortController();
      const onSignal = () => controller.abort(new RunError("interrupted"));
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      const threadId = (opts.resume ?? opts.thread ?? randomUUID()) as string;
      try {
        if (!opts.quiet && opts.resume) write(`loupe: resuming thread ${threadId}`);
        if (!opts.quiet && (secrets.serperApiKey || secrets.serpapiApiKey) && !settings.publicImageBaseUrl && settings.searchCache !== "replay") {
          write("loupe: note: reverse image search (Lens) needs LOUPE_PUBLIC_IMAGE_BASE_URL, where `loupe serve-images` is reachable from the internet; until then image_search reports it to the model");
        }
        const result = await ask(agent, {
          settings,
          question,
          images: opts.image as string[],
          threadId,
          resume: opts.resume as string | undefined,
          decision,
          onEvent: opts.quiet ? undefined : progressPrinter(write),
          signal: controller.signal,
        });
        printResult(result, Boolean(opts.json));
        if (!opts.quiet && result.reason === "budget") write("loupe: the budget ran out; this is the model's best answer so far");
      } catch (err) {
        if (err instanceof RunPaused) {
          process.exitCode = reportPause(err, command, settings, Boolean(opts.json));
          return;
        }
        const threadHint =
          err instanceof ModelServerError || controller.signal.aborted
            ? ` (everything done so far is saved; continue with: ${continueCommand(command, threadId)})`
            : "";
        throw new RunError(`${oneLine(err)}${threadHint}`);
      } finally {
        await checkpointer.close();
        await deps.close();
      }
    });
  program
    .command("index")
    .description("Build or update a local search index (SQLite FTS5) over a folder of .md, .txt, .html and .pdf files; loupe ask then searches it with no API key.")
    .argument("<dir>", "folder to index (recursively)")
    .option("--corpus <path>", `index file (env ${ENV_VARS.corpus}; default <data-dir>/corpus.sqlite)`)
    .option("--data-dir <dir>", `data directory (env ${ENV_VARS.dataDir}; default .loupe)`)
    .action(async (dir: string, opts: { corpus?: string; dataDir?: string }) => {
      const settings = resolveConfig({ corpus: opts.corpus, dataDir: opts.dataDir });
      const target = corpusPath(settings);
      mkdirSync(dirname(target), { recursive: true });
      const code = await runIndexCommand(dir, target, (line) => process.stderr.write(`${line}\n`));
      if (code !== 0) process.exitCode = code;
    });
  program
    .command("serve-images")
    .description(
      "Serve the image store's images at signed, unguessable URLs (/images/<sha256>-<token>.<ext>). Reverse image search (Serper/SerpAPI Lens) downloads images from here: make it reachable at LOUPE_PUBLIC_IMAGE_BASE_URL. Runs until interrupted.",
    )
    .addOption(new Option("--port <n>", "port to listen on").default(8787).argParser(int("--port")))
    .option("--host <host>", "interface to listen on (0.0.0.0 for all)", "127.0.0.1")
    .option("--data-dir <dir>", `data directory holding the image store (env ${ENV_VARS.dataDir}; default .loupe)`)
    .action(async (opts: { port: number; host: string; dataDir?: string }) => {
      const settings = resolveConfig({ dataDir: opts.dataDir });
      const served = await runServeImages(settings, resolveSecrets(), { port: opts.port, host: opts.host }, (line) => process.stderr.write(`${line}\n`));
      await new Promise<void>((resolveStop) => {
        const stop = () => resolveStop();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      await served.close();
    });
  registerEvalCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  loadDotEnv();
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return 0;
    if (e.code?.startsWith("commander.")) return e.exitCode && e.exitCode !== 0 ? 2 : 0;
    process.stderr.write(`loupe: ${oneLine(err)}\n`);
    return err instanceof UsageError || err instanceof ConfigError ? 2 : 1;
  }
}
