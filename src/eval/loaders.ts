// Dataset loaders: every benchmark shape in the reference table (JSONL, Parquet, VLMEvalKit TSV, LiveVQA JSON, EMMA) becomes EvalItems.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, extname, isAbsolute, join, resolve } from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { DatasetError, FORMATS, type Choice, type DatasetFormat, type EvalItem, type ImageInput } from "./items.js";
import { writeContentAddressed } from "./summary.js";

export interface LoadOptions {
  format?: DatasetFormat | "auto";
  /** Extra folder to look in for relative image paths (default: only around the dataset file). */
  imagesDir?: string;
  /** Stop after this many items. */
  limit?: number;
  /**
   * Write embedded image bytes (Parquet, base64 TSV) to files in this folder as they are read, so
   * a large benchmark never sits in memory; without it the items carry the bytes.
   */
  imagesOut?: string;
  /** CSVQA TSV: which language's question and options to use. */
  lang?: "en" | "zh";
}

export interface LoadedDataset {
  format: DatasetFormat;
  file: string;
  items: EvalItem[];
}

type Obj = Record<string, unknown>;

const LETTERS = ["A", "B", "C", "D", "E", "F", "G", "H"];
const MC_INSTRUCTION = "Answer with the letter of the correct option.";

// ---------------------------------------------------------------------------------------------
// One row, with field access that fails with the file, row and field named

class Row {
  constructor(
    readonly ctx: Ctx,
    readonly row: number,
    readonly value: Obj,
  ) {}

  fail(field: string | undefined, problem: string): never {
    throw new DatasetError(this.ctx.display, problem, { row: this.row, field });
  }

  /** The first of `fields` present with a non-null, non-empty value. */
  pick(fields: string[]): [string, unknown] | undefined {
    for (const f of fields) {
      const v = this.value[f];
      if (v === undefined || v === null) continue;
      if (typeof v === "string" && v.trim() === "") continue;
      if (typeof v === "number" && Number.isNaN(v)) continue;
      return [f, v];
    }
    return undefined;
  }

  text(fields: string[], what: string): string {
    const found = this.pick(fields);
    if (!found) this.fail(fields[0], `missing (expected ${what} in ${fields.map((f) => `"${f}"`).join(" or ")})`);
    return asText(found[1]) ?? this.fail(found[0], `expected ${what} as a string, got ${describe(found[1])}`);
  }

  optionalText(fields: string[]): string | undefined {
    const found = this.pick(fields);
    if (!found) return undefined;
    return asText(found[1]) ?? this.fail(found[0], `expected a string, got ${describe(found[1])}`);
  }

  id(fields: string[]): string {
    const found = this.pick(fields);
    if (!found) return String(this.row);
    const v = found[1];
    if (typeof v === "string" || typeof v === "number" || typeof v === "bigint") return String(v);
    return this.fail(found[0], `expected an id (string or number), got ${describe(v)}`);
  }

  /** Accepted answers: a string, a number, or a list (nested lists are flattened); a JSON-encoded list is read too. */
  answers(fields: string[], required = true): string[] {
    const found = this.pick(fields);
    if (!found) {
      if (!required) return [];
      this.fail(fields[0], `missing (expected the answer in ${fields.map((f) => `"${f}"`).join(" or ")})`);
    }
    const [field, v] = found;
    const out = flattenAnswers(v);
    if (out === null) this.fail(field, `expected an answer string or a list of strings, got ${describe(v)}`);
    if (out.length === 0 && required) this.fail(field, "the answer is empty");
    return out;
  }

  images(fields: string[], required: boolean): ImageInput[] {
    const found = this.pick(fields);
    if (!found) {
      if (required) this.fail(fields[0], `missing (expected an image in ${fields.map((f) => `"${f}"`).join(" or ")})`);
      return [];
    }
    const [field, v] = found;
    const list = Array.isArray(v) ? v : [v];
    const out = list.filter((x) => x !== null && x !== undefined).map((x) => this.image(field, x));
    if (required && out.length === 0) this.fail(field, "the image list is empty");
    return out;
  }

  image(field: string, v: unknown): ImageInput {
    if (v instanceof Uint8Array) {
      if (v.length === 0) this.fail(field, "the embedded image is empty");
      return this.ctx.bytes(v);
    }
    if (typeof v === "string") {
      const s = v.trim();
      if (/^https?:\/\//i.test(s)) return { kind: "url", url: s };
      if (s.startsWith("data:")) {
        const m = /^data:[^;,]*;base64,(.*)$/s.exec(s);
        if (!m) this.fail(field, "a data: URL image must be base64 (data:image/...;base64,...)");
        return this.ctx.bytes(Buffer.from(m[1]!, "base64"));
      }
      return this.path(field, s);
    }
    if (v && typeof v === "object") {
      const o = v as Obj;
      if (o.bytes instanceof Uint8Array && o.bytes.length > 0) return this.ctx.bytes(o.bytes);
      if (typeof o.bytes === "string" && o.bytes.length > 0) return this.ctx.bytes(Buffer.from(o.bytes, "base64"));
      if (typeof o.path === "string" && o.path) return this.image(field, o.path);
      if (typeof o.url === "string" && o.url) return this.image(field, o.url);
    }
    return this.fail(field, `expected an image (a path, an http(s) URL, or {bytes}), got ${describe(v)}`);
  }

  path(field: string, p: string): ImageInput {
    if (p.length > 1024) this.fail(field, `expected an image path or URL, got ${p.length} characters of text ("${p.slice(0, 40)}…")`);
    const found = this.ctx.findFile(p);
    if (!found) {
      const tried = this.ctx.candidates(p);
      this.fail(
        field,
        `no image file "${p}" (looked for ${tried.slice(0, 3).join(", ")}${tried.length > 3 ? ", …" : ""}); image paths are read relative to the dataset file — pass --images DIR if the images live elsewhere`,
      );
    }
    return { kind: "path", path: found };
  }

  /** Base64 images as VLMEvalKit and CSVQA TSVs hold them: one string, or a Python list of strings "['…', '…']". */
  base64Images(field: string, raw: string): ImageInput[] {
    const text = raw.trim();
    const texts = text.startsWith("[") ? [...text.matchAll(/'([^']*)'|"([^"]*)"/g)].map((m) => m[1] ?? m[2] ?? "") : [text];
    if (!texts.length) this.fail(field, "the image list is empty");
    return texts.map((b64) => {
      const bytes = Buffer.from(b64, "base64");
      if (bytes.length < 16 || !/^[A-Za-z0-9+/=\s]+$/.test(b64.slice(0, 200))) this.fail(field, "is not a base64-encoded image");
      return this.ctx.bytes(bytes);
    });
  }
}

function asText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (v instanceof Uint8Array) return Buffer.from(v).toString("utf8");
  return undefined;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (typeof v === "object") return `an object with keys ${Object.keys(v as Obj).slice(0, 6).join(", ") || "(none)"}`;
  const text = JSON.stringify(v) ?? String(v);
  return `${typeof v} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

function flattenAnswers(v: unknown): string[] | null {
  if (typeof v === "string") {
    const s = v.trim();
    if (s.startsWith("[") && s.endsWith("]")) {
      try {
        const parsed = JSON.parse(s);
        if (Array.isArray(parsed)) return flattenAnswers(parsed);
      } catch {
        // a plain answer that happens to be bracketed
      }
    }
    return s ? [s] : [];
  }
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return [String(v)];
  if (v instanceof Uint8Array) return flattenAnswers(Buffer.from(v).toString("utf8"));
  if (Array.isArray(v)) {
    const out: string[] = [];
    for (const x of v) {
      const inner = flattenAnswers(x);
      if (inner === null) return null;
      out.push(...inner);
    }
    return [...new Set(out)];
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Where images are looked up, and where embedded bytes go

class Ctx {
  readonly dir: string;
  private readonly roots: string[];
  constructor(
    readonly file: string,
    readonly display: string,
    readonly options: LoadOptions,
  ) {
    this.dir = dirname(file);
    this.roots = [options.imagesDir ? resolve(options.imagesDir) : "", this.dir].filter(Boolean);
    if (options.imagesOut) mkdirSync(options.imagesOut, { recursive: true });
  }

  /** Relative paths are tried against the dataset's folder (and --images), then with leading folders dropped, then one folder up. */
  candidates(p: string): string[] {
    if (isAbsolute(p)) return [p];
    const parts = p.split(/[\\/]+/).filter(Boolean);
    const out: string[] = [];
    for (const root of this.roots) {
      for (let i = 0; i < parts.length; i++) out.push(join(root, ...parts.slice(i)));
      out.push(join(dirname(root), ...parts));
    }
    return [...new Set(out)];
  }

  findFile(p: string): string | undefined {
    return this.candidates(p).find((c) => existsSync(c) && statSync(c).isFile());
  }

  bytes(bytes: Uint8Array): ImageInput {
    if (!this.options.imagesOut) return { kind: "bytes", bytes };
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const path = join(this.options.imagesOut, `${createHash("sha256").update(buf).digest("hex")}${sniffExt(buf)}`);
    writeContentAddressed(path, buf);
    return { kind: "path", path };
  }
}

/** A file extension from an image's first bytes. */
export function sniffExt(b: Buffer): string {
  if (b[0] === 0xff && b[1] === 0xd8) return ".jpg";
  if (b[0] === 0x89 && b[1] === 0x50) return ".png";
  if (b.subarray(0, 4).toString("latin1") === "RIFF") return ".webp";
  if (b.subarray(0, 3).toString("latin1") === "GIF") return ".gif";
  return ".img";
}

// ---------------------------------------------------------------------------------------------
// Options and multiple-choice questions

/** Options from a string ("(A) x\n(B) y", "A.x\nB.y"), a list ("A. x" or plain texts), or an object {A: x}. */
export function parseChoices(v: unknown): Choice[] | null {
  if (v === null || v === undefined) return [];
  if (typeof v === "string") {
    const s = v.trim();
    if (!s) return [];
    if (s.startsWith("[") && s.endsWith("]")) {
      try {
        return parseChoices(JSON.parse(s));
      } catch {
        // not JSON: read as text
      }
    }
    const marker = /(?:^|\n|\s)\(?([A-H])\s*[).:：]\s*/g;
    const hits = [...s.matchAll(marker)];
    if (hits.length < 2 || hits[0]!.index !== 0 && s.slice(0, hits[0]!.index).trim() !== "") return null;
    return hits.map((m, i) => {
      const start = m.index! + m[0].length;
      const end = i + 1 < hits.length ? hits[i + 1]!.index! : s.length;
      return { letter: m[1]!, text: s.slice(start, end).trim() };
    });
  }
  if (Array.isArray(v)) {
    const texts = v.map((x) => asText(x));
    if (texts.some((t) => t === undefined)) return null;
    const labelled = texts.map((t) => /^\s*\(?([A-H])\s*[).:：]\s*([\s\S]*)$/.exec(t!));
    if (labelled.every((m, i) => m && m[1] === LETTERS[i])) return labelled.map((m) => ({ letter: m![1]!, text: m![2]!.trim() }));
    return texts.map((t, i) => ({ letter: LETTERS[i]!, text: t!.trim() }));
  }
  if (typeof v === "object") {
    const entries = Object.entries(v as Obj).filter(([k]) => /^[A-H]$/.test(k));
    if (!entries.length) return null;
    return entries.map(([k, t]) => ({ letter: k, text: asText(t) ?? "" }));
  }
  return null;
}

/** "B", "(B)", "B.", "A,C", "A, C" → letters; null when the text is not only option letters. */
export function answerLetters(text: string, allowed: string[] = LETTERS.slice(0, 5)): string[] | null {
  const s = text.trim().replace(/^\(|\)$/g, "").replace(/\.$/, "");
  if (!/^[A-H](\s*[,，、\s]\s*[A-H])*$/.test(s)) return null;
  const letters = [...new Set(s.split(/[^A-H]+/).filter(Boolean))];
  return letters.every((l) => allowed.includes(l)) ? letters.sort() : null;
}

export function choiceQuestion(question: string, choices: Choice[], instruction = MC_INSTRUCTION): string {
  const listed = choices.length > 0 && choices.every((c) => question.includes(c.text) && new RegExp(`(^|\\n|\\()${c.letter}[).:\\s]`).test(question));
  const options = listed || choices.length === 0 ? "" : `\n${choices.map((c) => `${c.letter}. ${c.text}`).join("\n")}`;
  return `${question.trim()}${options}\n${instruction}`;
}

function makeItem(r: Row, fields: {
  id: string;
  question: string;
  images: ImageInput[];
  answers: string[];
  choices?: Choice[];
  category?: string;
  answerField?: string;
  /** Force open-ended even when the answer looks like a letter. */
  open?: boolean;
  instruction?: string;
}): EvalItem {
  const choices = fields.choices ?? [];
  const allowed = choices.length ? choices.map((c) => c.letter) : LETTERS.slice(0, 5);
  const letters = !fields.open && fields.answers.length === 1 ? answerLetters(fields.answers[0]!, allowed) : null;
  const isChoice = letters !== null && (choices.length > 0 || fields.open === false);
  if (choices.length > 0 && !fields.open && letters === null) {
    r.fail(fields.answerField ?? "answer", `the item has options (${choices.map((c) => c.letter).join(", ")}) but the answer "${fields.answers[0]}" is not one of their letters`);
  }
  const question = fields.question.replace(/<image>\s*/g, "").trim();
  return {
    id: fields.id,
    question: isChoice ? choiceQuestion(question, choices, fields.instruction) : question,
    judgeQuestion: question,
    images: fields.images,
    answers: isChoice ? letters! : fields.answers,
    kind: isChoice ? "choice" : "open",
    choices: isChoice ? choices : [],
    category: fields.category?.trim() || "all",
    source: { file: r.ctx.display, row: r.row },
  };
}

// ---------------------------------------------------------------------------------------------
// Row mappers, one per format

const ID_FIELDS = ["id", "question_id", "qid", "pid", "sample_id", "data_id", "index", "ID", "idx"];
const QUESTION_FIELDS = ["question", "query", "prompt", "final_question", "problem", "text"];
const IMAGE_FIELDS = ["images", "image", "image_path", "img_path", "file_path", "image_url", "image_urls", "query_image", "img"];
const ANSWER_FIELDS = ["answers", "answer", "gt_answer", "final_answer", "ground_truth", "label", "gt"];
const ALT_ANSWER_FIELDS = ["alternative_gt_answers", "alternative_answers", "candidate_answers", "Ground_Truth_List"];
const CATEGORY_FIELDS = ["category", "domain", "subject", "Topic", "area", "task"];

function choicesOf(r: Row): { choices: Choice[]; field?: string } {
  const found = r.pick(["options", "choices"]);
  if (found) {
    const parsed = parseChoices(found[1]);
    if (parsed === null) r.fail(found[0], `cannot read the options from ${describe(found[1])}: use "(A) …\\n(B) …", "A. …" lines, a list, or {"A": …}`);
    return { choices: parsed, field: found[0] };
  }
  const columns = LETTERS.slice(0, 8)
    .map((l) => [l, r.value[l]] as const)
    .filter(([, v]) => v !== undefined && v !== null && !(typeof v === "number" && Number.isNaN(v)) && String(v).trim() !== "" && String(v) !== "nan");
  return { choices: columns.map(([l, v]) => ({ letter: l, text: String(v).trim() })) };
}

/** Generic JSONL (R1V4's {image, question, answer}) and the common re-packagings (V*, HR-Bench, Chinese SimpleVQA). */
function mapGeneric(r: Row): EvalItem {
  const answers = r.answers(ANSWER_FIELDS);
  const { choices } = choicesOf(r);
  const alt = choices.length ? [] : r.answers(ALT_ANSWER_FIELDS, false);
  return makeItem(r, {
    id: r.id(ID_FIELDS),
    question: r.text(QUESTION_FIELDS, "the question"),
    images: r.images(IMAGE_FIELDS, false),
    answers: [...new Set([...answers, ...alt])],
    choices,
    category: r.optionalText(CATEGORY_FIELDS),
    answerField: r.pick(ANSWER_FIELDS)?.[0],
  });
}

/** WebWatcher's eval JSONL (MMSearch, SimpleVQA, LiveVQA, HLE copies): prompt, file_path, answers. */
function mapWebWatcher(r: Row): EvalItem {
  const task = r.optionalText(["task"]);
  return makeItem(r, {
    id: r.id(["question_id", "id"]),
    question: r.text(["prompt"], "the question"),
    images: r.images(["file_path"], true),
    answers: r.answers(["answers"]),
    category: task?.replace(/^hle\//, ""),
    open: true,
  });
}

/** WebWatcher's BrowseComp-VL JSONL: question, image_path, answers, domain. */
function mapBrowseComp(r: Row): EvalItem {
  return makeItem(r, {
    id: r.id(["id", "question_id"]),
    question: r.text(["question"], "the question"),
    images: r.images(["image_path"], true),
    answers: r.answers(["answers"]),
    category: r.optionalText(["domain"]),
    open: true,
  });
}

/** MMSearch end2end Parquet: sample_id, query, query_image, gt_answer, alternative_gt_answers, area, subfield. */
function mapMmsearch(r: Row): EvalItem {
  if (!("query" in r.value) && "prompt" in r.value) return mapWebWatcher(r);
  const recorded = r.value.image_search_result;
  const item = makeItem(r, {
    id: r.id(["sample_id"]),
    question: r.text(["query"], "the question"),
    images: r.images(["query_image"], false),
    answers: [...new Set([...r.answers(["gt_answer"]), ...r.answers(["alternative_gt_answers"], false)])],
    category: r.optionalText(["area", "subfield"]),
    open: true,
  });
  return recorded === undefined || recorded === null ? item : { ...item, imageSearchResult: recorded };
}

/** MMSearch-R1's FVQA Parquet: prompt [{role, content}], images [{bytes}], reward_model {ground_truth, candidate_answers}. */
function mapFvqa(r: Row): EvalItem {
  const prompt = r.value.prompt;
  let question: string | undefined;
  if (typeof prompt === "string") question = prompt;
  else if (Array.isArray(prompt)) {
    const user = [...prompt].reverse().find((m) => m && typeof m === "object" && (m as Obj).role === "user") as Obj | undefined;
    question = user ? asText(user.content) : undefined;
  }
  if (!question?.trim()) r.fail("prompt", `expected a list of {role, content} messages with a user message, got ${describe(prompt)}`);
  const reward = r.value.reward_model;
  if (!reward || typeof reward !== "object") r.fail("reward_model", `expected {ground_truth, candidate_answers}, got ${describe(reward)}`);
  const rm = new Row(r.ctx, r.row, reward as Obj);
  let answers: string[];
  try {
    answers = [...new Set([...rm.answers(["ground_truth"]), ...rm.answers(["candidate_answers"], false)])];
  } catch (err) {
    if (err instanceof DatasetError) r.fail(`reward_model.${err.field}`, err.message.replace(/^.*field "[^"]+": /, ""));
    throw err;
  }
  return makeItem(r, {
    id: r.id(["data_id", "id"]),
    question,
    images: r.images(["images"], true),
    answers,
    category: r.optionalText(["category", "data_source"]),
    open: true,
  });
}

/** CSVQA, converted JSONL (conversations, image, answer, question_type, category). */
function mapCsvqa(r: Row): EvalItem {
  const conv = r.value.conversations;
  if (!Array.isArray(conv)) r.fail("conversations", `expected a list of {from, value} turns, got ${describe(conv)}`);
  const human = conv.find((t) => t && typeof t === "object" && ((t as Obj).from === "human" || (t as Obj).role === "user")) as Obj | undefined;
  const question = human ? asText(human.value ?? human.content) : undefined;
  if (!question?.trim()) r.fail("conversations", "no human turn with the question");
  const type = (r.optionalText(["question_type"]) ?? "").toLowerCase();
  return makeItem(r, {
    id: r.id(["id"]),
    question,
    images: r.images(["image", "images"], true),
    answers: r.answers(["answer"]),
    category: r.optionalText(["category"]),
    open: type === "open",
    instruction: "",
  });
}

/** CSVQA, the raw TSV (id, en_question / zh_question, en_A..en_D, answer, question_type, category, image as a list of base64). */
function mapCsvqaTsv(r: Row, lang: "en" | "zh"): EvalItem {
  const type = r.text(["question_type"], "the question type").toLowerCase();
  let question = r.text([`${lang}_question`], "the question").replace(/<image>/g, "");
  const category = r.optionalText(["category"]) ?? "";
  const choices = type === "open" ? [] : LETTERS.slice(0, 4).map((l) => ({ letter: l, text: r.text([`${lang}_${l}`], `option ${l}`) }));
  if (choices.length) question += `\n${choices.map((c) => `${c.letter}. ${c.text}`).join("\n")}`;
  question =
    type === "open"
      ? `Below are Chinese ${category} high school exercises: ${question}. Answer this question with a single word or phrase. Please strictly end your response with "So the final answer is \\boxed{}".`
      : `Below are Chinese ${category} high school exercises: ${question}. This question may have one or more correct answers. Please strictly end your response with "So the final answer is \\boxed{one or more option letters connected with commas}".`;
  return makeItem(r, {
    id: r.id(["id"]),
    question,
    images: r.base64Images("image", r.text(["image"], "the images (a list of base64 strings)")),
    answers: r.answers(["answer"]),
    choices,
    category,
    open: type === "open",
    instruction: "",
  });
}

/** VLMEvalKit TSV: index, image (base64, or the index of a row holding it), question, A..E, answer, category. */
function mapVlmeval(r: Row, imageByIndex: Map<string, ImageInput[]>): EvalItem {
  const index = r.id(["index"]);
  let images: ImageInput[];
  const raw = r.value.image;
  if (typeof raw === "string" && /^\d+$/.test(raw.trim()) && raw.trim().length < 16) {
    const ref = imageByIndex.get(raw.trim());
    if (!ref) r.fail("image", `refers to the image of row index ${raw.trim()}, which is not in the file`);
    images = ref;
  } else if (typeof raw === "string" && raw.trim()) {
    images = r.base64Images("image", raw);
  } else {
    images = r.images(["image_path"], true);
  }
  imageByIndex.set(index, images);
  const hint = r.optionalText(["hint"]);
  const { choices } = choicesOf(r);
  return makeItem(r, {
    id: index,
    question: `${hint && hint !== "nan" ? `Hint: ${hint}\n` : ""}${r.text(["question"], "the question")}`,
    images,
    answers: r.answers(["answer"]),
    choices,
    category: r.optionalText(["category"]),
    answerField: "answer",
  });
}

/** EMMA: pid, question (and options) with <image_k> placeholders, options, answer, image_1..image_5, subject, type. */
function mapEmma(r: Row): EvalItem {
  const pid = r.id(["pid"]);
  const question = r.text(["question"], "the question");
  const type = (r.optionalText(["type"]) ?? "").toLowerCase();
  const { choices, field } = choicesOf(r);
  const mentioned = `${question}\n${choices.map((c) => c.text).join("\n")}`;
  const images: ImageInput[] = [];
  const index = new Map<number, number>();
  for (let k = 1; k <= 5; k++) {
    const f = `image_${k}`;
    const v = r.value[f];
    if (v !== undefined && v !== null && !(typeof v === "string" && !v.trim())) {
      index.set(k, images.length);
      images.push(r.image(f, v));
    } else if (mentioned.includes(`<image_${k}>`)) {
      const rel = ["png", "jpg", "jpeg", "webp"].map((ext) => `images/${pid}/image_${k}.${ext}`);
      const found = rel.map((p) => r.ctx.findFile(p)).find(Boolean);
      if (!found) r.fail(f, `the item shows <image_${k}> but there is no image (no ${f} value, and no file ${rel[0]} beside the dataset)`);
      index.set(k, images.length);
      images.push({ kind: "path", path: found });
    }
  }
  if (type.includes("multiple") && choices.length === 0) r.fail(field ?? "options", "a multiple-choice item has no options");
  // The agent names input images img_0, img_1, … in order.
  const named = (text: string) => text.replace(/<image_(\d)>/g, (m, k: string) => (index.has(Number(k)) ? `[image img_${index.get(Number(k))}]` : m));
  return makeItem(r, {
    id: pid,
    question: named(question),
    images,
    answers: r.answers(["answer"]),
    choices: type.includes("multiple") ? choices.map((c) => ({ ...c, text: named(c.text) })) : [],
    category: r.optionalText(["subject", "category"]),
    open: !type.includes("multiple"),
    answerField: "answer",
  });
}

/** Runs fn on one level of a LiveVQA item; a field error names the level (level1_qa.question, not question). */
function inLevel<T>(r: Row, level: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof DatasetError && err.field) r.fail(`${level}.${err.field}`, err.message.replace(/^.*field "[^"]+": /, ""));
    throw err;
  }
}

/** One level of a LiveVQA item as a multiple-choice item; undefined when the item has no such level. */
function liveVqaLevel(r: Row, id: string, level: string): EvalItem | undefined {
  const qa = r.value[level];
  if (qa === undefined || qa === null) return undefined;
  if (typeof qa !== "object") r.fail(level, `expected an object {question, options, Ground_Truth}, got ${describe(qa)}`);
  const sub = new Row(r.ctx, r.row, { ...(qa as Obj), img_path: (qa as Obj).img_path ?? r.value.img_path });
  const { choices } = inLevel(r, level, () => choicesOf(sub));
  return inLevel(r, level, () =>
    makeItem(sub, {
      id: `${id}-${level.replace("_qa", "")}`,
      question: sub.text(["question"], "the question"),
      images: sub.images(["img_path"], true),
      answers: sub.answers(["Ground_Truth"]),
      choices,
      category: level.replace("_qa", ""),
      answerField: "Ground_Truth",
    }),
  );
}

/** Official LiveVQA benchmark.json: [{id, img_path, level1_qa, level2_qa}], each level a multiple-choice item. */
function mapLiveVqa(r: Row): EvalItem[] {
  const id = r.id(["id"]);
  const out = ["level1_qa", "level2_qa"].map((level) => liveVqaLevel(r, id, level)).filter((item): item is EvalItem => item !== undefined);
  if (!out.length) r.fail("level1_qa", "the item has neither level1_qa nor level2_qa");
  return out;
}

// ---------------------------------------------------------------------------------------------
// File readers

async function* jsonlRows(ctx: Ctx): AsyncGenerator<[number, Obj]> {
  const lines = readFileSync(ctx.file, "utf8").split(/\r?\n/);
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new DatasetError(ctx.display, `not valid JSON (${(err as Error).message})`, { row: i + 1 });
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new DatasetError(ctx.display, `expected a JSON object, got ${describe(value)}`, { row: i + 1 });
    yield [i + 1, value as Obj];
  }
}

function readJsonFile(ctx: Ctx): unknown {
  try {
    return JSON.parse(readFileSync(ctx.file, "utf8"));
  } catch (err) {
    throw new DatasetError(ctx.display, `not valid JSON (${(err as Error).message})`);
  }
}

async function* jsonRows(ctx: Ctx): AsyncGenerator<[number, Obj]> {
  const data = readJsonFile(ctx);
  const list = Array.isArray(data) ? data : data && typeof data === "object" ? Object.values(data as Obj) : null;
  if (!list) throw new DatasetError(ctx.display, "expected a JSON array of items or an object of items keyed by id");
  for (const [i, value] of list.entries()) {
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new DatasetError(ctx.display, `expected an object, got ${describe(value)}`, { row: i + 1 });
    yield [i + 1, value as Obj];
  }
}

async function parquetFile(ctx: Ctx) {
  try {
    const file = await asyncBufferFromFile(ctx.file);
    const metadata = await parquetMetadataAsync(file);
    return { file, metadata, columns: parquetSchema(metadata).children.map((c) => c.element.name) };
  } catch (err) {
    throw new DatasetError(ctx.display, `not a readable Parquet file (${(err as Error).message})`);
  }
}

async function* parquetRows(ctx: Ctx): AsyncGenerator<[number, Obj]> {
  const { file, metadata } = await parquetFile(ctx);
  const total = Number(metadata.num_rows);
  const batch = 64;
  for (let start = 0; start < total; start += batch) {
    let rows: Obj[];
    try {
      rows = (await parquetReadObjects({ file, metadata, compressors, utf8: false, rowStart: start, rowEnd: Math.min(total, start + batch) })) as Obj[];
    } catch (err) {
      throw new DatasetError(ctx.display, `cannot read Parquet rows ${start + 1}–${Math.min(total, start + batch)} (${(err as Error).message})`);
    }
    for (const [i, row] of rows.entries()) yield [start + i + 1, row];
  }
}

/** A TSV parser fed a chunk at a time: a quoted field, or a record, may span chunks. */
class TsvParser {
  private field = "";
  private record: string[] = [];
  private quoted = false;
  private atFieldStart = true;
  /** Inside quotes, a quote was read: "" is a quote, a lone " ends the quoting. */
  private pendingQuote = false;

  /** The records that end in this chunk (blank lines are none). */
  *feed(text: string): Generator<string[]> {
    let i = 0;
    while (i < text.length) {
      if (this.quoted) {
        i = this.readQuoted(text, i);
        continue;
      }
      const c = text[i];
      if (c !== "\n" && c !== "\r") {
        i = this.readUnquoted(text, i);
        continue;
      }
      if (c === "\r" && text[i + 1] === "\n") i++;
      const record = this.endRecord();
      if (record.length > 1 || record[0] !== "") yield record;
      i++;
    }
  }

  /** The last record, when the file does not end with a newline. */
  end(): string[] | undefined {
    if (this.field === "" && !this.record.length) return undefined;
    this.record.push(this.field);
    return this.record;
  }

  private readQuoted(text: string, i: number): number {
    if (this.pendingQuote) {
      this.pendingQuote = false;
      if (text[i] === '"') {
        this.field += '"';
        return i + 1;
      }
      this.quoted = false;
      return i; // re-read this character unquoted
    }
    if (text[i] === '"') {
      this.pendingQuote = true;
      return i + 1;
    }
    const next = text.indexOf('"', i);
    const end = next === -1 ? text.length : next;
    this.field += text.slice(i, end);
    return end;
  }

  /** Outside quotes, anything but a line break: an opening quote, a tab, or a plain run up to the next delimiter. */
  private readUnquoted(text: string, i: number): number {
    const c = text[i];
    if (c === '"' && this.atFieldStart) {
      this.quoted = true;
      this.atFieldStart = false;
      return i + 1;
    }
    if (c === "\t") {
      this.record.push(this.field);
      this.field = "";
      this.atFieldStart = true;
      return i + 1;
    }
    let end = i;
    while (end < text.length && text[end] !== "\t" && text[end] !== "\n" && text[end] !== "\r") end++;
    this.field += text.slice(i, end);
    this.atFieldStart = false;
    return end;
  }

  private endRecord(): string[] {
    this.record.push(this.field);
    const record = this.record;
    this.record = [];
    this.field = "";
    this.atFieldStart = true;
    return record;
  }
}

/** TSV as pandas writes it (quoted fields may hold tabs, quotes and newlines); streamed, so multi-GB files work. */
export async function* tsvRecords(path: string): AsyncGenerator<string[]> {
  const parser = new TsvParser();
  for await (const chunk of createReadStream(path, { encoding: "utf8", highWaterMark: 1 << 20 })) yield* parser.feed(chunk as string);
  const last = parser.end();
  if (last) yield last;
}

async function* tsvRows(ctx: Ctx): AsyncGenerator<[number, Obj]> {
  let header: string[] | null = null;
  let row = 0;
  for await (const record of tsvRecords(ctx.file)) {
    if (!header) {
      header = record.map((h) => h.trim());
      continue;
    }
    row++;
    if (record.length !== header.length) {
      throw new DatasetError(ctx.display, `has ${record.length} columns but the header has ${header.length}`, { row });
    }
    yield [row, Object.fromEntries(header.map((h, i) => [h, record[i]]))];
  }
  if (!header) throw new DatasetError(ctx.display, "the file is empty (expected a header row)");
}

async function tsvHeader(ctx: Ctx): Promise<string[]> {
  for await (const record of tsvRecords(ctx.file)) return record.map((h) => h.trim());
  return [];
}

// ---------------------------------------------------------------------------------------------
// Detection and the entry point

function kindOfFile(file: string): "jsonl" | "json" | "parquet" | "tsv" | null {
  const ext = extname(file).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".json") return "json";
  if (ext === ".parquet" || ext === ".pq") return "parquet";
  if (ext === ".tsv") return "tsv";
  return null;
}

function formatOfRow(row: Obj): DatasetFormat {
  if (Array.isArray(row.conversations)) return "csvqa";
  if ("level1_qa" in row || "level2_qa" in row) return "livevqa";
  if ("pid" in row && "options" in row && ("subject" in row || "image_1" in row)) return "emma";
  if ("reward_model" in row && "prompt" in row) return "fvqa";
  if ("gt_answer" in row && "query" in row) return "mmsearch";
  if ("prompt" in row && "file_path" in row && "answers" in row) return "webwatcher";
  if ("question" in row && "image_path" in row && "answers" in row) return "browsecomp-vl";
  return "jsonl";
}

async function firstRow(rows: AsyncGenerator<[number, Obj]>): Promise<Obj | undefined> {
  for await (const [, row] of rows) return row;
  return undefined;
}

export async function detectFormat(file: string, options: LoadOptions = {}): Promise<DatasetFormat> {
  const ctx = new Ctx(resolve(file), file, { ...options, imagesOut: undefined });
  const kind = kindOfFile(file);
  if (kind === "tsv") {
    const header = await tsvHeader(ctx);
    return header.includes("question_type") && header.some((h) => /^(en|zh)_question$/.test(h)) ? "csvqa" : "vlmeval-tsv";
  }
  if (kind === "parquet") {
    const { columns } = await parquetFile(ctx);
    const probe = Object.fromEntries(columns.map((c) => [c, null]));
    const format = formatOfRow(probe);
    if (format === "jsonl") {
      throw new DatasetError(file, `cannot tell which benchmark this Parquet file is (columns: ${columns.join(", ")}); pass --format (${FORMATS.join(", ")})`);
    }
    return format;
  }
  if (kind === "json" || kind === "jsonl") {
    const row = await firstRow(kind === "json" ? jsonRows(ctx) : jsonlRows(ctx));
    if (!row) throw new DatasetError(file, "the file holds no items");
    return formatOfRow(row);
  }
  throw new DatasetError(file, `unknown file type "${extname(file) || "(none)"}": expected .jsonl, .json, .parquet/.pq or .tsv`);
}

const ALLOWED_KINDS: Record<DatasetFormat, Array<ReturnType<typeof kindOfFile>>> = {
  jsonl: ["jsonl", "json"],
  mmsearch: ["parquet", "jsonl", "json"],
  fvqa: ["parquet"],
  webwatcher: ["jsonl", "json"],
  "browsecomp-vl": ["jsonl", "json"],
  livevqa: ["json", "jsonl"],
  "vlmeval-tsv": ["tsv"],
  csvqa: ["jsonl", "json", "tsv"],
  emma: ["json", "jsonl", "parquet"],
};

/** Reads a benchmark file into items; a malformed row fails with a DatasetError naming the file, row and field. */
export async function loadDataset(file: string, options: LoadOptions = {}): Promise<LoadedDataset> {
  const path = resolve(file);
  if (!existsSync(path)) throw new DatasetError(file, "no such file");
  const format = !options.format || options.format === "auto" ? await detectFormat(file, options) : options.format;
  const kind = kindOfFile(path);
  if (!ALLOWED_KINDS[format].includes(kind)) {
    throw new DatasetError(file, `--format ${format} reads ${ALLOWED_KINDS[format].map((k) => `.${k}`).join(" or ")} files, not ${extname(path) || "this file"}`);
  }
  const ctx = new Ctx(path, file, options);
  const rows = kind === "jsonl" ? jsonlRows(ctx) : kind === "json" ? jsonRows(ctx) : kind === "parquet" ? parquetRows(ctx) : tsvRows(ctx);
  const items: EvalItem[] = [];
  const ids = new Map<string, number>();
  const imageByIndex = new Map<string, ImageInput[]>();
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  for await (const [n, value] of rows) {
    if (items.length >= limit) break;
    const r = new Row(ctx, n, value);
    let mapped: EvalItem[];
    switch (format) {
      case "jsonl":
        mapped = [mapGeneric(r)];
        break;
      case "webwatcher":
        mapped = [mapWebWatcher(r)];
        break;
      case "browsecomp-vl":
        mapped = [mapBrowseComp(r)];
        break;
      case "mmsearch":
        mapped = [mapMmsearch(r)];
        break;
      case "fvqa":
        mapped = [mapFvqa(r)];
        break;
      case "csvqa":
        mapped = [kind === "tsv" ? mapCsvqaTsv(r, options.lang ?? "en") : mapCsvqa(r)];
        break;
      case "vlmeval-tsv":
        mapped = [mapVlmeval(r, imageByIndex)];
        break;
      case "emma":
        mapped = [mapEmma(r)];
        break;
      case "livevqa":
        mapped = "prompt" in value ? [mapWebWatcher(r)] : mapLiveVqa(r);
        break;
    }
    for (const item of mapped) {
      if (items.length >= limit) break;
      const earlier = ids.get(item.id);
      if (earlier !== undefined) throw new DatasetError(file, `duplicate id "${item.id}" (also row ${earlier}); ids must be unique`, { row: n, field: "id" });
      ids.set(item.id, n);
      items.push(item);
    }
  }
  if (items.length === 0) throw new DatasetError(file, "the file holds no items");
  return { format, file: path, items };
}

/** A short, file-system- and thread-id-safe form of an item id. */
export function safeId(id: string): string {
  const clean = id.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
  return clean === id ? id : `${clean}~${createHash("sha256").update(id).digest("hex").slice(0, 8)}`;
}
