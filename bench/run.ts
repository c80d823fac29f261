// `npm run bench [-- --quick] [-- --only NAME[,NAME]]`: runs the benchmarks, writes
// bench/results/<name>.json and regenerates BENCHMARKS.md from all stored results
// (`--render` only regenerates BENCHMARKS.md).
// --quick is a smoke run for CI (well under a minute): fewer repetitions and sizes, results written
// to bench/results/quick/, BENCHMARKS.md untouched, and nothing about timing is checked.
// The exit code is non-zero only when a benchmark could not run correctly (e.g. the bare loop and
// Loupe did not send identical requests); missed targets are reported, never failed.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkpoints } from "./checkpoints.js";
import { code } from "./code.js";
import { concurrency } from "./concurrency.js";
import { imageWork } from "./image-work.js";
import { latency } from "./latency.js";
import { memory } from "./memory.js";
import { defaultCacheDir, machineInfo, RESULTS_DIR, ROOT, tempDir, type Benchmark, type MachineInfo, type TargetRow } from "./lib/common.js";
import { renderMarkdown, type StoredResult } from "./lib/report.js";
import { overhead } from "./overhead.js";
import { prefix } from "./prefix.js";
import { startup } from "./startup.js";

export const BENCHMARKS: Benchmark<any>[] = [overhead, checkpoints, imageWork, concurrency, prefix, latency, memory, code, startup];

function usage(): never {
  console.error(`usage: npm run bench [-- --quick] [-- --only ${BENCHMARKS.map((b) => b.name).join("|")}[,…]] [-- --render]`);
  process.exit(2);
}

function parseArgs(argv: string[]): { quick: boolean; only: string[] | null; render: boolean } {
  let quick = false;
  let render = false;
  let only: string[] | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--quick") quick = true;
    else if (a === "--render") render = true;
    else if (a === "--only") only = (argv[++i] ?? usage()).split(",").map((s) => s.trim()).filter(Boolean);
    else if (a.startsWith("--only=")) only = a.slice("--only=".length).split(",").map((s) => s.trim()).filter(Boolean);
    else if (a === "--help" || a === "-h") usage();
    else {
      console.error(`unknown argument ${a}`);
      usage();
    }
  }
  const names = new Set(BENCHMARKS.map((b) => b.name));
  for (const n of only ?? []) {
    if (!names.has(n)) {
      console.error(`no benchmark named ${n}; known: ${[...names].join(", ")}`);
      process.exit(2);
    }
  }
  return { quick, only, render };
}

async function writeReport(): Promise<void> {
  const stored: StoredResult[] = [];
  for (const bench of BENCHMARKS) {
    const path = join(RESULTS_DIR, `${bench.name}.json`);
    if (existsSync(path)) stored.push(JSON.parse(await readFile(path, "utf8")) as StoredResult);
  }
  await writeFile(join(ROOT, "BENCHMARKS.md"), renderMarkdown(BENCHMARKS, stored));
}

function commandLine(argv: string[]): string {
  return `npm run bench${argv.length ? ` -- ${argv.join(" ")}` : ""}`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { quick, only, render } = parseArgs(argv);
  if (render) {
    // Only rebuild BENCHMARKS.md from the stored results (e.g. after changing how it is written).
    await writeReport();
    console.log("Wrote BENCHMARKS.md from bench/results/*.json");
    return;
  }
  const selected = BENCHMARKS.filter((b) => !only || only.includes(b.name));
  const outDir = quick ? join(RESULTS_DIR, "quick") : RESULTS_DIR;
  await mkdir(outDir, { recursive: true });
  const scratch = await tempDir(tmpdir(), "loupe-bench-");
  const machine: MachineInfo = machineInfo();
  const command = commandLine(argv);
  const started = performance.now();
  console.log(`Loupe benchmarks${quick ? " (quick: smoke run, timings not meaningful)" : ""}: ${selected.map((b) => b.name).join(", ")}`);
  console.log(`${machine.cpu}, ${machine.cores} cores, ${machine.memory}, ${machine.os}, Node ${machine.node}`);
  const failures: string[] = [];
  const targets: Array<TargetRow & { bench: string }> = [];
  try {
    for (const bench of selected) {
      console.log(`\n== ${bench.title} (${bench.name})`);
      const t0 = performance.now();
      try {
        const result = await bench.run({ quick, tmp: scratch.dir, cacheDir: defaultCacheDir(), log: (m) => console.log(m) });
        const stored: StoredResult = { name: bench.name, title: bench.title, quick, command, machine: { ...machineInfo(), date: new Date().toISOString() }, durationMs: Math.round(performance.now() - t0), result };
        await writeFile(join(outDir, `${bench.name}.json`), `${JSON.stringify(stored, null, 2)}\n`);
        for (const t of bench.targets(result)) {
          targets.push({ ...t, bench: bench.name });
          console.log(`  ${quick ? "·" : t.holds ? "✓" : "✗"} ${t.target}: ${t.measured}`);
        }
        console.log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (err) {
        failures.push(bench.name);
        console.error(`  ${bench.name} failed: ${(err as Error).stack ?? String(err)}`);
      }
    }
  } finally {
    await scratch.cleanup();
  }

  if (!quick) {
    await writeReport();
    console.log(`\nWrote ${join("bench", "results")}/*.json and BENCHMARKS.md`);
  } else {
    console.log(`\nQuick run: results in ${join("bench", "results", "quick")}/ (BENCHMARKS.md not touched; no timing is checked)`);
  }
  console.log(`Total ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (failures.length) {
    console.error(`Benchmarks that could not run correctly: ${failures.join(", ")}`);
    process.exitCode = 1;
  }
}

await main();
