// The flags `loupe ask` and `loupe eval` share (model server, dialect, plan mode, budgets, sampling, code tool, data directory): declared once, each value checked by the configuration schema's own rule.
import { Option, type Command } from "commander";
import { CODE_MODES, DIALECTS, ENV_VARS, kebab, LoupeConfigSchema, type LoupeConfig } from "../core/config.js";
import { refusedValue } from "./args.js";

/** The settings the shared flags set. */
const SHARED_FLAG_KEYS = [
  "modelUrl",
  "model",
  "dialect",
  "plan",
  "maxToolCalls",
  "maxTurns",
  "temperature",
  "maxTokens",
  "timeoutMs",
  "retries",
  "code",
  "dataDir",
] as const satisfies ReadonlyArray<keyof LoupeConfig>;
type SharedFlagKey = (typeof SHARED_FLAG_KEYS)[number];
type NumericSetting = "maxToolCalls" | "maxTurns" | "temperature" | "maxTokens" | "timeoutMs" | "retries" | "maxPixels";

/** The shared flags as commander parses them; a flag left out is undefined. */
export type RunFlags = Partial<Pick<LoupeConfig, SharedFlagKey>> & { apiKey?: string };

/** What the shared flags set, as resolveConfig takes it (it checks the values). */
export type SharedFlagSettings = Partial<Record<SharedFlagKey, unknown>>;

/** The command the flags are declared on: an evaluation's budgets and plan are per item. */
export type RunCommand = "ask" | "eval";

/** The data directory holds more for an evaluation (its judge cache), so the two helps say different things. */
const DATA_DIR_HELP: Record<RunCommand, (defaultDir: string) => string> = {
  ask: (dir) => `where checkpoints and images are kept (env ${ENV_VARS.dataDir}; default ${dir}); with ${ENV_VARS.databaseUrl} they are kept in Postgres`,
  eval: (dir) => `checkpoints, images, search and judge caches (env ${ENV_VARS.dataDir}; default ${dir})`,
};

/**
 * Declares the shared flags on `command`, with the defaults and bounds the configuration has;
 * --data-dir is declared apart (addDataDirFlag), last, where `loupe ask`'s continue commands have it.
 */
export function addRunFlags(command: Command, { for: runCommand }: { for: RunCommand }): Command {
  const defaults = LoupeConfigSchema.parse({});
  const perItem = runCommand === "eval" ? " per item" : "";
  const envAndDefault = (key: NumericSetting | "modelUrl" | "dialect") => `env ${ENV_VARS[key]}; default ${defaults[key]}`;
  return command
    .option("--model-url <url>", `model server base URL (${envAndDefault("modelUrl")})`)
    .option("--model <name>", `model name (env ${ENV_VARS.model}; default: first id from GET {model-url}/models)`)
    .option("--api-key <key>", "model server API key (env LOUPE_API_KEY or OPENAI_API_KEY)")
    .addOption(new Option("--dialect <dialect>", `tools (OpenAI function calling) or tags (R1V4 text protocol) (${envAndDefault("dialect")})`).choices(DIALECTS))
    .option("--plan", `ask for an up-front plan${perItem} first (R1V4 Plan mode; env ${ENV_VARS.plan})`)
    .option("--max-tool-calls <n>", `tool-call budget${perItem} (${envAndDefault("maxToolCalls")})`, checkedBySchema("maxToolCalls"))
    .option("--max-turns <n>", `model-turn budget${perItem} (${envAndDefault("maxTurns")})`, checkedBySchema("maxTurns"))
    .option("--temperature <t>", `sampling temperature (${envAndDefault("temperature")})`, checkedBySchema("temperature"))
    .option("--max-tokens <n>", `most tokens per model turn (${envAndDefault("maxTokens")})`, checkedBySchema("maxTokens"))
    .option("--timeout-ms <ms>", `time limit per model request (${envAndDefault("timeoutMs")})`, checkedBySchema("timeoutMs"))
    .option("--retries <n>", `retries of a failed model request (${envAndDefault("retries")})`, checkedBySchema("retries"))
    .addOption(
      new Option(
        "--code <mode>",
        `the sandboxed Python code tool (R1V4's code): auto offers it where the bubblewrap sandbox works, on requires it (exit 2 before any model call when it cannot run), off never offers it (env ${ENV_VARS.code}; default auto)`,
      ).choices(CODE_MODES),
    );
}

/** Declares --data-dir, the last shared flag: after the command's own, in `--help` and in the continue commands `loupe ask` prints. */
export function addDataDirFlag(command: Command, { for: runCommand }: { for: RunCommand }): Command {
  return command.option("--data-dir <dir>", DATA_DIR_HELP[runCommand](LoupeConfigSchema.shape.dataDir.parse(undefined)));
}

/**
 * The shared flags as resolveConfig input. A flag given wins; one left out takes `recorded`
 * (what a resumed evaluation run was started with), else the environment and defaults do.
 */
export function settingsFromSharedFlags(flags: RunFlags, recorded: SharedFlagSettings = {}): SharedFlagSettings {
  return Object.fromEntries(SHARED_FLAG_KEYS.map((key) => [key, flags[key] ?? recorded[key]])) as SharedFlagSettings;
}

/** zod gives an unbounded number the safe-integer limits as bounds; a message should not quote them. */
function stated(bound: number | null): number | undefined {
  return bound === null || Math.abs(bound) >= Number.MAX_SAFE_INTEGER ? undefined : bound;
}

/** A flag parser applying the setting's own schema rule, so the flag refuses what the configuration would, at once and naming the flag. */
export function checkedBySchema(key: NumericSetting) {
  const rule = LoupeConfigSchema.shape[key].unwrap();
  const kind = rule.isInt ? "a whole number" : "a number";
  const bounds = { min: stated(rule.minValue), max: stated(rule.maxValue) };
  return (value: string): number => {
    const parsed = rule.safeParse(value.trim() === "" ? Number.NaN : Number(value));
    if (!parsed.success) throw refusedValue(`--${kebab(key)}`, kind, value, bounds);
    return parsed.data;
  };
}

/**
 * Notes on the code tool before a new run: none when it is offered or off; why not when auto finds
 * no working sandbox. Throws CodeUnavailableError (exit 2) when it is on and cannot run.
 */
export async function codeToolNotes(settings: Pick<LoupeConfig, "code">): Promise<string[]> {
  if (settings.code === "off") return [];
  // Loaded here: the flags module is part of every command's --help.
  const { bubblewrapSandbox, codeAvailability } = await import("../../tools/code/tool.js");
  const { offered, reason } = await codeAvailability(bubblewrapSandbox, settings.code);
  return offered ? [] : [`the code tool is not offered: ${reason}`];
}
