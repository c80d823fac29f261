// Scoring without a judge (the <answer> text is read by protocol.ts's extractAnswer, as the agent reads it): option-letter extraction (A–E, \boxed{}), exact match and token F1, and the Wald interval.
import type { Choice } from "./items.js";

/** The content of the last \boxed{…} (braces balanced), or null. */
export function boxedText(text: string): string | null {
  const at = text.lastIndexOf("\\boxed{");
  if (at < 0) return null;
  let depth = 0;
  for (let i = at + "\\boxed".length; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}") {
      depth--;
      if (depth === 0) return text.slice(at + "\\boxed{".length, i).trim();
    }
  }
  return null;
}

function lettersIn(text: string, allowed: Set<string>): string[] | null {
  const s = text.trim().replace(/^\\text\{(.*)\}$/, "$1").replace(/^[([{]|[)\]}.]$/g, "").trim();
  if (!/^[A-H](\s*(,|，|、|and|\s)\s*[A-H])*$/.test(s)) return null;
  const letters = [...new Set(s.match(/[A-H]/g) ?? [])];
  return letters.length && letters.every((l) => allowed.has(l)) ? letters.sort() : null;
}

function normalizeText(s: string): string {
  return s.toLowerCase().replace(/[\s\p{P}]+/gu, " ").trim();
}

/**
 * The option letter(s) an answer picks: \boxed{B}; an answer that is only letters ("B", "(B)", "A, C");
 * "answer is B" / "Answer: (B)" / "option B"; a leading "B." or "(B)"; else the one option whose text
 * it states. Null when none of these find an option.
 */
export function extractChoice(answer: string, choices: Choice[]): string[] | null {
  const allowed = new Set(choices.length ? choices.map((c) => c.letter) : ["A", "B", "C", "D", "E"]);
  const text = answer.trim();
  const boxed = boxedText(text);
  if (boxed !== null) {
    const fromBox = lettersIn(boxed, allowed) ?? matchOptionText(boxed, choices);
    if (fromBox) return fromBox;
  }
  const whole = lettersIn(text, allowed);
  if (whole) return whole;
  // Letters are capitals only (so "the answer is a dog" picks nothing), the lead words any case; the last statement wins
  // ("Option A is wrong; the answer is B" → B).
  const stated = [...text.matchAll(/\b(?:answer|option|choice)\s*(?:is|:|：)?\s*(?:option\s*)?\(?([A-H])\)?(?![A-Za-z])/gi)]
    .filter((m) => /^[A-H]$/.test(m[1]!))
    .at(-1);
  if (stated && allowed.has(stated[1]!)) return [stated[1]!];
  const leading = /^\(?([A-H])(?:\)|\.|:|：)(?:\s|$)/.exec(text) ?? /^\(([A-H])\)/.exec(text);
  if (leading && allowed.has(leading[1]!)) return [leading[1]!];
  return matchOptionText(text, choices);
}

function matchOptionText(text: string, choices: Choice[]): string[] | null {
  if (!choices.length) return null;
  const t = normalizeText(text);
  if (!t) return null;
  const exact = choices.filter((c) => normalizeText(c.text) === t);
  if (exact.length === 1) return [exact[0]!.letter];
  const contained = choices.filter((c) => normalizeText(c.text) && ` ${t} `.includes(` ${normalizeText(c.text)} `));
  // The longest stated option wins when one option's text contains another's ("red" in "dark red").
  if (contained.length >= 1) {
    const longest = contained.sort((a, b) => normalizeText(b.text).length - normalizeText(a.text).length);
    const rest = longest.slice(1).filter((c) => !normalizeText(longest[0]!.text).includes(normalizeText(c.text)));
    if (rest.length === 0) return [longest[0]!.letter];
  }
  return null;
}

/** SQuAD-style normalisation: lowercase, no punctuation, no English articles, single spaces. */
export function normalizeAnswer(s: string): string {
  return s
    .normalize("NFKC")
    .toLowerCase()
    .replace(/[\p{P}\p{S}]+/gu, " ")
    .replace(/\b(a|an|the)\b/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

function tokens(s: string): string[] {
  const n = normalizeAnswer(s);
  if (!n) return [];
  // Scripts without spaces (Chinese, Japanese) are compared character by character.
  return /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u.test(n) ? [...n.replace(/\s+/g, "")] : n.split(" ");
}

export function tokenF1(prediction: string, gold: string): number {
  const p = tokens(prediction);
  const g = tokens(gold);
  if (!p.length || !g.length) return p.length === g.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of g) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      common++;
      counts.set(t, c - 1);
    }
  }
  if (common === 0) return 0;
  const precision = common / p.length;
  const recall = common / g.length;
  return (2 * precision * recall) / (precision + recall);
}

export interface MatchScore {
  correct: boolean;
  exact: boolean;
  /** Best token F1 against any accepted answer. */
  f1: number;
}

/**
 * Judge-free scoring of an open answer: correct when it equals an accepted answer after
 * normalisation, or states one as a whole phrase ("Tamirat Tola" in "It was Tamirat Tola").
 */
export function matchScore(prediction: string, answers: string[]): MatchScore {
  const p = normalizeAnswer(prediction);
  const joined = tokens(prediction).join(" ");
  let exact = false;
  let contains = false;
  let f1 = 0;
  for (const gold of answers) {
    const g = normalizeAnswer(gold);
    if (!g) continue;
    if (p === g) exact = true;
    const gt = tokens(gold).join(" ");
    if (gt && ` ${joined} `.includes(` ${gt} `)) contains = true;
    f1 = Math.max(f1, tokenF1(prediction, gold));
  }
  return { correct: exact || contains, exact, f1 };
}

export interface Interval {
  n: number;
  correct: number;
  accuracy: number;
  /** Wald 95% interval, clipped to [0, 1]. */
  ci95: [number, number];
  halfWidth: number;
}

/** Accuracy with a Wald 95% confidence interval, as R1V4 reports it: p ± 1.96·√(p(1−p)/n). */
export function waldInterval(correct: number, n: number): Interval {
  if (n === 0) return { n, correct, accuracy: 0, ci95: [0, 0], halfWidth: 0 };
  const p = correct / n;
  const half = 1.96 * Math.sqrt((p * (1 - p)) / n);
  return { n, correct, accuracy: p, ci95: [Math.max(0, p - half), Math.min(1, p + half)], halfWidth: half };
}
