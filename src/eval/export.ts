// `loupe export`: checkpointed trajectories as SFT data (R1V4 tags, ms-swift messages, LLaMA-Factory ShareGPT, Plan-mode data), with R1V4's stepwise consistency filters.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { BLANK_STDEV } from "../../nodes/reflect.js";
import type { ImageStore } from "../core/images.js";
import type { ModelClient } from "../core/model.js";
import { isLoneCodeCall, planModePrompt, systemPrompt } from "../core/protocol.js";
import type { Part, PlanStep, Turn } from "../core/state.js";
import { imageStats } from "../../tools/image-ops.js";
import { toolSpecs } from "../../tools/index.js";
import { outputTarget, writeAtomic } from "./output-file.js";
import { readManifest, readResults, type ResultRow } from "./summary.js";
import { iou, readThreadState, regionInRoot, toTrajectory, type ThreadReader, type TrajImage, type Trajectory } from "./trajectory.js";

export const EXPORT_FORMATS = ["r1v4", "sharegpt", "messages", "plan"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** R1V4's stepwise consistency filters, applied in this order; a trajectory is counted under the first it fails. */
export const FILTERS = ["unfinished", "format", "correct", "tool_error", "recrop", "blank", "model_check"] as const;
export type FilterName = (typeof FILTERS)[number];

/** Two crops whose regions of the same input image overlap this much (IoU) are the same region cropped again. */
export const RECROP_IOU = 0.9;

export interface ExportOptions {
  /** An evaluation run directory: its threads, with the judged verdicts. */
  runDir?: string;
  /** Or thread ids (no verdicts: the correctness filter is not applied). */
  threads?: string[];
  format: ExportFormat;
  filter: "consistent" | "none";
  out: string;
  /** Reads the threads (the compiled agent over the checkpointer). */
  reader: ThreadReader;
  images: ImageStore;
  /** A vision model asked whether each produced sub-image agrees with the thinking that follows it (optional filter). */
  checkModel?: ModelClient;
  log?: (line: string) => void;
}

export interface Rejection {
  id: string;
  threadId: string;
  filter: FilterName | "missing";
  detail: string;
}

export interface ExportReport {
  out: string;
  imagesDir: string;
  considered: number;
  exported: number;
  /** Trajectories each filter removed (each counted once, under the first filter it failed). */
  removed: Record<FilterName, number>;
  /** Filters that could not be applied, and why. */
  notApplied: Partial<Record<FilterName, string>>;
  missing: number;
  rejections: Rejection[];
}

interface Source {
  id: string;
  threadId: string;
  row?: ResultRow;
}

// ---------------------------------------------------------------------------------------------
// Filters

function formatProblem(traj: Trajectory): string | null {
  for (const [k, step] of traj.steps.entries()) {
    if (step.kind === "malformed") return `step ${k + 1}: the reply could not be used (${(step.problem ?? "").slice(0, 120)})`;
    // R1V4's steps are <think> and exactly one action: a turn of parallel calls is not its format.
    if (step.kind === "calls" && step.calls.length > 1) return `step ${k + 1}: ${step.calls.length} tool calls in one turn, not one action`;
    if (!/<think>[\s\S]*?\S[\s\S]*?<\/think>/i.test(step.text)) return `step ${k + 1}: no <think>…</think> before the ${step.kind === "answer" ? "answer" : "action"}`;
  }
  const last = traj.steps.at(-1);
  if (!last || last.kind !== "answer") return "the trajectory does not end with an answer";
  if (traj.final?.reason !== "answered") return "a budget ran out: the answer was forced";
  if (traj.answerTag === null) return "the final reply has no <answer>…</answer>";
  return null;
}

/** A failed call, a code cell's sandbox error among them (R1V4 dropped trajectories with sandbox execution errors). */
function toolErrorProblem(traj: Trajectory): string | null {
  const failed = traj.toolCalls.find((c) => !c.ok);
  if (!failed) return null;
  const what = failed.name === "code" ? "sandbox error" : "failed";
  return `call ${failed.step} (${failed.name}) ${what}: ${(failed.error ?? "").slice(0, 160)}`;
}

function recropProblem(traj: Trajectory): string | null {
  const byId = new Map(traj.images.map((i) => [i.id, i]));
  const crops = traj.toolCalls
    .filter((c) => c.ok && (c.name === "crop" || c.name === "zoom"))
    .flatMap((c) => c.images.map((id) => ({ step: c.step, image: byId.get(id) })))
    .filter((x): x is { step: number; image: TrajImage } => Boolean(x.image));
  const regions = crops.map((c) => ({ ...c, region: regionInRoot(c.image, byId) }));
  for (let i = 0; i < regions.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = regions[i]!;
      const b = regions[j]!;
      if (!a.region || !b.region || a.region.root !== b.region.root) continue;
      const overlap = iou(a.region, b.region);
      if (overlap >= RECROP_IOU) return `call ${a.step} crops the region of call ${b.step} again (${a.image.id} ≈ ${b.image.id}, IoU ${overlap.toFixed(2)})`;
    }
  }
  return null;
}

async function blankProblem(traj: Trajectory, store: ImageStore): Promise<string | null> {
  for (const image of traj.images) {
    if (!image.parent) continue;
    const { stdev } = await imageStats(store, image);
    if (stdev < BLANK_STDEV) return `${image.id} (${image.op ?? "sub-image"}) is blank: pixel std dev ${stdev.toFixed(1)} < ${BLANK_STDEV}`;
  }
  return null;
}

/** Asks a vision model whether each produced sub-image agrees with the thinking that follows it. */
async function modelCheckProblem(traj: Trajectory, client: ModelClient): Promise<string | null> {
  const byId = new Map(traj.images.map((i) => [i.id, i]));
  for (const [k, step] of traj.steps.entries()) {
    const next = traj.steps[k + 1];
    if (!next?.think) continue;
    for (const call of step.calls) {
      for (const id of call.record?.images ?? []) {
        const image = byId.get(id);
        if (!image) continue;
        const turns: Turn[] = [
          {
            role: "user",
            parts: [
              { type: "text", text: `A tool (${image.op ?? call.name}) produced this image:` },
              { type: "image", id: image.id, sha256: image.sha256, mime: image.mime },
              {
                type: "text",
                text: `This is the reasoning that followed it:\n"""\n${next.think.slice(0, 3000)}\n"""\nDoes the image actually show what this reasoning says or assumes about it? Reply with one word: yes or no.`,
              },
            ],
          },
        ];
        const reply = await client.complete(turns);
        const text = reply.content.replace(/<think>[\s\S]*?(<\/think>|$)/gi, "").trim();
        if (/^\W*no\b/i.test(text)) return `${image.id}: the check model says the image does not match the thinking that follows it`;
      }
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Rendering in R1V4's tag protocol

interface Message {
  role: "system" | "user" | "assistant";
  content: string;
  images: Part[];
}

function partsToText(parts: Part[]): { text: string; images: Part[] } {
  const images: Part[] = [];
  const text = parts
    .map((p) => {
      if (p.type === "text") return p.text;
      images.push(p);
      return "<image>";
    })
    .join("\n");
  return { text, images };
}

function canonicalArgs(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * A turn's tool results (tools dialect) as one R1V4 observation; `extra` is the user turn after
 * them (captions, images, notes). A lone code call's is R1V4's own form: the JSON alone inside the
 * tags, the images and notes after.
 */
function observationMessage(results: string[], callNames: string[], extra?: { text: string; images: Part[] }): Message {
  const images = extra?.images ?? [];
  if (isLoneCodeCall(callNames) && results.length === 1) {
    return { role: "user", content: `<observation>${results[0]}</observation>${extra?.text ? `\n${extra.text}` : ""}`, images };
  }
  const body = [...results.map((t, i) => (results.length > 1 ? `[${i + 1}] ${t}` : t)), ...(extra?.text ? [extra.text] : [])].join("\n");
  return { role: "user", content: `<observation>\n${body}\n</observation>`, images };
}

/** What follows a turn's results: the parts its tool messages carried, then the user turn after them. */
function withCarried(toolParts: Part[], extra?: { text: string; images: Part[] }): { text: string; images: Part[] } | undefined {
  if (!toolParts.length) return extra;
  const carried = partsToText(toolParts);
  return extra ? { text: [carried.text, extra.text].filter(Boolean).join("\n"), images: [...carried.images, ...extra.images] } : carried;
}

/** The conversation in R1V4's tag protocol: tool calls as <tool_call> JSON, tool results as <observation> user turns. */
export function tagMessages(traj: Trajectory): Message[] {
  const out: Message[] = [];
  const push = (m: Message) => {
    const last = out.at(-1);
    if (last && last.role === m.role && m.role !== "system") {
      last.content += `\n${m.content}`;
      last.images.push(...m.images);
    } else out.push(m);
  };
  const system = traj.conversation.find((t) => t.role === "system");
  const codeLimits = system?.role === "system" ? system.code : undefined;
  push({ role: "system", content: systemPrompt("tags", toolSpecs(traj.tools, traj.coords), traj.coords, codeLimits), images: [] });
  let pendingTools: string[] = [];
  let callNames: string[] = [];
  // Images, captions and notes carried in tool messages (LOUPE_TOOL_IMAGES=tool), shown after the results.
  let toolParts: Part[] = [];
  const flushTools = (extra?: { text: string; images: Part[] }) => {
    if (!pendingTools.length && !extra && !toolParts.length) return;
    push(observationMessage(pendingTools, callNames, withCarried(toolParts, extra)));
    pendingTools = [];
    toolParts = [];
  };
  for (const turn of traj.conversation) {
    switch (turn.role) {
      case "system":
      case "system_text":
        break;
      case "assistant": {
        flushTools();
        callNames = (turn.toolCalls ?? []).map((c) => c.name);
        let content = turn.text.trim();
        if (turn.toolCalls?.length) {
          content = content.replace(/<tool_call>[\s\S]*?(<\/tool_call>|$)/gi, "").trim();
          for (const c of turn.toolCalls) content += `\n<tool_call>${JSON.stringify({ name: c.name, arguments: canonicalArgs(c.arguments) })}</tool_call>`;
        }
        push({ role: "assistant", content: content.trim(), images: [] });
        break;
      }
      case "tool":
        pendingTools.push(turn.text);
        toolParts.push(...(turn.parts ?? []));
        break;
      case "user": {
        const { text, images } = partsToText(turn.parts);
        if (pendingTools.length) {
          flushTools({ text, images });
        } else if (out.at(-1)?.role === "assistant" && traj.dialect === "tools" && !/^<observation>/.test(text.trim())) {
          // A tools-dialect note, format error or last request after a reply: an observation in tag form.
          const body = text.trim().replace(/^<tool_response>\n?([\s\S]*?)\n?<\/tool_response>$/, "$1");
          push({ role: "user", content: `<observation>\n${body}\n</observation>`, images });
        } else {
          push({ role: "user", content: text, images });
        }
        break;
      }
    }
  }
  flushTools();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Plan-mode data

/** R1V4 Plan-mode steps from a trajectory: one step per call, singular parameters, placeholders for earlier results, a final `none` check. */
export function planFromTrajectory(traj: Trajectory): PlanStep[] {
  if (traj.plan?.length) return traj.plan;
  const steps: PlanStep[] = [];
  const imageStep = new Map<string, number>();
  const urlStep = new Map<string, number>();
  const describe = (think: string, fallback: string) => {
    const first = think.split(/(?<=[.!?])\s+/)[0]?.trim() ?? "";
    return (first || fallback).slice(0, 200);
  };
  for (const step of traj.steps) {
    for (const call of step.calls) {
      const r = call.record;
      if (!r?.ok || !r.arguments) continue;
      const a = r.arguments;
      const imageRef = (id: unknown) => (imageStep.has(String(id)) ? `[Image from Step ${imageStep.get(String(id))}]` : String(id));
      const add = (s: PlanStep) => {
        steps.push(s);
        return steps.length;
      };
      let at = 0;
      if (r.name === "text_search") {
        for (const q of (a.queries as string[]) ?? []) at = add({ description: describe(step.think, `Search the web for ${q}`), tool_name: "text_search", parameters: { query: q } });
      } else if (r.name === "web_visit") {
        for (const u of (a.urls as string[]) ?? []) {
          const url = urlStep.has(u) ? `[URL from Step ${urlStep.get(u)}]` : u;
          at = add({ description: describe(step.think, "Read the page"), tool_name: "web_visit", parameters: { url, ...(a.goal ? { goal: a.goal } : {}) } });
        }
      } else if (r.name === "image_search") {
        for (const id of (a.image_paths as string[]) ?? []) at = add({ description: describe(step.think, "Reverse-search the image"), tool_name: "image_search", parameters: { image_path: imageRef(id) } });
      } else {
        const { image, ...rest } = a;
        at = add({ description: describe(step.think, `${r.name} the image`), tool_name: r.name, parameters: { image_path: imageRef(image), ...rest } });
      }
      for (const id of r.images) imageStep.set(id, at);
      for (const u of r.urls) if (!urlStep.has(u.url)) urlStep.set(u.url, at);
    }
  }
  steps.push({ description: `Check that the findings support the answer: ${traj.final?.answer ?? ""}`.slice(0, 240), tool_name: "none", parameters: {} });
  return steps;
}

// ---------------------------------------------------------------------------------------------
// Writing

class ImageFiles {
  readonly dir: string;
  readonly rel: string;
  constructor(
    out: string,
    private readonly store: ImageStore,
  ) {
    const stem = basename(out, extname(out));
    this.rel = `${stem}_images`;
    this.dir = join(dirname(out), this.rel);
    mkdirSync(this.dir, { recursive: true });
  }

  /** Copies an image beside the JSONL (once) and returns its path relative to the JSONL. */
  async add(part: { sha256: string; mime: string }): Promise<string> {
    const ext = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif" }[part.mime] ?? "img";
    const name = `${part.sha256}.${ext}`;
    const target = join(this.dir, name);
    if (!existsSync(target)) {
      const path = this.store.pathOf(part as { sha256: string; mime: TrajImage["mime"] });
      if (existsSync(path)) copyFileSync(path, target);
      else writeFileSync(target, await this.store.read(part as { sha256: string; mime: TrajImage["mime"] }));
    }
    return `${this.rel}/${name}`;
  }
}

async function render(format: ExportFormat, traj: Trajectory, source: Source, files: ImageFiles): Promise<Record<string, unknown>> {
  const meta = { id: source.id, thread_id: source.threadId };
  if (format === "plan") {
    const inputs = traj.questionParts.filter((p): p is Extract<Part, { type: "image" }> => p.type === "image");
    const images = await Promise.all(inputs.map((p) => files.add(p)));
    const question = partsToText(traj.questionParts).text;
    const specs = toolSpecs(traj.tools, traj.coords);
    return {
      ...meta,
      messages: [
        { role: "system", content: planModePrompt(specs) },
        { role: "user", content: question },
        { role: "assistant", content: JSON.stringify(planFromTrajectory(traj)) },
      ],
      images,
    };
  }
  const messages = tagMessages(traj);
  const images: string[] = [];
  for (const m of messages) for (const p of m.images) images.push(await files.add(p as { sha256: string; mime: string }));
  if (format === "messages") {
    return { ...meta, messages: messages.map((m) => ({ role: m.role, content: m.content })), images };
  }
  if (format === "sharegpt") {
    const [system, ...rest] = messages;
    return {
      ...meta,
      system: system!.content,
      conversations: rest.map((m) => ({ from: m.role === "assistant" ? "gpt" : "human", value: m.content })),
      images,
    };
  }
  return {
    ...meta,
    question: traj.question,
    answer: traj.answerTag ?? traj.final?.answer ?? null,
    ...(source.row ? { ground_truth: source.row.answers, correct: source.row.correct } : {}),
    images,
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    tool_calls: traj.toolCalls.length,
  };
}

/** The filter report written beside an export: `sft.jsonl` → `sft.filter.json`. */
function filterReportPath(out: string): string {
  return `${out.replace(/\.jsonl?$/i, "")}.filter.json`;
}

/** Exports trajectories as JSONL with their images beside it; applies the consistency filters when asked. */
export async function exportTrajectories(options: ExportOptions): Promise<ExportReport> {
  const out = resolve(options.out);
  // Refused before any work (and before the images directory beside it is made): a pipe, device or directory.
  outputTarget(out);
  outputTarget(filterReportPath(out));
  mkdirSync(dirname(out), { recursive: true });
  let sources: Source[];
  const notApplied: ExportReport["notApplied"] = {};
  if (options.runDir) {
    readManifest(options.runDir);
    sources = readResults(options.runDir).map((row) => ({ id: row.id, threadId: row.threadId, row }));
  } else {
    sources = (options.threads ?? []).map((t) => ({ id: t, threadId: t }));
    if (options.filter === "consistent" || options.format === "plan") notApplied.correct = "no verdicts for bare threads: export a run directory to keep only judged-correct answers";
  }
  const consistent = options.filter === "consistent";
  if (consistent && !options.checkModel) notApplied.model_check = "no check model given (--check-model-url)";
  const removed = Object.fromEntries(FILTERS.map((f) => [f, 0])) as Record<FilterName, number>;
  const rejections: Rejection[] = [];
  const files = new ImageFiles(out, options.images);
  const lines: string[] = [];
  let missing = 0;
  for (const source of sources) {
    const state = await readThreadState(options.reader, source.threadId);
    if (!state) {
      missing++;
      rejections.push({ id: source.id, threadId: source.threadId, filter: "missing", detail: "no such thread in the checkpointer" });
      continue;
    }
    const traj = toTrajectory(source.threadId, state);
    const checks: Array<[FilterName, () => Promise<string | null> | string | null]> = [
      ["unfinished", () => (traj.final ? null : "the thread has no final answer (unfinished or failed)")],
    ];
    if (consistent || options.format === "plan") {
      checks.push(["format", () => formatProblem(traj)]);
      if (source.row) checks.push(["correct", () => (source.row!.correct ? null : `judged wrong (${source.row!.method}): answered ${JSON.stringify(source.row!.answerTag ?? source.row!.prediction)}, expected ${JSON.stringify(source.row!.answers)}`)]);
    }
    if (consistent) {
      checks.push(["tool_error", () => toolErrorProblem(traj)], ["recrop", () => recropProblem(traj)], ["blank", () => blankProblem(traj, options.images)]);
      if (options.checkModel) checks.push(["model_check", () => modelCheckProblem(traj, options.checkModel!)]);
    }
    let rejected = false;
    for (const [name, check] of checks) {
      const problem = await check();
      if (problem) {
        removed[name]++;
        rejections.push({ id: source.id, threadId: source.threadId, filter: name, detail: problem });
        rejected = true;
        break;
      }
    }
    if (rejected) continue;
    lines.push(JSON.stringify(await render(options.format, traj, source, files)));
  }
  writeAtomic(out, lines.length ? `${lines.join("\n")}\n` : "");
  const report: ExportReport = { out, imagesDir: files.dir, considered: sources.length, exported: lines.length, removed, notApplied, missing, rejections };
  writeAtomic(filterReportPath(out), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

export function formatExportReport(r: ExportReport, filter: "consistent" | "none"): string {
  const lines = [`exported ${r.exported} of ${r.considered} trajectories to ${r.out} (images in ${r.imagesDir})`];
  const removed = Object.entries(r.removed).filter(([, n]) => n > 0);
  if (filter === "consistent" || removed.length) {
    lines.push(`removed: ${FILTERS.map((f) => `${f} ${r.removed[f]}`).join(", ")}${r.missing ? `; missing threads ${r.missing}` : ""}`);
  }
  for (const [f, why] of Object.entries(r.notApplied)) lines.push(`not applied: ${f} (${why})`);
  return lines.join("\n");
}
