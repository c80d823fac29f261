import { describe, expect, it } from "vitest";
import { mcnemarExact } from "./compare.js";
import { parseVerdict, correctAnswerText } from "./judge.js";
import { answerLetters, parseChoices } from "./loaders.js";
import { boxedText, extractChoice, matchScore, waldInterval } from "./score.js";
import { percentile } from "./summary.js";
import { iou } from "./trajectory.js";
import { extractAnswer, parseReply } from "../core/protocol.js";

const CHOICES = [
  { letter: "A", text: "red" },
  { letter: "B", text: "dark red" },
  { letter: "C", text: "blue" },
  { letter: "D", text: "Augusta National Golf Club" },
];

describe("option extraction", () => {
  it.each([
    ["B", ["B"]],
    ["(C)", ["C"]],
    ["\\boxed{D}", ["D"]],
    ["So the final answer is \\boxed{A, C}.", ["A", "C"]],
    ["\\boxed{\\text{B}}", ["B"]],
    ["The answer is C.", ["C"]],
    ["Answer: (A)", ["A"]],
    ["B. dark red", ["B"]],
    ["dark red", ["B"]],
    ["It is blue.", ["C"]],
    ["augusta national golf club", ["D"]],
    ["A, C", ["A", "C"]],
    ["Option A is wrong; the answer is B", ["B"]],
    ["ANSWER IS C", ["C"]],
    ["I considered option A, but the correct choice is (D).", ["D"]],
    ["\\boxed{C} because option A is wrong", ["C"]],
  ])("%s → %j", (answer, letters) => {
    expect(extractChoice(answer, CHOICES)).toEqual(letters);
  });

  it.each(["A yellow car", "I cannot tell", "green", "E", "The answer is a dog", "the answer is b", "My answer is a guess"])("%s → null", (answer) => {
    expect(extractChoice(answer, CHOICES)).toBeNull();
  });

  it("reads \\boxed with nested braces and the last <answer>", () => {
    expect(boxedText("x \\boxed{\\frac{1}{2}} y")).toBe("\\frac{1}{2}");
  });

  it("reads the <answer> exactly as the agent does (first tag; an unclosed one runs to the end)", () => {
    expect(extractAnswer("<answer>a</answer> then <answer> b </answer>")).toBe("a");
    expect(extractAnswer("<think>x</think><answer> cut off")).toBe("cut off");
    expect(extractAnswer("no tag")).toBeNull();
    for (const dialect of ["tags", "tools"] as const) {
      for (const content of ["<think>t</think><answer>Paris", "<answer>A</answer><answer>B</answer>", "<think>t</think>\n<ANSWER> 42 </ANSWER>"]) {
        const parsed = parseReply(dialect, { content, toolCalls: [], finishReason: "stop", usage: { promptTokens: 0, completionTokens: 0 }, ms: 0 }, 0);
        expect(parsed.reply.kind).toBe("answer");
        expect(extractAnswer(content)).toBe(parsed.reply.kind === "answer" ? parsed.reply.answer : undefined);
      }
    }
  });

  it("parses option lists and answer letters", () => {
    expect(parseChoices("(A) rubber\n(B) cotton")).toEqual([{ letter: "A", text: "rubber" }, { letter: "B", text: "cotton" }]);
    expect(parseChoices("A.27B\nB.37B")).toEqual([{ letter: "A", text: "27B" }, { letter: "B", text: "37B" }]);
    expect(parseChoices(["A. Fe", "B. O"])).toEqual([{ letter: "A", text: "Fe" }, { letter: "B", text: "O" }]);
    expect(parseChoices(["x", "y"])).toEqual([{ letter: "A", text: "x" }, { letter: "B", text: "y" }]);
    expect(parseChoices({ A: "x", B: "y", note: "z" })).toEqual([{ letter: "A", text: "x" }, { letter: "B", text: "y" }]);
    expect(parseChoices("just a sentence")).toBeNull();
    expect(answerLetters("A,C")).toEqual(["A", "C"]);
    expect(answerLetters("(B)")).toEqual(["B"]);
    expect(answerLetters("Blue")).toBeNull();
  });
});

describe("judge-free matching", () => {
  it("exact match after normalisation, or the answer stated as a whole phrase", () => {
    expect(matchScore("Tamirat Tola.", ["Tamirat Tola"])).toMatchObject({ correct: true, exact: true, f1: 1 });
    expect(matchScore("It was Tamirat Tola", ["Tamirat Tola"])).toMatchObject({ correct: true, exact: false });
    expect(matchScore("Tola", ["Tamirat Tola"])).toMatchObject({ correct: false });
    expect(matchScore("Tola", ["Tamirat Tola"]).f1).toBeCloseTo(2 / 3, 10);
    expect(matchScore("the Eiffel Tower", ["Eiffel Tower"]).exact).toBe(true);
    expect(matchScore("1380年", ["1380年"]).correct).toBe(true);
    expect(matchScore("Portugal", ["Spain", "Kingdom of Spain"]).correct).toBe(false);
  });
});

describe("statistics", () => {
  it("Wald interval as R1V4 reports it", () => {
    const w = waldInterval(14, 20);
    expect(w.accuracy).toBe(0.7);
    expect(w.halfWidth).toBeCloseTo(1.96 * Math.sqrt(0.21 / 20), 12);
    expect(waldInterval(20, 20).ci95).toEqual([1, 1]);
    expect(waldInterval(1, 2).ci95[0]).toBe(0);
    expect(waldInterval(0, 0).n).toBe(0);
  });

  it("nearest-rank percentiles, McNemar's exact test, IoU", () => {
    const sorted = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(percentile(sorted, 0.5)).toBe(10);
    expect(percentile(sorted, 0.95)).toBe(19);
    expect(mcnemarExact(0, 0)).toBe(1);
    expect(mcnemarExact(0, 6)).toBeCloseTo(2 / 64, 12);
    expect(mcnemarExact(3, 3)).toBe(1);
    expect(iou({ x: 0, y: 0, w: 10, h: 10 }, { x: 5, y: 0, w: 10, h: 10 })).toBeCloseTo(50 / 150, 12);
  });
});

describe("judge replies", () => {
  it("reads reasoning and the last correct: yes|no", () => {
    expect(parseVerdict("reasoning: same person\ncorrect: yes")).toEqual({ correct: true, reasoning: "same person" });
    expect(parseVerdict("**reasoning:** differs in year.\n\n**correct:** no")).toEqual({ correct: false, reasoning: "differs in year." });
    expect(parseVerdict("reasoning: they said correct: yes earlier\ncorrect: no")?.correct).toBe(false);
    expect(parseVerdict("I think it is right")).toBeNull();
    expect(correctAnswerText(["Spain", "ES", "ESP"])).toBe("Spain (also accepted: ES; ESP)");
  });
});
