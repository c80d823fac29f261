// Parsers for numeric command-line values, shared by every `loupe` command.
import { InvalidArgumentError } from "commander";

/** A whole number of at least `min` (default 0), else a usage error naming the flag. */
export function int(name: string, min = 0) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new InvalidArgumentError(`${name} must be a whole number${min > 0 ? ` of at least ${min}` : ""}, got "${value}"`);
    }
    return n;
  };
}

/** Any finite number, else a usage error naming the flag. */
export function num(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
    return n;
  };
}
