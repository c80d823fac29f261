// The code tool's sandbox: runs model-written Python in a fresh bubblewrap process per call, isolated and limited.
import { spawn } from "node:child_process";
import { accessSync, constants as fsConstants, lstatSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from "node:fs";
import { chmod, chown, lstat, mkdir, mkdtemp, open, readdir, rm, writeFile } from "node:fs/promises";
import { constants as osConstants, release, tmpdir } from "node:os";
import { delimiter, join, posix } from "node:path";
import {
  SANDBOX_CWD,
  SANDBOX_OUTPUT_DIR,
  type SandboxInput,
  type SandboxLimits,
  type SandboxOutputFile,
  type SandboxProbe,
  type SandboxRequest,
  type SandboxResult,
} from "../../src/core/sandbox.js";

// The directories and the request/result types are the port's (src/core/sandbox.ts), re-exported here.
export { SANDBOX_CWD, SANDBOX_IMAGES_DIR, SANDBOX_OUTPUT_DIR } from "../../src/core/sandbox.js";
export type { SandboxInput, SandboxLimits, SandboxOutputFile, SandboxProbe, SandboxRequest, SandboxResult } from "../../src/core/sandbox.js";

/** Timeout 30 s, CPU 30 s, 2 GiB of address space, 64 processes, 64 MiB per file, 32 KiB per stream, 8 files. */
export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = Object.freeze({
  timeoutMs: 30_000,
  cpuSeconds: 30,
  memoryBytes: 2 * 1024 ** 3,
  maxProcesses: 64,
  maxFileBytes: 64 * 1024 ** 2,
  maxOutputBytes: 32 * 1024,
  maxOutputFiles: 8,
});

const PYTHON = "/usr/bin/python3";
const PRLIMIT = "/usr/bin/prlimit";
const CELL_PATH = "/run/loupe/cell.py";
/** The unprivileged uid the code runs as inside the sandbox (and on the host when Loupe runs as root). */
const NOBODY = 65534;
const TMPFS_MIN_BYTES = 64 * 1024 ** 2;
/** More entries than this under the output dir stop the code. */
const MAX_OUTPUT_ENTRIES = 4096;
const MAX_OUTPUT_DEPTH = 32;
const POLL_MS = 200;
/** Paths the sandbox mounts itself: an input may be neither one of them, inside one, nor above one. */
const SYSTEM_MOUNTS = ["/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/dev", "/run/loupe", SANDBOX_OUTPUT_DIR];
/** Writable tmpfs mounts an input may be placed inside. */
const SCRATCH_MOUNTS = ["/tmp", SANDBOX_CWD];
const THREAD_VARS = ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "OPENCV_FOR_THREADS_NUM"];

// ---------------------------------------------------------------------------------------------
// Paths and the bwrap command line
// ---------------------------------------------------------------------------------------------

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** The absolute, normalised sandbox path of an input; throws when it would clash with the sandbox's own mounts. */
function resolveInputPath(sandboxPath: string): string {
  if (!sandboxPath || sandboxPath.includes("\0")) throw new Error(`sandbox input path ${JSON.stringify(sandboxPath)} is empty or has a NUL byte`);
  const abs = posix.resolve(SANDBOX_CWD, sandboxPath);
  const clash = [...SYSTEM_MOUNTS, ...SCRATCH_MOUNTS].find((m) => within(m, abs) || (within(abs, m) && !SCRATCH_MOUNTS.includes(m)));
  if (abs === "/" || clash) throw new Error(`sandbox input path ${JSON.stringify(sandboxPath)} (${abs}) clashes with the sandbox's ${clash ?? "/"}`);
  return abs;
}

interface BoundInput {
  abs: string;
  bytes: Buffer;
}

/** Inputs by absolute sandbox path; the same path twice must carry the same bytes, and no input may sit inside another. */
function planInputs(inputs: SandboxInput[]): BoundInput[] {
  const byPath = new Map<string, Buffer>();
  for (const input of inputs) {
    const abs = resolveInputPath(input.sandboxPath);
    const seen = byPath.get(abs);
    if (seen && !seen.equals(input.bytes)) throw new Error(`two different sandbox inputs share the path ${abs}`);
    byPath.set(abs, input.bytes);
  }
  const paths = [...byPath.keys()];
  for (const a of paths) {
    const parent = paths.find((b) => b !== a && within(a, b));
    if (parent) throw new Error(`sandbox input ${a} would sit inside the input file ${parent}`);
  }
  return paths.map((abs) => ({ abs, bytes: byPath.get(abs)! }));
}

function checkName(name: string): string {
  const norm = posix.normalize(name);
  if (!name || name.includes("\0") || norm.startsWith("../") || norm === ".." || posix.isAbsolute(norm) || norm === ".") {
    throw new Error(`previous output name ${JSON.stringify(name)} must be a file name under ${SANDBOX_OUTPUT_DIR}`);
  }
  return norm;
}

interface Layout {
  dir: string;
  cell: string;
  out: string;
  /** Host file of each input, in the same order as the inputs. */
  inputFiles: string[];
}

function envArgs(): string[] {
  const env: Record<string, string> = { PATH: "/usr/bin:/bin", HOME: "/tmp", TMPDIR: "/tmp", LANG: "C.UTF-8", MPLCONFIGDIR: "/tmp" };
  for (const v of THREAD_VARS) env[v] = "1";
  return ["--clearenv", ...Object.entries(env).flatMap(([k, v]) => ["--setenv", k, v])];
}

function limitArgs(limits: SandboxLimits): string[] {
  const cpu = Math.max(1, Math.ceil(limits.cpuSeconds));
  return [
    `--cpu=${cpu}:${cpu + 1}`,
    `--as=${Math.floor(limits.memoryBytes)}`,
    `--nproc=${Math.max(1, Math.floor(limits.maxProcesses))}`,
    `--fsize=${Math.max(0, Math.floor(limits.maxFileBytes))}`,
    "--core=0",
  ];
}

/** The whole bwrap command line: namespaces, read-only system, tmpfs scratch, the inputs, the output dir, limits, Python. */
function bwrapArgs(layout: Layout, inputs: BoundInput[], limits: SandboxLimits): string[] {
  const tmpfsBytes = String(Math.max(TMPFS_MIN_BYTES, Math.floor(limits.maxFileBytes)));
  return [
    "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
    "--uid", String(NOBODY), "--gid", String(NOBODY), "--hostname", "sandbox",
    "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
    "--ro-bind", "/etc/alternatives", "/etc/alternatives", "--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache",
    "--proc", "/proc", "--dev", "/dev",
    "--size", tmpfsBytes, "--tmpfs", "/dev/shm", "--size", tmpfsBytes, "--tmpfs", "/tmp", "--size", tmpfsBytes, "--tmpfs", SANDBOX_CWD,
    ...inputs.flatMap((input, i) => ["--ro-bind", layout.inputFiles[i]!, input.abs]),
    "--bind", layout.out, SANDBOX_OUTPUT_DIR,
    "--ro-bind", layout.cell, CELL_PATH,
    // bwrap's own tmpfs (the root, /dev) have no size limit: only the mounts above stay writable.
    "--remount-ro", "/dev", "--remount-ro", "/",
    ...envArgs(), "--chdir", SANDBOX_CWD, "--json-status-fd", "3",
    "--", PRLIMIT, ...limitArgs(limits), PYTHON, "-I", "-B", CELL_PATH,
  ];
}

let bwrapPath: string | null | undefined;

/** bwrap's absolute path (PATH, then the usual system dirs), or null when it is not installed. */
function findBwrap(): string | null {
  if (bwrapPath !== undefined) return bwrapPath;
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/bin", "/usr/local/bin"].filter((d) => d.startsWith("/"));
  bwrapPath = null;
  for (const dir of dirs) {
    try {
      accessSync(join(dir, "bwrap"), fsConstants.X_OK);
      bwrapPath = join(dir, "bwrap");
      break;
    } catch {
      // not here
    }
  }
  return bwrapPath;
}

function runningAsRoot(): boolean {
  return process.getuid?.() === 0;
}

// ---------------------------------------------------------------------------------------------
// The per-call directory
// ---------------------------------------------------------------------------------------------

/** Files owned by the sandbox's uid when Loupe is root, so the code (as 65534) can write them. */
async function giveToSandbox(path: string): Promise<void> {
  if (runningAsRoot()) await chown(path, NOBODY, NOBODY);
}

async function writePreviousOutputs(out: string, previous: Map<string, Buffer>): Promise<void> {
  for (const [name, bytes] of previous) {
    const file = join(out, name);
    const parent = posix.dirname(name);
    if (parent !== ".") {
      await mkdir(join(out, parent), { recursive: true, mode: 0o755 });
      for (let p = parent; p !== "."; p = posix.dirname(p)) await giveToSandbox(join(out, p));
    }
    await writeFile(file, bytes, { mode: 0o644 });
    await giveToSandbox(file);
  }
}

/** Fills the fresh per-call dir: the cell, the inputs (read-only for the code), and the output dir. */
async function prepareLayout(dir: string, code: string, inputs: BoundInput[], previous: Map<string, Buffer>): Promise<Layout> {
  // bwrap runs as 65534 when Loupe is root: it must be able to reach the files it binds.
  await chmod(dir, runningAsRoot() ? 0o711 : 0o700);
  const layout: Layout = { dir, cell: join(dir, "cell.py"), out: join(dir, "out"), inputFiles: [] };
  await writeFile(layout.cell, code, { mode: 0o644 });
  for (const [i, input] of inputs.entries()) {
    const file = join(dir, `input-${i}`);
    await writeFile(file, input.bytes, { mode: 0o644 });
    layout.inputFiles.push(file);
  }
  await mkdir(layout.out, { mode: 0o755 });
  await giveToSandbox(layout.out);
  await writePreviousOutputs(layout.out, previous);
  return layout;
}

function shellRemove(dir: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const child = spawn("/bin/sh", ["-c", 'chmod -R u+rwx -- "$1" 2>/dev/null; rm -rf -- "$1"', "sh", dir], { stdio: "ignore" });
    child.on("error", () => resolve());
    child.on("close", () => resolve());
  });
}

/** Removes the per-call dir, even when the code left folders without permissions in it; rm(1) for many files (much faster than fs.rm). */
async function removeLayout(dir: string, manyFiles: boolean): Promise<void> {
  if (manyFiles) await shellRemove(dir);
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 2 });
  } catch {
    await shellRemove(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// The output dir: walked without following links, read back after the run
// ---------------------------------------------------------------------------------------------

interface OutputWalk {
  /** Regular files, relative to the output dir with "/" separators. */
  files: string[];
  /** Entries that are neither regular files nor folders (links, fifos, sockets), or folders too deep. */
  others: number;
  entries: number;
  /** More than `maxEntries` entries: the walk stopped early. */
  truncated: boolean;
}

async function listDir(dir: string): Promise<import("node:fs").Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** Every entry under `root`, breadth first, by directory listings alone (never following a link); lists no more folders once past `maxEntries`. */
async function walkOutputs(root: string, maxEntries: number): Promise<OutputWalk> {
  const walk: OutputWalk = { files: [], others: 0, entries: 0, truncated: false };
  const queue: Array<{ rel: string; depth: number }> = [{ rel: "", depth: 0 }];
  for (let next = queue.shift(); next; next = queue.shift()) {
    const listing = await listDir(join(root, next.rel));
    walk.entries += listing.length;
    for (const entry of listing) {
      const rel = next.rel ? `${next.rel}/${entry.name}` : entry.name;
      if (entry.isDirectory() && next.depth < MAX_OUTPUT_DEPTH) queue.push({ rel, depth: next.depth + 1 });
      else if (entry.isFile()) walk.files.push(rel);
      else walk.others++;
    }
    // The listing in hand is kept whole; no folder is listed beyond the limit.
    if (walk.entries > maxEntries) return { ...walk, truncated: true };
  }
  return walk;
}

/** Total size of `files` under `root`, a batch of lstat calls at a time. */
async function totalBytes(root: string, files: string[]): Promise<number> {
  let total = 0;
  for (let i = 0; i < files.length; i += 64) {
    const sizes = await Promise.all(files.slice(i, i + 64).map((f) => lstat(join(root, f)).then((st) => st.size, () => 0)));
    for (const size of sizes) total += size;
  }
  return total;
}

/** A regular file's bytes, refusing links and anything over `maxBytes`; null when it is not such a file. */
async function readRegularFile(path: string, maxBytes: number): Promise<Buffer | null> {
  let handle;
  try {
    handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    const st = await handle.stat();
    if (!st.isFile() || st.size > maxBytes) return null;
    return await handle.readFile();
  } catch {
    return null;
  } finally {
    await handle?.close();
  }
}

/** New or changed regular files of the output dir, sorted by name, capped in number and size. */
async function collectOutputs(out: string, previous: Map<string, Buffer>, limits: SandboxLimits): Promise<{ files: SandboxOutputFile[]; skipped: number; entries: number }> {
  const walk = await walkOutputs(out, MAX_OUTPUT_ENTRIES);
  const files: SandboxOutputFile[] = [];
  let skipped = walk.others;
  for (const name of walk.files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const before = previous.get(name);
    const full = files.length >= limits.maxOutputFiles;
    // Past the cap only earlier calls' images are read, to tell whether they changed.
    const bytes = full && !before ? null : await readRegularFile(join(out, name), limits.maxFileBytes);
    if (before && bytes?.equals(before)) continue; // an earlier call's image, untouched
    if (bytes && !full) files.push({ name, path: `${SANDBOX_OUTPUT_DIR}/${name}`, bytes });
    else skipped++;
  }
  return { files, skipped, entries: walk.entries };
}

// ---------------------------------------------------------------------------------------------
// Running bwrap: output kept up to a cap, wall clock, cancellation, output-dir watch
// ---------------------------------------------------------------------------------------------

/** The first `cap` bytes of a stream; the rest is only counted. */
class Capture {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    const room = Math.max(0, this.cap - this.kept);
    const take = Math.min(room, chunk.length);
    if (take > 0) {
      // Copy a partial chunk, so the dropped rest of it is not kept alive.
      this.chunks.push(take === chunk.length ? chunk : Buffer.from(chunk.subarray(0, take)));
      this.kept += take;
    }
    this.dropped += chunk.length - take;
  }

  /** The kept bytes as UTF-8, ending before a character the cap cut in two; and the bytes dropped. */
  result(): { text: string; cut: number } {
    const all = Buffer.concat(this.chunks);
    const end = this.dropped > 0 ? utf8Boundary(all) : all.length;
    return { text: all.subarray(0, end).toString("utf8"), cut: this.dropped + all.length - end };
  }
}

/** Length of `buf` without an incomplete UTF-8 sequence at its end. */
function utf8Boundary(buf: Buffer): number {
  for (let back = 1; back <= Math.min(4, buf.length); back++) {
    const byte = buf[buf.length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? buf.length - back : buf.length;
  }
  return buf.length;
}

type StopReason = { kind: "timeout" } | { kind: "abort" } | { kind: "output"; detail: string };

interface RunOutcome {
  /** bwrap's exit status: the code's, or 128 + the signal that killed it. */
  code: number | null;
  /** The signal that ended bwrap itself (SIGKILL when Loupe stopped the call). */
  signal: NodeJS.Signals | null;
  /** bwrap reported the code's process: the sandbox was set up. */
  started: boolean;
  stopped: StopReason | null;
  stdout: { text: string; cut: number };
  stderr: { text: string; cut: number };
}

/** Kills bwrap's process group; bwrap's PID namespace and --die-with-parent take down everything under it. */
function killGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${+(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${+(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}

/** Polls the output dir while the code runs (one walk at a time); stops the code when it holds too many entries or bytes. */
function watchOutputs(out: string, limits: SandboxLimits, stop: (reason: StopReason) => void): { end(): Promise<void> } {
  const maxBytes = Math.max(TMPFS_MIN_BYTES, limits.maxFileBytes, limits.maxOutputFiles * limits.maxFileBytes);
  let ended = false;
  let timer: NodeJS.Timeout | undefined;
  let busy: Promise<void> = Promise.resolve();
  const check = async (): Promise<void> => {
    const walk = await walkOutputs(out, MAX_OUTPUT_ENTRIES);
    if (walk.truncated) stop({ kind: "output", detail: `more than ${MAX_OUTPUT_ENTRIES} files and folders` });
    else if ((await totalBytes(out, walk.files)) > maxBytes) stop({ kind: "output", detail: `more than ${fmtBytes(maxBytes)}` });
  };
  const schedule = () => {
    timer = setTimeout(() => {
      busy = check().finally(() => void (ended || schedule()));
    }, POLL_MS);
  };
  schedule();
  return {
    async end() {
      ended = true;
      clearTimeout(timer);
      await busy;
    },
  };
}

function spawnBwrap(bwrap: string, args: string[]) {
  // detached: bwrap leads its own process group, killed as a whole. No environment reaches it.
  const ids = runningAsRoot() ? { uid: NOBODY, gid: NOBODY } : {};
  return spawn(bwrap, args, { stdio: ["ignore", "pipe", "pipe", "pipe"], detached: true, env: {}, ...ids });
}

/** Runs bwrap to the end (or to a limit) and reports how it ended, with the captured output. */
function runBwrap(bwrap: string, args: string[], out: string, request: SandboxRequest): Promise<RunOutcome> {
  const { limits, signal } = request;
  return new Promise((resolve, reject) => {
    const child = spawnBwrap(bwrap, args);
    const stdout = new Capture(limits.maxOutputBytes);
    const stderr = new Capture(limits.maxOutputBytes);
    let status = "";
    let stopped: StopReason | null = null;
    const stop = (reason: StopReason) => {
      if (stopped) return;
      stopped = reason;
      killGroup(child.pid);
    };
    child.stdout!.on("data", (b: Buffer) => stdout.push(b));
    child.stderr!.on("data", (b: Buffer) => stderr.push(b));
    child.stdio[3]!.on("data", (b: Buffer) => void (status.length < 65_536 && (status += b.toString("utf8"))));
    const timer = setTimeout(() => stop({ kind: "timeout" }), limits.timeoutMs);
    const onAbort = () => stop({ kind: "abort" });
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort(); // aborted while the call was being prepared
    const watcher = watchOutputs(out, limits, stop);
    const finish = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      return watcher.end();
    };
    child.once("error", (err) => {
      killGroup(child.pid);
      void finish().then(() => reject(err));
    });
    child.once("close", (code, sig) => {
      void finish().then(() => {
        const err = stderr.result();
        // bwrap reports its child's pid before it sets up the mounts: a set-up failure after that
        // is exit status 1 with bwrap's own message first, not the code's doing.
        const started = status.includes('"child-pid"') && !(code === 1 && err.text.startsWith("bwrap: "));
        resolve({ code, signal: sig, started, stopped, stdout: stdout.result(), stderr: err });
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// How the call ended, in one sentence for the model
// ---------------------------------------------------------------------------------------------

const SIGNAL_NAMES = new Map<number, string>(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));

/** bwrap exits with 128 + N when the code was killed by signal N. */
function signalOfStatus(code: number | null): string | null {
  if (code === null || code <= 128 || code > 128 + 64) return null;
  return SIGNAL_NAMES.get(code - 128) ?? `signal ${code - 128}`;
}

function seconds(ms: number): string {
  return `${+(ms / 1000).toFixed(1)} s`;
}

function signalSentence(name: string, limits: SandboxLimits): string {
  switch (name) {
    case "SIGXCPU":
      return `the code used more than ${seconds(limits.cpuSeconds * 1000)} of CPU time and was stopped (SIGXCPU)`;
    case "SIGKILL":
      return `the code was killed (SIGKILL): it went on past its CPU time limit of ${seconds(limits.cpuSeconds * 1000)}, or the machine ran out of memory`;
    case "SIGXFSZ":
      return `the code tried to write a file larger than ${fmtBytes(limits.maxFileBytes)}, the file size limit, and was stopped (SIGXFSZ)`;
    case "SIGSEGV":
      return "the code crashed with a segmentation fault (SIGSEGV)";
    case "SIGABRT":
      return "the code aborted (SIGABRT)";
    default:
      return `the code was killed by ${name}`;
  }
}

/** bwrap's own error line ("bwrap: …"), when it failed before the code ran. */
function bwrapError(stderr: string): string | null {
  return stderr.split("\n").find((l) => l.startsWith("bwrap:"))?.trim() ?? null;
}

function describeProblem(o: RunOutcome, limits: SandboxLimits): string | null {
  switch (o.stopped?.kind) {
    case "timeout":
      return `the code ran for more than ${seconds(limits.timeoutMs)} and was stopped`;
    case "abort":
      return "the code was stopped because the run was cancelled";
    case "output":
      return `the code wrote ${o.stopped.detail} under ${SANDBOX_OUTPUT_DIR} and was stopped`;
  }
  if (!o.started) return `the sandbox could not start: ${bwrapError(o.stderr.text) ?? `bwrap ended with ${o.signal ?? `exit status ${o.code}`}`}`;
  if (o.signal) return `the sandbox was killed by ${o.signal}`;
  const name = signalOfStatus(o.code);
  return name ? signalSentence(name, limits) : null;
}

function toResult(o: RunOutcome, collected: { files: SandboxOutputFile[]; skipped: number }, limits: SandboxLimits, t0: number): SandboxResult {
  const killedBy = o.started && !o.signal ? signalOfStatus(o.code) : null;
  return {
    exitCode: o.signal || killedBy ? null : o.code,
    signal: o.signal ?? killedBy,
    problem: describeProblem(o, limits),
    stdout: o.stdout.text,
    stderr: o.stderr.text,
    stdoutCut: o.stdout.cut,
    stderrCut: o.stderr.cut,
    files: collected.files,
    filesSkipped: collected.skipped,
    ms: Math.round(performance.now() - t0),
  };
}

function cancelledResult(t0: number): SandboxResult {
  const problem = "the code was not run because the run was cancelled";
  return { exitCode: null, signal: null, problem, stdout: "", stderr: "", stdoutCut: 0, stderrCut: 0, files: [], filesSkipped: 0, ms: Math.round(performance.now() - t0) };
}

const NO_BWRAP = "the code tool needs bubblewrap (bwrap), which is not installed: apt-get install bubblewrap";

/**
 * Runs `request.code` with /usr/bin/python3 in a fresh bubblewrap sandbox: its own user, network,
 * PID, IPC, mount, UTS and cgroup namespaces, uid 65534, read-only /usr, no environment, only the
 * inputs (read-only, each a single file) and the output dir of the host's files; under the limits.
 * Throws before running anything when an input path clashes with the sandbox's own mounts or
 * bubblewrap is missing (see probeSandbox); a Python error is a result (exit code 1, traceback in stderr).
 */
export async function runInSandbox(request: SandboxRequest): Promise<SandboxResult> {
  const t0 = performance.now();
  const { limits } = request;
  const inputs = planInputs(request.inputs);
  const previous = new Map((request.previousOutputs ?? []).map((p) => [checkName(p.name), p.bytes] as const));
  const bwrap = findBwrap();
  if (!bwrap) throw new Error(NO_BWRAP);
  if (request.signal?.aborted) return cancelledResult(t0);
  const dir = await mkdtemp(join(tmpdir(), "loupe-sandbox-"));
  let entries = 0;
  try {
    const layout = await prepareLayout(dir, request.code, inputs, previous);
    const outcome = await runBwrap(bwrap, bwrapArgs(layout, inputs, limits), layout.out, request);
    const collected = await collectOutputs(layout.out, previous, limits);
    entries = collected.entries;
    return toResult(outcome, collected, limits, t0);
  } finally {
    await removeLayout(dir, entries > 256);
  }
}

// ---------------------------------------------------------------------------------------------
// Probe: does the sandbox work here?
// ---------------------------------------------------------------------------------------------

const PROBE_MODULES: Array<[module: string, pkg: string]> = [
  ["PIL", "python3-pil"],
  ["numpy", "python3-numpy"],
  ["cv2", "python3-opencv"],
];

const PROBE_CODE = `
missing = []
for name in ${JSON.stringify(PROBE_MODULES.map(([m]) => m))}:
    try:
        __import__(name)
    except Exception:
        missing.append(name)
open("${SANDBOX_OUTPUT_DIR}/probe.txt", "w").write(open("probe/input.txt").read())
print("missing:" + ",".join(missing))
`;

const PACKAGES = "apt-get install python3 python3-pil python3-numpy python3-opencv";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** One line for a sandbox that could not start. */
function setupMessage(line: string): string {
  if (/source path|Permission denied/i.test(line) && !/namespace|uid map|setting up/i.test(line)) {
    return `bubblewrap cannot read the code tool's temp files (${line}): when Loupe runs as root, the temp dir (${tmpdir()}, from TMPDIR) must be reachable by uid ${NOBODY}`;
  }
  return `bubblewrap cannot create namespaces here (${line}): unprivileged user namespaces are disabled (in Docker, run the container with --security-opt seccomp=unconfined or allow user namespaces)`;
}

/** The probe's verdict from its sandbox run. */
function judgeProbe(r: SandboxResult): SandboxProbe {
  const prefix = r.problem?.startsWith("the sandbox could not start: ") ? "the sandbox could not start: " : null;
  if (prefix) return { ok: false, message: setupMessage(r.problem!.slice(prefix.length)) };
  const missing = /^missing:(.*)$/m.exec(r.stdout)?.[1]?.split(",").filter(Boolean) ?? null;
  if (missing && missing.length > 0) {
    const pkgs = PROBE_MODULES.filter(([m]) => missing.includes(m)).map(([, p]) => p);
    return { ok: false, message: `the code tool needs ${pkgs.join(", ")} inside the sandbox: ${PACKAGES}` };
  }
  const wrote = r.files.some((f) => f.name === "probe.txt" && f.bytes.toString() === "ok");
  if (missing && wrote && r.exitCode === 0) return { ok: true };
  const why = r.problem ?? (r.stderr.trim().split("\n").at(-1) || `exit status ${r.exitCode}`);
  return { ok: false, message: `the code tool's sandbox does not work here: ${why}` };
}

async function runProbe(): Promise<SandboxProbe> {
  if (!findBwrap()) return { ok: false, message: NO_BWRAP };
  if (!isExecutable(PYTHON)) return { ok: false, message: `the code tool needs Python 3 at ${PYTHON}: ${PACKAGES}` };
  if (!isExecutable(PRLIMIT)) return { ok: false, message: `the code tool needs prlimit at ${PRLIMIT}: apt-get install util-linux` };
  try {
    const limits = { ...DEFAULT_SANDBOX_LIMITS, timeoutMs: 20_000 };
    return judgeProbe(await runInSandbox({ code: PROBE_CODE, inputs: [{ sandboxPath: "probe/input.txt", bytes: Buffer.from("ok") }], limits }));
  } catch (err) {
    return { ok: false, message: `the code tool's sandbox does not work here: ${(err as Error).message.split("\n")[0]}` };
  }
}

let probed: Promise<SandboxProbe> | null = null;

/** How long a working sandbox is believed without probing again, across processes. */
const PROBE_MEMORY_MS = 24 * 60 * 60 * 1000;

/** What a remembered verdict depends on: bwrap, Python and its packages (their mtimes), the user, the kernel, the temp dir. */
function probeKey(): string | null {
  const bwrap = findBwrap();
  if (!bwrap) return null;
  const mtime = (path: string) => {
    try {
      return statSync(path).mtimeMs;
    } catch {
      return 0;
    }
  };
  const uid = process.getuid?.() ?? -1;
  return JSON.stringify([bwrap, mtime(bwrap), mtime(realpathSync(PYTHON)), mtime("/usr/lib/python3/dist-packages"), mtime(PRLIMIT), uid, release(), tmpdir()]);
}

function probeMemoryFile(): string {
  return join(tmpdir(), `loupe-code-probe-${process.getuid?.() ?? "user"}.json`);
}

/** A working sandbox remembered by an earlier process of this user (a file it owns, for the same key, recent), so `loupe ask` need not probe at every start. */
function rememberedOk(key: string | null): boolean {
  if (!key) return false;
  try {
    const file = probeMemoryFile();
    const info = lstatSync(file);
    if (!info.isFile() || info.uid !== (process.getuid?.() ?? info.uid)) return false;
    const memo = JSON.parse(readFileSync(file, "utf8")) as { key?: string; at?: number };
    return memo.key === key && typeof memo.at === "number" && Date.now() - memo.at < PROBE_MEMORY_MS;
  } catch {
    return false;
  }
}

function rememberOk(key: string | null): void {
  if (!key) return;
  try {
    const file = probeMemoryFile();
    const tmp = `${file}.${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ key, at: Date.now() }), { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    // Only a cache: the next process probes again.
  }
}

/** The probe, or a working verdict remembered from an earlier process (only a working one: a failure is checked again). */
async function probeOrRemember(): Promise<SandboxProbe> {
  const key = probeKey();
  if (rememberedOk(key)) return { ok: true };
  const verdict = await runProbe();
  if (verdict.ok) rememberOk(key);
  return verdict;
}

/**
 * Checks, once per process, that bwrap exists, can create its namespaces, and that /usr/bin/python3
 * imports PIL, numpy and cv2 inside it (one real sandbox call, about half a second; a working
 * verdict is remembered for a day in the temp dir, keyed by what it depends on). When not, the
 * message is one line naming what is missing and how to fix it.
 */
export function probeSandbox(): Promise<SandboxProbe> {
  probed ??= probeOrRemember();
  return probed;
}

/** Forgets the probe's cached verdict (and where bwrap was found), for tests. */
export function resetSandboxProbe(): void {
  probed = null;
  bwrapPath = undefined;
}
