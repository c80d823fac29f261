// `loupe eval` as a user runs it: a child process against a scripted model server and a scripted judge, the real SQLite checkpointer.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { baseEnv, runCli as runLoupe, tempDir } from "./helpers.js";
import {
  CORRECT,
  CROPPING,
  EVAL_ITEMS,
  evalJudge,
  evalModel,
  isOpen,
  itemOf,
  maxOverlap,
  testPicture,
  UNTAGGED,
  writeEvalDataset,
} from "./scenarios/eval.js";
import { resolveConfig } from "../src/core/config.js";
import { runEval } from "../src/eval/run.js";
import type { Comparison } from "../src/eval/compare.js";
import type { EvalSummary, ResultRow } from "../src/eval/summary.js";


function runCli(args: string[], env: Record<string, string>, onSpawn?: (kill: () => void) => void) {
  return runLoupe(args, baseEnv({ LOUPE_RETRY_BASE_MS: "10", ...env }), onSpawn);
}

function rowsOf(runDir: string): ResultRow[] {
  return readFileSync(join(runDir, "results.jsonl"), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/** 14 of 20 right: the model's script makes 3 open answers wrong, leaves 1 untagged, and picks 2 wrong options. */
const EXPECTED = CORRECT / EVAL_ITEMS;
const HALF = 1.96 * Math.sqrt((EXPECTED * (1 - EXPECTED)) / EVAL_ITEMS);

let tmp: Awaited<ReturnType<typeof tempDir>>;
let servers: ScriptedModelServer[] = [];
beforeEach(async () => {
  tmp = await tempDir("loupe-eval-");
});
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
  await tmp.cleanup();
});

async function server(script: Parameters<typeof startScriptedModelServer>[0]) {
  const s = await startScriptedModelServer({ onExhausted: "repeat-last", ...script });
  servers.push(s);
  return s;
}

describe("loupe eval", () => {
  it("scores 20 items with a scripted judge: exact accuracy and Wald CI, 4 items in flight, a failing item does not stop the others", async () => {
    const dataset = await writeEvalDataset(tmp.dir);
    const LATENCY = 150;
    // Item 9 (an open item the model would get wrong anyway) fails with a non-retryable 400.
    const model = await server({ script: [evalModel({ fail: [9] })], latencyMs: LATENCY });
    const judge = await server({ script: [evalJudge()], model: "judge-mini" });
    const out = join(tmp.dir, "run");
    const run = await runCli(
      ["eval", dataset, "--json", "--concurrency", "4", "--judge-url", judge.url, "--judge-model", "judge-mini", "--model-url", model.url, "--data-dir", join(tmp.dir, "data"), "--out", out],
      {},
    );
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout) as EvalSummary;
    expect(summary.items).toBe(20);
    expect(summary.accuracy.correct).toBe(CORRECT);
    expect(summary.accuracy.accuracy).toBeCloseTo(0.7, 12);
    expect(summary.accuracy.halfWidth).toBeCloseTo(HALF, 12);
    expect(summary.accuracy.ci95[0]).toBeCloseTo(0.7 - HALF, 12);
    expect(summary.accuracy.ci95[1]).toBeCloseTo(0.7 + HALF, 12);
    const cat = (c: string) => [summary.byCategory[c]!.correct, summary.byCategory[c]!.n];
    expect(cat("open-a")).toEqual([4, 6]); // 2 and 5 wrong
    expect(cat("open-b")).toEqual([4, 6]); // 9 failed, 12 untagged
    expect(cat("mc")).toEqual([6, 8]); // 14 and 17 wrong
    expect(summary.byCategory.mc!.halfWidth).toBeCloseTo(1.96 * Math.sqrt((0.75 * 0.25) / 8), 12);
    expect(summary.errors.count).toBe(1);
    expect(summary.errors.items[0]).toMatchObject({ id: "q09", stage: "agent" });
    expect(summary.errors.items[0]!.message).toMatch(/HTTP 400/);
    expect(summary.toolCalls.histogram).toEqual({ "0": 15, "1": 5 });
    expect(summary.toolCalls.byTool.crop).toMatchObject({ total: 5, items: 5 });
    expect(summary.answered.withoutAnswerTag).toBe(1);
    expect(summary.latencyMs.p50).toBeGreaterThanOrEqual(LATENCY);
    expect(summary.latencyMs.p95).toBeGreaterThanOrEqual(summary.latencyMs.p50);

    // Only tagged open answers went to the judge, and only the <answer> text.
    const judged = judge.chatRequests();
    const judgedItems = judged.map(itemOf).sort((a, b) => a - b);
    expect(judgedItems).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 10, 11]);
    for (const r of judged) expect(JSON.stringify(r.body.messages)).not.toContain("<think>");
    expect(summary.judge).toEqual({ requests: 10, cached: 0 });

    // Multiple choice was scored by option extraction, open answers by the judge.
    const rows = rowsOf(out);
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 20 }, (_, i) => `q${String(i + 1).padStart(2, "0")}`));
    expect(rows.filter((r) => !isOpen(r.index + 1)).every((r) => r.method === "choice")).toBe(true);
    expect(rows.find((r) => r.id === "q13")!.extracted).toEqual(["B"]);
    expect(rows.find((r) => r.index + 1 === UNTAGGED)).toMatchObject({ method: "none", correct: false, answerTag: null });
    expect(rows.find((r) => r.id === "q02")).toMatchObject({ method: "judge", correct: false, judge: { correct: false, model: "judge-mini" } });
    expect(CROPPING.every((k) => rows[k - 1]!.toolsByName.crop === 1 || k === 9)).toBe(true);

    // --concurrency 4: four requests in flight, never more.
    expect(maxOverlap(model.chatRequests(), LATENCY)).toBe(4);
    expect(existsSync(join(out, "report.html"))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, "summary.json"), "utf8")).accuracy.correct).toBe(CORRECT);
    // The progress bar reports on stderr.
    expect(run.stderr).toMatch(/20\/20 \| acc 70\.0%/);
  });

  it("killed halfway (SIGKILL), --resume finishes without rerunning finished items; a rerun is judged from the verdict cache", async () => {
    const dataset = await writeEvalDataset(tmp.dir);
    let killed = false;
    const model = await server({ script: [evalModel({ hang: (k) => k >= 11 && !killed })] });
    const judge = await server({ script: [evalJudge()], model: "judge-mini" });
    const out = join(tmp.dir, "run");
    const data = join(tmp.dir, "data");
    const args = ["eval", dataset, "--json", "--concurrency", "2", "--judge-url", judge.url, "--model-url", model.url, "--data-dir", data, "--out", out];
    const env = { LOUPE_TIMEOUT_MS: "30000" };
    const first = await runCli(args, env, (kill) => {
      const timer = setInterval(() => {
        const done = existsSync(join(out, "results.jsonl")) ? rowsOf(out).length : 0;
        const hanging = model.chatRequests().filter((r) => itemOf(r) >= 11).length;
        if (done >= 10 && hanging >= 2) {
          clearInterval(timer);
          killed = true;
          kill();
        }
      }, 25);
    });
    expect(first.signal).toBe("SIGKILL");
    const finished = rowsOf(out).map((r) => r.id);
    expect(finished).toHaveLength(10);
    const modelBefore = model.chatRequests().length;
    const judgeBefore = judge.chatRequests().length;

    const second = await runCli([...args, "--resume"], env);
    expect(second.stderr).not.toMatch(/^\s+at /m);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(/resuming .*10 of 20 items done, 10 to go/);
    const summary = JSON.parse(second.stdout) as EvalSummary;
    expect(summary.items).toBe(20);
    expect(summary.accuracy.correct).toBe(CORRECT);
    expect(summary.errors.count).toBe(0);

    // Nothing finished before the kill was asked again, of the model or of the judge.
    const after = model.chatRequests().slice(modelBefore).map(itemOf);
    const judgedAfter = judge.chatRequests().slice(judgeBefore).map(itemOf);
    expect(after.filter((k) => k <= 10)).toEqual([]);
    expect(judgedAfter.filter((k) => k <= 10)).toEqual([]);
    // Items 11–20 ran to the end: one request each, two for the ones that crop (16, 20; 12 crops too).
    expect(new Set(after)).toEqual(new Set([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]));
    expect(after.filter((k) => k === 16)).toHaveLength(2);
    expect(after.filter((k) => k === 13)).toHaveLength(1);
    expect(rowsOf(out)).toHaveLength(20);

    // A second run of the same dataset asks the judge nothing new: every verdict is cached.
    const judgeTotal = judge.chatRequests().length;
    const settings = resolveConfig({ modelUrl: model.url, dataDir: data, retries: 1, retryBaseMs: 10 }, {});
    const again = await runEval({ dataset, concurrency: 4, judge: { url: judge.url }, out: join(tmp.dir, "run2"), resume: false, settings, secrets: {}, progress: false, report: false, log: () => {} });
    expect(judge.chatRequests().length).toBe(judgeTotal);
    expect(again.summary.accuracy.correct).toBe(CORRECT);
    expect(again.summary.judge).toEqual({ requests: 0, cached: 11 });
  });

  it("--resume takes the recorded settings for flags left out, and refuses explicitly different ones", async () => {
    const dataset = await writeEvalDataset(tmp.dir);
    const fail = [2];
    const model = await server({ script: [evalModel({ fail })] });
    const judge = await server({ script: [evalJudge()], model: "judge-mini" });
    const out = join(tmp.dir, "run");
    const first = await runCli(["eval", dataset, "--json", "--limit", "3", "--no-report", "--judge-url", judge.url, "--model-url", model.url, "--data-dir", join(tmp.dir, "data"), "--out", out], {});
    expect(first.code).toBe(0);
    expect((JSON.parse(first.stdout) as EvalSummary).errors.items.map((e) => e.id)).toEqual(["q02"]);
    const asked = model.chatRequests().length;

    const refused = await runCli(["eval", dataset, "--out", out, "--resume", "--dialect", "tags", "--max-tool-calls", "3", "--model-url", model.url], {});
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/cannot resume .*dialect tags \(recorded: tools\); max tool calls 3 \(recorded: 24\)\..*another --out/);
    expect(refused.stderr).not.toMatch(/model URL/);
    const otherJudge = await runCli(["eval", dataset, "--out", out, "--resume", "--no-judge"], {});
    expect(otherJudge.code).toBe(2);
    expect(otherJudge.stderr).toMatch(/judge URL none \(recorded: http:\/\/127\.0\.0\.1:\d+\/v1\)/);
    expect(model.chatRequests()).toHaveLength(asked);

    // A bare --resume (no model URL, judge or data dir given) continues with what the run recorded.
    fail.length = 0;
    const resumed = await runCli(["eval", dataset, "--json", "--out", out, "--resume", "--no-report"], {});
    expect(resumed.stderr).not.toMatch(/^\s+at /m);
    expect(resumed.code).toBe(0);
    expect((JSON.parse(resumed.stdout) as EvalSummary).errors.count).toBe(0);
    expect(model.chatRequests().slice(asked).map(itemOf)).toEqual([2]);
    expect(judge.chatRequests().map(itemOf).sort()).toEqual([1, 2, 3]);
  });

  it("--lang zh reads a CSVQA TSV's Chinese question and options", async () => {
    const b64 = (await testPicture(40, 30)).toString("base64");
    const header = ["id", "zh_question", "en_question", "zh_A", "zh_B", "zh_C", "zh_D", "en_A", "en_B", "en_C", "en_D", "answer", "question_type", "category", "image"];
    const row = ["7", "哪个？<image>", "Which one?<image>", "甲", "乙", "丙", "丁", "one", "two", "three", "four", "B", "single", "Physics", `['${b64}']`];
    const dataset = join(tmp.dir, "csvqa_data_new.tsv");
    writeFileSync(dataset, `${header.join("\t")}\n${row.join("\t")}\n`);
    const model = await server({ script: [{ content: "<think>ok</think><answer>\\boxed{B}</answer>" }] });
    const out = join(tmp.dir, "run");
    const run = await runCli(["eval", dataset, "--json", "--lang", "zh", "--no-report", "--model-url", model.url, "--data-dir", join(tmp.dir, "data"), "--out", out], {});
    expect(run.code).toBe(0);
    const asked = JSON.stringify(model.chatRequests()[0]!.body.messages);
    expect(asked).toContain("哪个？");
    expect(asked).toContain("B. 乙");
    expect(asked).not.toContain("Which one?");
    expect(rowsOf(out)[0]).toMatchObject({ correct: true, extracted: ["B"] });
  });

  it("counts tool calls as the agent does: calls refused for want of budget are neither run, counted nor failed", async () => {
    writeFileSync(join(tmp.dir, "pic.png"), await testPicture());
    const dataset = join(tmp.dir, "one.jsonl");
    writeFileSync(dataset, `${JSON.stringify({ id: "q1", image: "pic.png", question: "What is the code?", answer: "K-7" })}\n`);
    const model = await server({
      script: [
        { toolCalls: [1, 2, 3].map((i) => ({ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 300 * i, 300 * i] } })) },
        { content: "<think>done</think><answer>K-7</answer>" },
      ],
    });
    const settings = resolveConfig({ modelUrl: model.url, dataDir: join(tmp.dir, "data"), maxToolCalls: 2, retries: 1, retryBaseMs: 10 }, {});
    const run = await runEval({ dataset, concurrency: 1, out: join(tmp.dir, "run"), resume: false, settings, secrets: {}, progress: false, report: false, log: () => {} });
    expect(run.rows[0]).toMatchObject({ toolCalls: 2, failedToolCalls: 0, toolsByName: { crop: 2 } });
    expect(run.summary.toolCalls).toMatchObject({ total: 2, failed: 0, histogram: { "2": 1 } });
  });

  it("loupe compare shows per-item differences between two runs (two models)", async () => {
    const dataset = await writeEvalDataset(tmp.dir);
    const data = join(tmp.dir, "data");
    const runWith = async (name: string, flip: number[]) => {
      const model = await server({ script: [evalModel({ flip })], model: name });
      const settings = resolveConfig({ modelUrl: model.url, dataDir: data, retries: 1, retryBaseMs: 10 }, {});
      return runEval({ dataset, concurrency: 4, out: join(tmp.dir, name), resume: false, settings, secrets: {}, progress: false, report: false, log: () => {} });
    };
    const a = await runWith("model-a", []);
    // B gets items 2 and 14 right and items 3 and 13 wrong, and one more right: 5.
    const b = await runWith("model-b", [2, 14, 3, 13, 5]);
    expect(a.summary.accuracy.correct).toBe(CORRECT);
    expect(b.summary.accuracy.correct).toBe(CORRECT + 1);
    const run = await runCli(["compare", a.dir, b.dir, "--json"], {});
    expect(run.code).toBe(0);
    const c = JSON.parse(run.stdout) as Comparison;
    expect(c).toMatchObject({ common: 20, aOnly: 2, bOnly: 3, bothCorrect: CORRECT - 2, onlyInA: [], onlyInB: [] });
    expect(c.a.model).toBe("model-a");
    expect(c.diffs.filter((d) => d.change === "fixed").map((d) => d.id)).toEqual(["q02", "q05", "q14"]);
    expect(c.diffs.filter((d) => d.change === "broken").map((d) => d.id)).toEqual(["q03", "q13"]);
    expect(c.diffs.find((d) => d.id === "q02")).toMatchObject({ a: { correct: false, answer: "WRONG-2" }, b: { correct: true, answer: "CODE-2" } });
    const text = await runCli(["compare", a.dir, b.dir], {});
    expect(text.stdout).toMatch(/only A right 2, only B right 3 \(McNemar exact p = 1\.000\)/);
    expect(text.stdout).toMatch(/^fixed\s+q02\s+✗ WRONG-2 \[0 tools\]\s+✓ CODE-2 \[0 tools\]$/m);
  });
});
