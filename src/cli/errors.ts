// How a `loupe` command fails: the usage error, the exit codes, and the one line printed for an error.

/** Exit codes: 0 answered, 1 the run failed, 2 usage or configuration error, 3 paused for a person's review, 4 no answer. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
/** The run paused for a person's review (nothing is lost; continue with a decision). */
export const EXIT_PAUSED = 3;
/** A budget ran out and the model gave no answer when asked for its last one (the output says so). */
export const EXIT_NO_ANSWER = 4;

/** A wrong flag or argument found while running a command (commander reports its own parse errors itself); exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/*
 * Errors are known by name, not by class: importing the classes would load the model client,
 * sharp and LangGraph for every command, `loupe --help` included.
 */

/** Errors the person can fix in the command or its settings, or by waiting (another process runs the thread): exit code 2. */
const USAGE_ERRORS = new Set(["UsageError", "ConfigError", "CodeUnavailableError", "ThreadBusyError"]);

/** Errors whose whole message is written for the person at the terminal. */
const WRITTEN_FOR_PEOPLE = new Set(["ModelServerError", "ImageInputError", "ConfigError", "CodeUnavailableError", "RunError", "ThreadBusyError"]);

/** The exit code for an error a command ended with. */
export function exitCodeFor(err: unknown): number {
  return err instanceof Error && USAGE_ERRORS.has(err.name) ? EXIT_USAGE : EXIT_FAILED;
}

/** What to print for an error: its message if it was written for people, else the first line of it. */
export function oneLine(err: unknown): string {
  if (err instanceof Error && WRITTEN_FOR_PEOPLE.has(err.name)) return err.message;
  const message = (err as Error | undefined)?.message ?? String(err);
  return message.split("\n")[0] ?? message;
}
