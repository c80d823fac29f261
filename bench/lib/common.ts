// Shared pieces of the benchmarks: statistics, machine description, test images, settings, temp dirs.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { cpus, platform, release, tmpdir, totalmem, type as osType } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import sharp from "sharp";
import { resolveConfig, type LoupeConfig } from "../../src/core/config.js";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const RESULTS_DIR = join(ROOT, "bench", "results");

/** What every benchmark gets from the runner. */
export interface BenchContext {
  quick: boolean;
  /** A directory for this run's scratch files, removed at the end. */
  tmp: string;
  /** Images generated once and reused across runs (they are deterministic). */
  cacheDir: string;
  log(message: string): void;
}

/** One benchmark: a name for --only, a title, and a function producing a JSON-serialisable result. */
export interface Benchmark<R = unknown> {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<R>;
  /** Markdown for BENCHMARKS.md from a stored result. */
  markdown(result: R): string;
  /** Target rows for the summary table. */
  targets(result: R): TargetRow[];
}

export interface TargetRow {
  target: string;
  measured: string;
  holds: boolean;
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summary(xs: number[]): Summary {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** Least-squares slope of log(y) against log(x): the growth exponent. */
export function logLogSlope(xs: number[], ys: number[]): number {
  const lx = xs.map(Math.log);
  const ly = ys.map(Math.log);
  const mx = sum(lx) / lx.length;
  const my = sum(ly) / ly.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i]! - mx) * (ly[i]! - my);
    den += (lx[i]! - mx) ** 2;
  }
  return num / den;
}

export function round(n: number, digits = 2): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** A number for a table: a few significant digits, no exponent. */
export function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return String(n);
  return round(n, digits).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${fmt(n / 1024 ** 3, 2)} GiB`;
  if (n >= 1024 ** 2) return `${fmt(n / 1024 ** 2, 1)} MiB`;
  if (n >= 1024) return `${fmt(n / 1024, 1)} KiB`;
  return `${Math.round(n)} B`;
}

export function pct(x: number, digits = 1): string {
  return `${fmt(x * 100, digits)}%`;
}

export function sha256(text: string | Buffer): string {
  return createHash("sha256").update(text).digest("hex");
}

// ---------------------------------------------------------------------------------------------
// Machine and run description
// ---------------------------------------------------------------------------------------------

export interface MachineInfo {
  os: string;
  cpu: string;
  cores: number;
  memory: string;
  node: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    os: `${osType()} ${release()} (${platform()})`,
    cpu: list[0]?.model?.trim() || "unknown",
    cores: list.length,
    memory: fmtBytes(totalmem()),
    node: process.version,
    date: new Date().toISOString(),
  };
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

export async function tempDir(parent: string, prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(join(parent, prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function defaultCacheDir(): string {
  return join(tmpdir(), "loupe-bench-cache");
}

/**
 * A photo-like JPEG: the harbour scene (gradient, a blue sign with white lettering, a sun) with
 * per-pixel noise, so it compresses like a photograph (a few bits per pixel), not like a flat
 * synthetic gradient. Deterministic for a given size, seed and noise level; cached on disk.
 */
export async function photoJpeg(cacheDir: string, width: number, height: number, seed = 1, sigma = 10): Promise<string> {
  const path = join(cacheDir, `photo-${width}x${height}-s${seed}-n${sigma}.jpg`);
  if (existsSync(path)) return path;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
  <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#87a9c9"/><stop offset="1" stop-color="#2c4a38"/></linearGradient></defs>
  <rect width="100%" height="100%" fill="url(#g)"/>
  <rect x="${width * 0.27}" y="${height * 0.27}" width="${width * 0.2}" height="${height * 0.12}" fill="#1f4fa8"/>
  <text x="${width * 0.29}" y="${height * 0.35}" font-size="${height * 0.06}" font-family="sans-serif" fill="white">LOUPE-${seed}</text>
  <rect x="${width * 0.55}" y="${height * 0.55}" width="${width * 0.1}" height="${height * 0.1}" fill="#d04020"/>
  <circle cx="${width * 0.8}" cy="${height * 0.2}" r="${height * 0.05}" fill="#f0e060"/>
</svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const v = data[i]! + (((s >>> 24) - 128) / 128) * sigma;
    data[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  const jpeg = await sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } })
    .jpeg({ quality: 85 })
    .toBuffer();
  await mkdir(cacheDir, { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, jpeg);
  await rename(tmp, path);
  return path;
}

export async function fileBytes(path: string): Promise<Buffer> {
  return readFile(path);
}

// ---------------------------------------------------------------------------------------------
// Loupe settings for benchmarks
// ---------------------------------------------------------------------------------------------

/**
 * Settings with no environment leaking in; retries off so a broken run fails instead of waiting;
 * no search cache, so every run does its work live.
 */
export function benchSettings(overrides: Partial<LoupeConfig> & { modelUrl: string; dataDir: string }): LoupeConfig {
  // The benchmarks measure the image tools' loop (and what the bare loop does): the code tool is off.
  return resolveConfig({ model: "scripted-vl", retries: 0, retryBaseMs: 10, timeoutMs: 120_000, searchCache: "live", code: "off", ...overrides }, {});
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

/**
 * Peak resident set size of this process, bytes. On Linux from VmHWM, the high-water mark of the
 * current address space: getrusage's maxRSS survives exec, so a forked child would report at least
 * the parent's RSS at the time of the fork.
 */
export function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

/** Full garbage collection between timed runs, so one run's garbage is not collected inside the next. */
export const collectGarbage: () => void = (() => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (() => void) | undefined;
  return () => gc?.();
})();
