// `loupe ask` and human-in-the-loop review: the decision flags, the message shown when a run pauses, and the exact commands to continue.
import { describeIssues } from "../core/issues.js";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { ApprovalDecisionSchema, type ApprovalDecision } from "../../nodes/approval.js";
import { formatPlan } from "../../nodes/first-turn.js";
import type { LoupeConfig } from "../core/config.js";
import { terminalText } from "../core/terminal.js";
import type { RunPaused } from "../run/ask.js";
import { EXIT_PAUSED, UsageError } from "./errors.js";

/** The review flags of `loupe ask` as commander parses them. */
export type ReviewFlags = { resume?: string; approve?: true; deny?: string | true; editPlan?: string };

const DECISION_FLAGS = { approve: "--approve", deny: "--deny", editPlan: "--edit-plan" } as const;

/** The decision given with --approve, --deny [reason] or --edit-plan FILE, if any. */
export function decisionFromFlags(flags: ReviewFlags): ApprovalDecision | undefined {
  const given = (Object.keys(DECISION_FLAGS) as Array<keyof typeof DECISION_FLAGS>).filter((key) => flags[key] !== undefined);
  const [first] = given;
  if (first === undefined) return undefined;
  if (given.length > 1) throw new UsageError("give only one of --approve, --deny and --edit-plan");
  if (!flags.resume) throw new UsageError(`${DECISION_FLAGS[first]} needs --resume ID (the paused thread)`);
  if (flags.approve) return { action: "approve" };
  if (flags.deny !== undefined) return typeof flags.deny === "string" ? { action: "deny", reason: flags.deny } : { action: "deny" };
  return { action: "edit", plan: readPlanFile(String(flags.editPlan)) };
}

/** Reads an edited plan: a JSON array of steps, or an object with `plan` (as the paused run wrote it). */
export function readPlanFile(path: string): NonNullable<ApprovalDecision["plan"]> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`--edit-plan ${path}: ${e.code === "ENOENT" ? "no such file" : `not valid JSON (${e.message})`}`);
  }
  const steps = Array.isArray(raw) ? raw : (raw as { plan?: unknown })?.plan;
  const parsed = ApprovalDecisionSchema.shape.plan.safeParse(steps);
  if (!parsed.success || !parsed.data) {
    const why = parsed.success
      ? "no plan in it"
      : describeIssues(parsed.error.issues, { path: (p) => (p.length ? `step ${Number(p[0]) + 1}${p.length > 1 ? ` ${p.slice(1).map(String).join(".")}` : ""}` : "plan") });
    throw new UsageError(`--edit-plan ${path}: ${why}. Expected a JSON array of 1 to 12 steps like {"description": "...", "tool_name": "crop", "parameters": {}}`);
  }
  return parsed.data;
}

/** `value` as one word for a POSIX shell: as it is when only safe characters, else in single quotes. */
function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Refuses a thread id given with `flag` that is not a plain name. An id names its plan file
 * (`<data-dir>/plans/<id>.json`) and is printed in commands to paste: no path parts, no controls.
 */
export function checkThreadId(flag: "--thread" | "--resume", id: string): void {
  if (id === "") throw new UsageError(`${flag}: a thread id cannot be empty`);
  if (/[/\\\u0000-\u001f\u007f-\u009f]|\.\./.test(id)) {
    throw new UsageError(`${flag} ${JSON.stringify(id)}: a thread id is a name; "/", "\\", ".." and control characters are not allowed`);
  }
}

/** Where a paused run's plan is written for editing: in the data directory's plans folder, never outside it. */
function planFile(dataDir: string, threadId: string): string {
  checkThreadId("--resume", threadId);
  return join(resolve(dataDir), "plans", `${threadId}.json`);
}

/**
 * `loupe ask --resume ID` with the settings flags given on this command line (so approvals
 * and the model stay the same), never the question, images or secrets.
 */
export function continueCommand(command: Command, threadId: string): string {
  const skip = new Set(["image", "thread", "resume", "approve", "deny", "editPlan", "apiKey"]);
  const parts = ["loupe", "ask", "--resume", shellQuote(threadId)];
  for (const option of command.options) {
    const key = option.attributeName();
    if (skip.has(key) || command.getOptionValueSource(key) !== "cli") continue;
    const value = command.getOptionValue(key);
    if (option.negate || typeof value === "boolean") parts.push(option.long!);
    else parts.push(option.long!, shellQuote(String(value)));
  }
  if (command.getOptionValueSource("apiKey") === "cli") parts.push("--api-key", "KEY");
  return parts.join(" ");
}

/** Tells the person what the run is waiting for and the exact commands to continue; returns EXIT_PAUSED. */
export function reportPause(paused: RunPaused, command: Command, settings: LoupeConfig, json: boolean): number {
  const base = continueCommand(command, paused.threadId);
  const request = paused.request;
  const commands: Record<string, string> = { approve: `${base} --approve`, deny: `${base} --deny 'why (optional)'` };
  const lines: string[] = [];
  if (request.type === "plan_review") {
    const file = planFile(settings.dataDir, paused.threadId);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(request.plan, null, 2)}\n`);
    commands.editPlan = `${base} --edit-plan ${shellQuote(file)}`;
    lines.push(`loupe: paused: review the plan for thread ${paused.threadId} before the agent acts on it:`);
    lines.push(...formatPlan(request.plan).split("\n").map((l) => `  ${l}`));
    lines.push("", "Continue with one of:", `  approve it:  ${commands.approve}`, `  edit it:     change ${file}, then: ${commands.editPlan}`, `  reject it:   ${commands.deny}   (the agent works without a plan)`);
  } else {
    lines.push(`loupe: paused: ${request.calls.length === 1 ? "this call waits" : `these ${request.calls.length} calls wait`} for your approval (thread ${paused.threadId}):`);
    for (const call of request.calls) lines.push(`  ${call.name} ${JSON.stringify(call.arguments)}`);
    lines.push("", "Continue with one of:", `  allow:  ${commands.approve}`, `  deny:   ${commands.deny}   (the model is told the call was not allowed)`);
  }
  if (request.problem) lines.unshift(`loupe: the last decision could not be used: ${request.problem}`);
  lines.push(`(exit code ${EXIT_PAUSED}: the run is paused; everything so far is saved)`);
  process.stderr.write(`${terminalText(lines.join("\n"))}\n`);
  if (json) process.stdout.write(`${JSON.stringify({ threadId: paused.threadId, status: "paused", review: request, continue: commands })}\n`);
  return EXIT_PAUSED;
}
