// `loupe compare`: two evaluation runs side by side, item by item.
import { resolve } from "node:path";
import { compareRuns, formatComparison } from "../eval/compare.js";

export function runCompare(a: string, b: string, flags: { json?: boolean }): void {
  const comparison = compareRuns(resolve(a), resolve(b));
  process.stdout.write(flags.json ? `${JSON.stringify(comparison)}\n` : `${formatComparison(comparison)}\n`);
}
