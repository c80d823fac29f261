// One way to say what a zod validation found wrong: "path: message" for each issue, for people and for the model.
import type { z } from "zod/v4";

export type Issue = z.core.$ZodIssue;

/** An issue's path as text ("bbox.2"); `root` names the value itself. */
export function pathText(path: readonly PropertyKey[], root = "value"): string {
  return path.length ? path.map(String).join(".") : root;
}

export interface DescribeOptions {
  /** What an empty path names (default "value"). */
  root?: string;
  /** Renders a path differently (e.g. "step 2 tool_name", or the flag a setting came from). */
  path?: (path: readonly PropertyKey[]) => string;
  /** Added after an issue's message (e.g. the value that was given). */
  after?: (path: readonly PropertyKey[]) => string;
}

/** "path: message; path: message". */
export function describeIssues(issues: readonly Issue[], options: DescribeOptions = {}): string {
  const name = options.path ?? ((path: readonly PropertyKey[]) => pathText(path, options.root));
  return issues.map((issue) => `${name(issue.path)}: ${issue.message}${options.after?.(issue.path) ?? ""}`).join("; ");
}
