// `loupe ask`: runs (or resumes) one question through the agent; progress goes to stderr, the answer to stdout.
import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import type { AgentEvent } from "../core/events.js";
import { inputImageCountProblem, resolveConfig, resolveSecrets, type Coords, type LoupeConfig, type LoupeSecrets } from "../core/config.js";
import type { FinalAnswer } from "../core/state.js";
import { terminalText } from "../core/terminal.js";
import type { AskResult } from "../run/ask.js";
import { EXIT_NO_ANSWER, EXIT_OK, oneLine, UsageError } from "./errors.js";
import { checkThreadId, continueCommand, decisionFromFlags, reportPause, type ReviewFlags } from "./review.js";
import { codeToolNotes, settingsFromSharedFlags, type RunFlags } from "./run-flags.js";
import { abortOnInterrupt } from "./signals.js";

/** `loupe ask`'s flags as commander parses them. */
export type AskFlags = RunFlags &
  ReviewFlags & {
    image: string[];
    maxPixels?: number;
    coords?: Coords;
    /** false with --no-stream; commander's default is true, which must not override LOUPE_STREAM. */
    stream?: boolean;
    thread?: string;
    approvePlan?: true;
    approveSearch?: true;
    approveWebVisit?: true;
    json?: true;
    quiet?: true;
  };

type Log = (line: string) => void;

export async function runAsk(words: string[], flags: AskFlags, command: Command): Promise<void> {
  const question = words.join(" ").trim();
  if (!question && !flags.resume) throw new UsageError("give a question, or --resume ID to continue a run");
  if (flags.thread !== undefined) checkThreadId("--thread", flags.thread);
  if (flags.resume !== undefined) checkThreadId("--resume", flags.resume);
  const decision = decisionFromFlags(flags);
  const settings = resolveConfig(askSettings(flags));
  if (!flags.resume) checkImageCount(flags.image, settings);
  const secrets = resolveSecrets({ apiKey: flags.apiKey });
  // The run's modules (the graph, the model client, the search tools) load while the code sandbox
  // is probed in its child process, so the two overlap before the first model request.
  const loading = Promise.all([import("../run/ask.js"), import("../run/session.js"), import("../core/model.js")]);
  loading.catch(() => undefined); // awaited below: this only keeps a failed probe from leaving it unhandled
  // A new run checks the code sandbox before any model call: required and missing is a usage error (exit 2).
  const notes = flags.resume ? [] : await codeToolNotes(settings);
  const [{ ask, RunError, RunPaused }, { withAgent }, { ModelServerError }] = await loading;
  const threadId = flags.resume ?? flags.thread ?? randomUUID();
  const log: Log | undefined = flags.quiet ? undefined : (line) => process.stderr.write(`${terminalText(line)}\n`);
  if (log) announce(log, { command, threadId, resumed: Boolean(flags.resume), settings, secrets, notes });
  await withAgent(settings, secrets, async ({ agent }) => {
    const interrupt = abortOnInterrupt(() => new RunError("interrupted"));
    try {
      const result = await ask(agent, {
        settings,
        question,
        images: flags.image,
        threadId,
        resume: flags.resume,
        decision,
        onEvent: log && progressPrinter(log),
        signal: interrupt.signal,
      });
      printResult(notes.length ? { ...result, notes } : result, Boolean(flags.json));
      process.exitCode = reportEnding(result.reason, log);
    } catch (err) {
      if (err instanceof RunPaused) {
        process.exitCode = reportPause(err, command, settings, Boolean(flags.json));
        return;
      }
      // After a model-server outage or Ctrl-C the checkpoints hold everything so far: say how to continue.
      // Any other error keeps its name, which decides the exit code (a busy thread is not a failed run).
      if (!(err instanceof ModelServerError || interrupt.signal.aborted)) throw err;
      throw new RunError(`${oneLine(err)} (everything done so far is saved; continue with: ${continueCommand(command, threadId)})`);
    } finally {
      interrupt.stop();
    }
  });
}

/** The settings from ask's flags; a flag left out leaves the setting to the environment and defaults. */
function askSettings(flags: AskFlags): Partial<Record<keyof LoupeConfig, unknown>> {
  return {
    ...settingsFromSharedFlags(flags),
    maxPixels: flags.maxPixels,
    coords: flags.coords,
    approvePlan: flags.approvePlan,
    approveSearch: flags.approveSearch,
    approveWebVisit: flags.approveWebVisit,
    stream: flags.stream === false ? false : undefined,
  };
}

/** Too many input images is a usage error, found before the run starts (the graph refuses them too, as a failed run). */
function checkImageCount(images: string[], settings: LoupeConfig): void {
  const tooMany = inputImageCountProblem(images.length, settings.maxImagesInContext);
  if (tooMany) throw new UsageError(tooMany);
}

interface Start {
  command: Command;
  threadId: string;
  resumed: boolean;
  settings: LoupeConfig;
  secrets: LoupeSecrets;
  /** Said once before the run (e.g. the code tool is not offered, and why). */
  notes: string[];
}

/**
 * The lines before the run starts, the first naming its thread (so even a run killed at once can be
 * resumed), then a search setup that cannot work yet.
 */
function announce(log: Log, { command, threadId, resumed, settings, secrets, notes }: Start): void {
  log(resumed ? `loupe: resuming thread ${threadId}` : `loupe: thread ${threadId} (resume with: ${continueCommand(command, threadId)})`);
  for (const note of notes) log(`loupe: note: ${note}`);
  if ((secrets.serperApiKey || secrets.serpapiApiKey) && !settings.publicImageBaseUrl && settings.searchCache !== "replay") {
    log("loupe: note: reverse image search (Lens) needs LOUPE_PUBLIC_IMAGE_BASE_URL, where `loupe serve-images` is reachable from the internet; until then image_search reports it to the model");
  }
}

function shortArgs(args: Record<string, unknown> | null): string {
  if (!args) return "";
  // Cleaned before the cut, which could otherwise leave half an escape sequence.
  const text = Object.entries(args)
    .map(([k, v]) => `${k}=${typeof v === "string" ? terminalText(v) : JSON.stringify(v)}`)
    .join(" ");
  return text.length > 90 ? `${text.slice(0, 87)}...` : text;
}

/** One progress line per tool call (numbered), per retried model request and per unusable model reply. */
function progressPrinter(log: Log): (event: AgentEvent) => void {
  let step = 0;
  return (event: AgentEvent) => {
    switch (event.event) {
      case "model_end":
        if (event.kind === "malformed") log(`  turn ${event.turn + 1}: model reply could not be used (${event.ms} ms); told the model why`);
        break;
      case "model_retry":
        log(`  model server ${event.url}: ${event.error}; retrying (attempt ${event.attempt + 1})`);
        break;
      case "tool_end": {
        step++;
        const made = event.images?.length ? ` -> ${event.images.map((i) => `${i.width}x${i.height}`).join(", ")}` : "";
        const status = event.ok ? "" : `  FAILED: ${event.summary.replace(/^Error: /, "").slice(0, 120)}`;
        log(`  [${step}] ${event.name} ${shortArgs(event.arguments)}${made}  (${event.ms} ms)${status}`);
        break;
      }
      default:
        break;
    }
  };
}

/** The answer and its sources on stdout: the exact JSON with --json (with `notes` when there were any), else text cleaned for the terminal. */
function printResult(result: AskResult & { notes?: string[] }, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  process.stdout.write(`${terminalText(result.answer)}\n`);
  const urls = result.citations.flatMap((c) => (c.type === "url" ? [c.url] : []));
  if (urls.length) process.stdout.write(`\nSources:\n${urls.map((url) => `  ${terminalText(url)}`).join("\n")}\n`);
}

/** What a run's ending adds once the answer is out: a note when a budget ran out, and the exit code. */
function reportEnding(reason: FinalAnswer["reason"], log: Log | undefined): number {
  if (reason === "no_answer") {
    log?.(`loupe: the budget ran out and the model gave no answer (exit code ${EXIT_NO_ANSWER})`);
    return EXIT_NO_ANSWER;
  }
  if (reason === "budget") log?.("loupe: the budget ran out; this is the model's best answer so far");
  return EXIT_OK;
}
