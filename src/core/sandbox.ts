// The code sandbox port: what runs model-written Python in isolation (tools/code/sandbox.ts, with bubblewrap) and what the code tool asks of it.

/** Where every image of a run is readable inside the sandbox: img_N.<ext>. */
export const SANDBOX_IMAGES_DIR = "/mnt/data/images";
/** Where the code saves the images it makes (R1V4's convention); each file there becomes a new image. */
export const SANDBOX_OUTPUT_DIR = "/mnt/data/temp_processed_images";
/** The code's working directory; a relative input path is made readable relative to it. */
export const SANDBOX_CWD = "/mnt/data/work";

export interface SandboxLimits {
  /** Wall clock; at the limit the whole process group is killed. */
  timeoutMs: number;
  /** CPU time (RLIMIT_CPU). */
  cpuSeconds: number;
  /** Address space (RLIMIT_AS). */
  memoryBytes: number;
  /** Processes and threads (RLIMIT_NPROC). */
  maxProcesses: number;
  /** Size of one file written (RLIMIT_FSIZE). */
  maxFileBytes: number;
  /** Bytes of stdout, and of stderr, kept; the rest is counted and dropped. */
  maxOutputBytes: number;
  /** Files read back from SANDBOX_OUTPUT_DIR; more are counted, not read. */
  maxOutputFiles: number;
}

/** A file the code may read: read-only, at its sandbox path (absolute, or relative to SANDBOX_CWD). */
export interface SandboxInput {
  sandboxPath: string;
  bytes: Buffer;
}

export interface SandboxRequest {
  code: string;
  /** Each readable (read-only) at its sandboxPath, and nothing else of the host's files. */
  inputs: SandboxInput[];
  /** Files already in SANDBOX_OUTPUT_DIR when the code starts (images earlier calls made), by file name; reported back only if the code changes them. */
  previousOutputs?: Array<{ name: string; bytes: Buffer }>;
  limits: SandboxLimits;
  signal?: AbortSignal;
}

export interface SandboxOutputFile {
  name: string;
  /** The sandbox path: SANDBOX_OUTPUT_DIR/name. */
  path: string;
  bytes: Buffer;
}

export interface SandboxResult {
  exitCode: number | null;
  signal: string | null;
  /** One sentence when a limit or the sandbox stopped the code; null when it simply exited (a Python exception is exit code 1 with its traceback). */
  problem: string | null;
  stdout: string;
  stderr: string;
  /** Bytes dropped beyond maxOutputBytes. */
  stdoutCut: number;
  stderrCut: number;
  /** New or changed files under SANDBOX_OUTPUT_DIR, by name, at most maxOutputFiles. */
  files: SandboxOutputFile[];
  /** Files beyond maxOutputFiles, or skipped (not regular files, too big). */
  filesSkipped: number;
  ms: number;
}

/** Whether the sandbox can run here; else one line naming what is missing and how to install it. */
export type SandboxProbe = { ok: true } | { ok: false; message: string };

/** Runs code in isolation. createDeps gives the bubblewrap sandbox; tests may give another. */
export interface CodeSandbox {
  probe(): Promise<SandboxProbe>;
  run(request: SandboxRequest): Promise<SandboxResult>;
}
