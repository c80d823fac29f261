// `loupe ask` and `loupe eval` share their run flags: the same values are refused (with the same message) or accepted, as the configuration would.
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../src/core/config.js";
import { buildProgram } from "../src/cli/main.js";

type Parsed = { ok: true; value: unknown } | { ok: false; message: string };

/** The setting a flag sets: --max-turns -> maxTurns (commander's name for the option too). */
function settingOf(flag: string): string {
  return flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Parses `loupe <name> <flag> <value> <argument>` in-process with the command's action replaced: only the flags are under test. */
async function parse(name: "ask" | "eval", flag: string, value: string): Promise<Parsed> {
  const program = buildProgram();
  const command = program.commands.find((c) => c.name() === name);
  if (!command) throw new Error(`no ${name} command`);
  let parsed: Record<string, unknown> = {};
  command.action((...args: unknown[]) => {
    parsed = (args.at(-1) as { opts(): Record<string, unknown> }).opts();
  });
  command.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  try {
    await program.parseAsync([name, `${flag}=${value}`, name === "ask" ? "question?" : "bench.jsonl"], { from: "user" });
    return { ok: true, value: parsed[settingOf(flag)] };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

/** What resolveConfig says of the same value given for the setting behind the flag. */
function configAccepts(flag: string, value: string): boolean {
  try {
    resolveConfig({ [settingOf(flag)]: Number(value) }, {});
    return true;
  } catch {
    return false;
  }
}

const REFUSED: Array<[string, string]> = [
  ["--max-tool-calls", "-1"],
  ["--max-tool-calls", "1001"],
  ["--max-tool-calls", "2.5"],
  ["--max-turns", "0"],
  ["--max-turns", "2001"],
  ["--temperature", "-0.1"],
  ["--temperature", "2.5"],
  ["--temperature", "warm"],
  ["--max-tokens", "15"],
  ["--timeout-ms", "0"],
  ["--timeout-ms", "99"],
  ["--retries", "-1"],
  ["--retries", "21"],
];

const ACCEPTED: Array<[string, string, number]> = [
  ["--max-tool-calls", "0", 0],
  ["--max-tool-calls", "1000", 1000],
  ["--max-turns", "1", 1],
  ["--max-turns", "2000", 2000],
  ["--temperature", "0", 0],
  ["--temperature", "0.7", 0.7],
  ["--temperature", "2", 2],
  ["--max-tokens", "16", 16],
  ["--timeout-ms", "100", 100],
  ["--retries", "0", 0],
  ["--retries", "20", 20],
];

describe("the run flags of loupe ask and loupe eval", () => {
  it.each(REFUSED)("both refuse %s %s with the same message, as the configuration would", async (flag, value) => {
    const [ask, evaluation] = [await parse("ask", flag, value), await parse("eval", flag, value)];
    expect(ask).toEqual({ ok: false, message: expect.stringContaining(`${flag} must be a`) });
    expect(evaluation).toEqual(ask);
    expect(configAccepts(flag, value)).toBe(false);
  });

  it.each(ACCEPTED)("both accept %s %s as %d, as the configuration does", async (flag, value, expected) => {
    expect(await parse("ask", flag, value)).toEqual({ ok: true, value: expected });
    expect(await parse("eval", flag, value)).toEqual({ ok: true, value: expected });
    expect(configAccepts(flag, value)).toBe(true);
  });

  it("states the bounds in the message", async () => {
    expect(await parse("eval", "--max-turns", "0")).toEqual({ ok: false, message: expect.stringContaining('--max-turns must be a whole number from 1 to 2000, got "0"') });
    expect(await parse("ask", "--timeout-ms", "0")).toEqual({ ok: false, message: expect.stringContaining('--timeout-ms must be a whole number of at least 100, got "0"') });
  });
});
