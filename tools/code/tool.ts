// The code tool (R1V4's `code {code}`): its schema and spec, whether it is offered, and one call run in the sandbox, the images it saved stored as new sub-images.
import { posix } from "node:path";
import { z } from "zod";
import { ConfigError, ENV_VARS, type CodeMode, type LoupeConfig } from "../../src/core/config.js";
import { ImageInputError, type ImageStore } from "../../src/core/images.js";
import type { ToolSpec } from "../../src/core/protocol.js";
import {
  SANDBOX_CWD,
  SANDBOX_IMAGES_DIR,
  SANDBOX_OUTPUT_DIR,
  type CodeSandbox,
  type SandboxInput,
  type SandboxLimits,
  type SandboxOutputFile,
  type SandboxResult,
} from "../../src/core/sandbox.js";
import type { CodeLimits, ImageRef, ToolResult } from "../../src/core/state.js";
import { bufferStats } from "../image-ops.js";
import { probeSandbox, runInSandbox } from "./sandbox.js";

export const CODE_TOOL_NAME = "code";
/** Most images one code call may add; more files saved are named in a note. */
export const CODE_MAX_IMAGES = 8;

export const codeSchema = z.object({
  code: z.string().trim().min(1).describe("A self-contained Python 3 program. Print what you want to see; save images under /mnt/data/temp_processed_images/ and print their paths."),
});

/** The bubblewrap sandbox (tools/code/sandbox.ts), what createDeps gives the agent. */
export const bubblewrapSandbox: CodeSandbox = { probe: probeSandbox, run: runInSandbox };

/** The sandbox a run's code goes to: the deps' own, else bubblewrap. */
export function sandboxOf(deps: { sandbox?: CodeSandbox }): CodeSandbox {
  return deps.sandbox ?? bubblewrapSandbox;
}

/** The code tool as offered to the model. */
export function codeToolSpec(): ToolSpec {
  const { $schema: _ignored, ...parameters } = z.toJSONSchema(codeSchema) as Record<string, unknown>;
  return {
    name: CODE_TOOL_NAME,
    description:
      "Run Python 3 code in a sandbox (no network) with PIL, numpy and OpenCV (cv2), to crop, zoom, rotate, enhance, annotate or measure images, or to compute. " +
      `Every image is a file: img_N is ${SANDBOX_IMAGES_DIR}/img_N.<ext> (the extension its format has), and each input image is also at the path given with it. ` +
      `Save the images you make under ${SANDBOX_OUTPUT_DIR}/ (e.g. ${SANDBOX_OUTPUT_DIR}/179_<random>.jpg) and print each path: every saved image becomes the next img_N and is shown to you. ` +
      "The printed output comes back as the result. Each call starts fresh: import and open what you need again.",
    parameters,
  };
}

/** Why the code tool cannot be used as `mode` asks: thrown before any model call when the mode is on. */
export class CodeUnavailableError extends ConfigError {
  constructor(message: string) {
    super(`the code tool is on (${ENV_VARS.code}=on or --code on) but cannot run here: ${message}`);
    this.name = "CodeUnavailableError";
  }
}

/** Whether a run offers the code tool: off never; on and auto when the sandbox works (on throws CodeUnavailableError when it does not). */
export async function codeAvailability(sandbox: CodeSandbox, mode: CodeMode): Promise<{ offered: boolean; reason?: string }> {
  if (mode === "off") return { offered: false, reason: `turned off (${ENV_VARS.code}=off)` };
  const probe = await sandbox.probe();
  if (probe.ok) return { offered: true };
  if (mode === "on") throw new CodeUnavailableError(probe.message);
  return { offered: false, reason: probe.message };
}

/** The sandbox's limits for a run's settings. */
export function sandboxLimits(settings: Pick<LoupeConfig, "codeTimeoutMs" | "codeMemoryMb" | "codeOutputBytes">): SandboxLimits {
  return {
    timeoutMs: settings.codeTimeoutMs,
    cpuSeconds: Math.max(1, Math.ceil(settings.codeTimeoutMs / 1000)),
    memoryBytes: settings.codeMemoryMb * 1024 * 1024,
    maxProcesses: 64,
    maxFileBytes: 64 * 1024 * 1024,
    maxOutputBytes: settings.codeOutputBytes,
    // Twice what is kept, so the images the code printed are among those read back.
    maxOutputFiles: 2 * CODE_MAX_IMAGES,
  };
}

/** The limits the system prompt states. */
export function promptLimits(settings: Pick<LoupeConfig, "codeTimeoutMs" | "codeMemoryMb" | "codeOutputBytes">): CodeLimits {
  return { timeoutMs: settings.codeTimeoutMs, memoryMb: settings.codeMemoryMb, outputBytes: settings.codeOutputBytes, maxImages: CODE_MAX_IMAGES };
}

const EXT: Record<ImageRef["mime"], string> = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif" };

/** Where an image is readable inside the sandbox: /mnt/data/images/img_N.<ext>. */
export function sandboxImagePath(ref: Pick<ImageRef, "id" | "mime">): string {
  return `${SANDBOX_IMAGES_DIR}/${ref.id}.${EXT[ref.mime]}`;
}

/** The path the question names for each input image (as R1V4's prompts do) when the code tool is offered; none otherwise. */
export function questionPaths(tools: readonly string[], refs: ImageRef[]): string[] | undefined {
  return tools.includes(CODE_TOOL_NAME) ? refs.map((r) => r.path ?? sandboxImagePath(r)) : undefined;
}

// System directories the sandbox builds itself: an input path there cannot be shown at its own path.
const RESERVED_ROOTS = ["/usr", "/etc", "/proc", "/dev", "/sys", "/run", "/lib", "/lib64", "/bin", "/sbin", "/mnt/data"];

/**
 * Where an input image given as a file path is also readable in the sandbox: the same relative path
 * from the sandbox's working directory, or the same absolute path; undefined for a URL, a path that
 * leaves the working directory, or one in a directory the sandbox builds itself.
 */
export function inputAlias(path: string | undefined): string | undefined {
  if (!path || /^[a-z][a-z0-9+.-]*:/i.test(path)) return undefined;
  const normal = posix.normalize(path);
  if (!posix.isAbsolute(normal)) {
    if (normal === "." || normal.startsWith("..")) return undefined;
    return posix.join(SANDBOX_CWD, normal);
  }
  if (normal === "/" || RESERVED_ROOTS.some((root) => normal === root || normal.startsWith(`${root}/`))) return undefined;
  return normal;
}

/** Every path an image is known by in the sandbox, the first its canonical one. */
function pathsOf(ref: ImageRef): string[] {
  const paths = [sandboxImagePath(ref)];
  if (ref.path?.startsWith(`${SANDBOX_OUTPUT_DIR}/`)) paths.push(ref.path);
  else if (ref.parent === null && ref.path) {
    paths.push(ref.path);
    const alias = inputAlias(ref.path);
    if (alias && alias !== ref.path) paths.push(alias);
  }
  return paths;
}

/** The image a sandbox path names (/mnt/data/images/img_3.jpg, a saved output, an input's path), if any. */
export function imageAtPath(images: ImageRef[], path: string): ImageRef | undefined {
  const byImagesDir = /^\/mnt\/data\/images\/(img_\d+)(\.[a-z]+)?$/.exec(path);
  if (byImagesDir) return images.find((i) => i.id === byImagesDir[1]);
  return images.find((i) => pathsOf(i).includes(path));
}

/** The files of a call: every image at its sandbox paths, earlier outputs in the output directory. */
async function sandboxFiles(store: ImageStore, images: ImageRef[]) {
  const inputs: SandboxInput[] = [];
  const previousOutputs: Array<{ name: string; bytes: Buffer }> = [];
  for (const ref of images) {
    const bytes = await store.read(ref);
    inputs.push({ sandboxPath: sandboxImagePath(ref), bytes });
    if (ref.path?.startsWith(`${SANDBOX_OUTPUT_DIR}/`)) previousOutputs.push({ name: ref.path.slice(SANDBOX_OUTPUT_DIR.length + 1), bytes });
    else if (ref.parent === null) {
      const alias = inputAlias(ref.path);
      if (alias) inputs.push({ sandboxPath: alias, bytes });
    }
  }
  return { inputs, previousOutputs };
}

/** The image the code opened, where that is known: the one whose path the code names first. */
export function openedImage(code: string, images: ImageRef[]): ImageRef | undefined {
  let best: { ref: ImageRef; at: number } | undefined;
  for (const ref of images) {
    for (const path of pathsOf(ref)) {
      const candidates = path.startsWith(`${SANDBOX_CWD}/`) ? [path, path.slice(SANDBOX_CWD.length + 1)] : [path];
      for (const text of candidates) {
        const at = code.indexOf(text);
        if (at >= 0 && (!best || at < best.at)) best = { ref, at };
      }
    }
  }
  return best?.ref;
}

/** Saved files in the order the code printed their paths, then the others by name. */
export function orderOutputs(files: SandboxOutputFile[], stdout: string): SandboxOutputFile[] {
  const printedAt = (f: SandboxOutputFile) => {
    const at = stdout.indexOf(f.path);
    return at >= 0 ? at : Number.POSITIVE_INFINITY;
  };
  return [...files].sort((a, b) => printedAt(a) - printedAt(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The observation's text, R1V4's form with Python's separators: {"result": "…", "type": "code"}. */
export function codeObservation(result: string): string {
  return `{"result": ${JSON.stringify(result)}, "type": "code"}`;
}

/** Text cut to `max` characters: the head and the tail (where a traceback ends), with what was cut said in between. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor(max * 0.6);
  const tail = Math.floor(max * 0.3);
  return `${text.slice(0, head)}\n[… ${(text.length - head - tail).toLocaleString("en-US")} characters cut …]\n${text.slice(text.length - tail)}`;
}

function cutNote(stream: string, bytes: number): string {
  return bytes > 0 ? `\n[${stream} cut: ${bytes.toLocaleString("en-US")} more bytes not shown]` : "";
}

/** The result the model sees: stdout, and when the code failed its stderr (the traceback) and what stopped it. */
export function resultText(run: SandboxResult, maxChars: number): { ok: boolean; text: string } {
  const ok = run.exitCode === 0 && !run.problem;
  let text = run.stdout + cutNote("output", run.stdoutCut);
  if (!ok) {
    const stderr = run.stderr + cutNote("error output", run.stderrCut);
    if (stderr.trim()) text += `${text && !text.endsWith("\n") ? "\n" : ""}${stderr}`;
    const status = run.problem ?? `Error: the code exited with status ${run.exitCode ?? run.signal}.`;
    text += `${text && !text.endsWith("\n") ? "\n" : ""}${status}`;
  }
  return { ok, text: clip(text, maxChars) };
}

export interface CodeCallOptions {
  sandbox: CodeSandbox;
  store: ImageStore;
  settings: LoupeConfig;
  signal?: AbortSignal;
}

/** Stores the files a call saved as new images (at most CODE_MAX_IMAGES), with notes on the rest. */
async function storeOutputs(files: SandboxOutputFile[], parent: string | null, store: ImageStore, skipped: number) {
  const images: ToolResult["images"] = [];
  const notes: string[] = [];
  for (const file of files) {
    if (images.length >= CODE_MAX_IMAGES) {
      notes.push(`the code saved more than ${CODE_MAX_IMAGES} files; only the first ${CODE_MAX_IMAGES} images are kept (${file.path} and later ones are not).`);
      break;
    }
    try {
      const stored = await store.ingest(file.bytes);
      const { stdev } = await bufferStats(await store.read(stored), store.maxInputPixels);
      images.push({ ...stored, op: "code", parent, stdev, path: file.path });
    } catch (err) {
      const why = err instanceof ImageInputError ? err.message : (err as Error).message;
      notes.push(`${file.path} is not used as an image: ${why}.`);
    }
  }
  if (skipped > 0) notes.push(`${skipped} more file${skipped === 1 ? "" : "s"} saved under ${SANDBOX_OUTPUT_DIR} ${skipped === 1 ? "was" : "were"} not read (at most ${CODE_MAX_IMAGES} images per call).`);
  return { images, notes };
}

/** Runs one code call: the run's images in, the printed output and saved images out. Never throws for what the code did. */
export async function runCodeCall(code: string, images: ImageRef[], options: CodeCallOptions): Promise<Omit<ToolResult, "callId" | "ms">> {
  const { inputs, previousOutputs } = await sandboxFiles(options.store, images);
  const run = await options.sandbox.run({ code, inputs, previousOutputs, limits: sandboxLimits(options.settings), signal: options.signal });
  const { ok, text } = resultText(run, options.settings.observationChars);
  const ordered = orderOutputs(run.files, run.stdout);
  const parent = openedImage(code, images)?.id ?? null;
  const out = await storeOutputs(ordered, parent, options.store, run.filesSkipped);
  return { ok, text: codeObservation(text), images: out.images, urls: [], ...(out.notes.length ? { notes: out.notes } : {}) };
}
