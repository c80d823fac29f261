// A 20-item benchmark with a scripted model and a scripted judge whose verdicts imply an exact accuracy, for the evaluation tests.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";
import type { ScriptedTurn } from "../../src/cli/demo/scripted-model-server.js";
import type { RecordedRequest } from "../../src/cli/demo/http-recording.js";

export const EVAL_ITEMS = 20;
/** Open items the model answers wrongly (the judge says no). */
export const WRONG_OPEN = [2, 5, 9];
/** The open item the model answers without an <answer> tag (wrong without asking the judge). */
export const UNTAGGED = 12;
/** Multiple-choice items the model answers wrongly. */
export const WRONG_CHOICE = [14, 17];
export const CORRECT = EVAL_ITEMS - WRONG_OPEN.length - 1 - WRONG_CHOICE.length; // 14
/** Items that crop once before answering. */
export const CROPPING = [4, 8, 12, 16, 20];
export const isOpen = (k: number) => k <= 12;
export const categoryOf = (k: number) => (k <= 6 ? "open-a" : k <= 12 ? "open-b" : "mc");
const LETTERS = ["A", "B", "C", "D"];
export const correctLetter = (k: number) => LETTERS[k % 4]!;

/** A small picture with some structure (so crops are not blank). */
export async function testPicture(width = 320, height = 240, hue = "#4a7bd0"): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#e8e2d0"/><rect x="${width * 0.1}" y="${height * 0.1}" width="${width * 0.35}" height="${height * 0.3}" fill="${hue}"/><circle cx="${width * 0.7}" cy="${height * 0.65}" r="${height * 0.2}" fill="#c0392b"/><text x="${width * 0.12}" y="${height * 0.3}" font-size="${height * 0.1}" fill="white" font-family="sans-serif">K-7</text></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** Writes the 20-item JSONL (open items 1–12, multiple choice 13–20) with its images; returns the dataset path. */
export async function writeEvalDataset(dir: string): Promise<string> {
  await mkdir(join(dir, "img"), { recursive: true });
  await writeFile(join(dir, "img", "a.png"), await testPicture());
  await writeFile(join(dir, "img", "b.png"), await testPicture(300, 300, "#2e8b57"));
  const lines: string[] = [];
  for (let k = 1; k <= EVAL_ITEMS; k++) {
    const image = k % 2 ? "img/a.png" : "img/b.png";
    const id = `q${String(k).padStart(2, "0")}`;
    if (isOpen(k)) {
      lines.push(JSON.stringify({ id, image, question: `Item ${k}: what is the code on the sign?`, answer: `CODE-${k}`, category: categoryOf(k) }));
    } else {
      lines.push(JSON.stringify({ id, image, question: `Item ${k}: which colour is the panel?`, options: ["red", "green", "blue", "yellow"], answer: correctLetter(k), category: "mc" }));
    }
  }
  const path = join(dir, "bench.jsonl");
  await writeFile(path, `${lines.join("\n")}\n`);
  return path;
}

/** The item number a model or judge request is about. */
export function itemOf(req: RecordedRequest): number {
  const text = JSON.stringify(req.body?.messages ?? []);
  const m = /Item (\d+):/.exec(text);
  return m ? Number(m[1]) : -1;
}

function mcAnswer(k: number, letter: string): string {
  switch (k % 4) {
    case 1:
      return `<answer>\\boxed{${letter}}</answer>`;
    case 2:
      return `<answer>(${letter})</answer>`;
    case 3:
      return `<answer>The answer is ${letter}.</answer>`;
    default:
      return `<answer>${letter}</answer>`;
  }
}

export interface ModelScriptOptions {
  /** Items whose requests hang (until the client is killed) while this returns true. */
  hang?: (k: number) => boolean;
  /** Items whose first request fails with a non-retryable HTTP 400. */
  fail?: number[];
  /** Items answered the other way round: right where the script is wrong, wrong where it is right (another "model"). */
  flip?: number[];
}

/** The scripted model: one function answering any item's request, from the item number in the question. */
export function evalModel(options: ModelScriptOptions = {}) {
  return (req: RecordedRequest): ScriptedTurn => {
    const k = itemOf(req);
    if (k < 0) return { content: "<answer>?</answer>" };
    if (options.hang?.(k)) return { fault: "hang" };
    if (options.fail?.includes(k)) return { fault: { status: 400, message: `item ${k} is refused` } };
    const messages = (req.body?.messages ?? []) as Array<{ role: string }>;
    const cropped = messages.some((m) => m.role === "tool");
    if (CROPPING.includes(k) && !cropped) {
      return { content: "<think>The sign is in the upper left; look closer.</think>", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 600, 600] } }] };
    }
    const think = `<think>I read item ${k} carefully.</think>`;
    const flipped = options.flip?.includes(k) ?? false;
    if (isOpen(k)) {
      if (k === UNTAGGED) return { content: `The code is CODE-${k}.` };
      return { content: `${think}${WRONG_OPEN.includes(k) !== flipped ? `<answer>WRONG-${k}</answer>` : `<answer>CODE-${k}</answer>`}` };
    }
    const letter = WRONG_CHOICE.includes(k) !== flipped ? LETTERS[(k + 1) % 4]! : correctLetter(k);
    return { content: `${think}${mcAnswer(k, letter)}` };
  };
}

/** The scripted judge: "yes" exactly when the response equals the reference answer. */
export function evalJudge() {
  return (req: RecordedRequest): ScriptedTurn => {
    const prompt = JSON.stringify(req.body?.messages ?? []);
    const text = JSON.parse(prompt).map((m: { content: unknown }) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content))).join("\n") as string;
    const response = /\[response\]: (.*)/.exec(text)?.[1]?.trim() ?? "";
    const expected = /\[correct_answer\]: (.*)/.exec(text)?.[1]?.trim() ?? "";
    const yes = response === expected;
    return { content: `reasoning: The response "${response}" ${yes ? "matches" : "does not match"} "${expected}".\ncorrect: ${yes ? "yes" : "no"}` };
  };
}

/** Most requests that were open at the same time, from arrival times and a fixed server latency. */
export function maxOverlap(requests: RecordedRequest[], latencyMs: number): number {
  let best = 0;
  for (const r of requests) {
    const open = requests.filter((o) => o.receivedAt <= r.receivedAt && r.receivedAt < o.receivedAt + latencyMs).length;
    best = Math.max(best, open);
  }
  return best;
}
