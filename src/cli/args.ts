// Parsers for command-line values, shared by every `loupe` command.
import { InvalidArgumentError } from "commander";

/** The usage error for a value outside what a flag takes: `--max-turns must be a whole number from 1 to 2000, got "0"`. */
export function refusedValue(name: string, kind: "a whole number" | "a number", value: string, bounds: { min?: number; max?: number } = {}) {
  return new InvalidArgumentError(`${name} must be ${kind}${rangeText(bounds)}, got "${value}"`);
}

function rangeText({ min, max }: { min?: number; max?: number }): string {
  if (min !== undefined && max !== undefined) return ` from ${min} to ${max}`;
  if (min !== undefined) return ` of at least ${min}`;
  if (max !== undefined) return ` of at most ${max}`;
  return "";
}

/** A whole number of at least `min` (default 0), else a usage error naming the flag. */
export function int(name: string, min = 0) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw refusedValue(name, "a whole number", value, { min: min > 0 ? min : undefined });
    return n;
  };
}

/** A repeatable flag's values, in the order given (`-i a.png -i b.png`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
