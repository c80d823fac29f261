// How `loupe` reports an error: the exit code by the error's name, and the text printed for it.
import { describe, expect, it } from "vitest";
import { ConfigError } from "../core/config.js";
import { EXIT_FAILED, EXIT_USAGE, exitCodeFor, oneLine, UsageError } from "./errors.js";

const named = (name: string, message: string) => Object.assign(new Error(message), { name });

describe("exitCodeFor and oneLine", () => {
  it("usage, configuration and a busy thread exit 2; anything else 1", () => {
    expect(exitCodeFor(new UsageError("bad flag"))).toBe(EXIT_USAGE);
    expect(exitCodeFor(new ConfigError("bad setting"))).toBe(EXIT_USAGE);
    expect(exitCodeFor(named("ThreadBusyError", "thread t1 is being run by another process"))).toBe(EXIT_USAGE);
    expect(exitCodeFor(new Error("boom"))).toBe(EXIT_FAILED);
    expect(exitCodeFor("not an error")).toBe(EXIT_FAILED);
  });

  it("a busy thread's message is printed whole; an unknown error's first line only", () => {
    const busy = "thread t1 is being run by another process (pid 42)\nwait for it to finish, or continue it later with: loupe ask --resume t1";
    expect(oneLine(named("ThreadBusyError", busy))).toBe(busy);
    expect(oneLine(new Error("first\nsecond"))).toBe("first");
  });
});
