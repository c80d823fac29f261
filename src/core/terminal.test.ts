// terminalText: model and web text made safe to write to a terminal.
import { describe, expect, it } from "vitest";
import { terminalText } from "./terminal.js";

const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe("terminalText", () => {
  it("leaves text alone: newlines, tabs and any script or emoji", () => {
    const text = "Line one\n\tcafé 日本語 👋 — «ok» [1] ~ 100%";
    expect(terminalText(text)).toBe(text);
  });

  it("drops CSI sequences (colours, cursor moves, screen clears), 7-bit and C1", () => {
    expect(terminalText("a \u001b[31mred\u001b[0m b")).toBe("a red b");
    expect(terminalText("x\u001b[2J\u001b[1;1Hy\u001b[?25l")).toBe("xy");
    expect(terminalText("x\u009b2Jy")).toBe("xy");
  });

  it("drops OSC sequences (titles, OSC-8 links) with whichever terminator, keeping a link's visible text", () => {
    expect(terminalText("\u001b]8;;https://evil.example/\u0007click\u001b]8;;\u0007 here")).toBe("click here");
    expect(terminalText("\u001b]8;;https://evil.example/\u001b\\click\u001b]8;;\u001b\\")).toBe("click");
    expect(terminalText("\u001b]0;pwned\u0007after")).toBe("after");
    expect(terminalText("\u009d0;pwned\u009cafter")).toBe("after");
  });

  it("drops DCS, APC, PM and SOS strings, and an escape sequence cut off at the end", () => {
    expect(terminalText("\u001bPq#0;2;0;0;0\u001b\\x")).toBe("x");
    expect(terminalText("\u001b_hidden\u001b\\x\u001b^pm\u0007y")).toBe("xy");
    expect(terminalText("ok \u001b]8;;https://evil.exa")).toBe("ok ");
    expect(terminalText("ok \u001b[3")).toBe("ok ");
    expect(terminalText("ok \u001b")).toBe("ok ");
  });

  it("drops other escapes and the C0 and C1 controls except newline and tab: BEL, CR, backspace, NUL, DEL", () => {
    expect(terminalText("reset\u001bc done")).toBe("reset done");
    expect(terminalText("a\u0007b\rc\bd\u0000e\u007ff\u0085g\r\n")).toBe("abcdefg\n");
  });

  it("never lets a control character through, and is idempotent", () => {
    const alphabet = ["a", " ", "\n", "\t", "\u001b", "[", "]", "\\", "\u0007", "\u009b", "\u009d", "\u009c", "8", ";", "m", "\r", "P", "_", "é"];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let n = 0; n < 2000; n++) {
      const text = Array.from({ length: 1 + (next() % 24) }, () => alphabet[next() % alphabet.length]).join("");
      const safe = terminalText(text);
      expect(safe, JSON.stringify(text)).not.toMatch(CONTROL);
      expect(terminalText(safe)).toBe(safe);
    }
  });
});
