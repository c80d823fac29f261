// Thread ids as `loupe ask` takes them: names, never paths or terminal controls.
import { describe, expect, it } from "vitest";
import { UsageError } from "./errors.js";
import { checkThreadId } from "./review.js";

describe("checkThreadId", () => {
  it("refuses /, \\, .., control characters and the empty id, naming the flag", () => {
    for (const id of ["../x", "a/b", "/abs", "a\\b", "..", "a..b", "a\u0000b", "a\u0007b", "a\u001b[2Jb", "a\nb", "a\u007fb", "a\u009bb"]) {
      expect(() => checkThreadId("--thread", id), JSON.stringify(id)).toThrow(/^--thread .*"\/", "\\", "\.\." and control characters are not allowed$/);
    }
    expect(() => checkThreadId("--resume", "")).toThrow(new UsageError("--resume: a thread id cannot be empty"));
  });

  it("accepts names: UUIDs, words, dots, spaces and shell characters (the commands quote them)", () => {
    for (const id of ["3f1c2b9e-0d4a-4c55-9a7e-1b2c3d4e5f60", "cli-1", "run.2", "my thread", "x; echo INJECTED", "café-☕", "."]) {
      expect(() => checkThreadId("--thread", id), JSON.stringify(id)).not.toThrow();
    }
  });
});
