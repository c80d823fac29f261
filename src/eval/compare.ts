// `loupe compare RUN_A RUN_B`: accuracy of both runs, the items one got right and the other wrong (with McNemar's exact test), and every per-item difference.
import { readManifest, readResults, pct, type ResultRow } from "./summary.js";
import { waldInterval, type Interval } from "./score.js";

export interface RunSide {
  dir: string;
  model: string;
  accuracy: Interval;
}

export interface ItemDiff {
  id: string;
  category: string;
  /** fixed: wrong in A, right in B; broken: the reverse; answer: same verdict, different answer; tools: same answer, different tool use. */
  change: "fixed" | "broken" | "answer" | "tools";
  a: ItemSide;
  b: ItemSide;
}

export interface ItemSide {
  correct: boolean;
  answer: string | null;
  toolCalls: number;
  latencyMs: number;
  error?: string;
}

export interface Comparison {
  a: RunSide;
  b: RunSide;
  /** Items both runs have; accuracies above count only these. */
  common: number;
  onlyInA: string[];
  onlyInB: string[];
  bothCorrect: number;
  bothWrong: number;
  /** Right in A only / in B only. */
  aOnly: number;
  bOnly: number;
  /** McNemar's exact two-sided p-value on the discordant items. */
  mcnemarP: number;
  diffs: ItemDiff[];
}

/** Two-sided exact binomial (McNemar) test of k successes out of n at p = 0.5. */
export function mcnemarExact(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  let logC = 0;
  let tail = 0;
  for (let i = 0; i <= k; i++) {
    if (i > 0) logC += Math.log(n - i + 1) - Math.log(i);
    tail += Math.exp(logC - n * Math.LN2);
  }
  return Math.min(1, 2 * tail);
}

function side(row: ResultRow): ItemSide {
  return {
    correct: row.correct,
    answer: row.answerTag ?? row.prediction,
    toolCalls: row.toolCalls,
    latencyMs: row.latencyMs,
    ...(row.error ? { error: row.error.message } : {}),
  };
}

export function compareRuns(dirA: string, dirB: string): Comparison {
  const [ma, mb] = [readManifest(dirA), readManifest(dirB)];
  const [ra, rb] = [readResults(dirA), readResults(dirB)];
  const bMap = new Map(rb.map((r) => [r.id, r]));
  const aIds = new Set(ra.map((r) => r.id));
  const pairs = ra.filter((r) => bMap.has(r.id)).map((r) => [r, bMap.get(r.id)!] as const);
  let bothCorrect = 0;
  let bothWrong = 0;
  let aOnly = 0;
  let bOnly = 0;
  const diffs: ItemDiff[] = [];
  for (const [x, y] of pairs) {
    if (x.correct && y.correct) bothCorrect++;
    else if (!x.correct && !y.correct) bothWrong++;
    else if (x.correct) aOnly++;
    else bOnly++;
    const ax = side(x);
    const by = side(y);
    let change: ItemDiff["change"] | null = null;
    if (x.correct !== y.correct) change = x.correct ? "broken" : "fixed";
    else if ((ax.answer ?? "").trim() !== (by.answer ?? "").trim()) change = "answer";
    else if (JSON.stringify(x.toolsByName) !== JSON.stringify(y.toolsByName)) change = "tools";
    if (change) diffs.push({ id: x.id, category: x.category, change, a: ax, b: by });
  }
  const order = { fixed: 0, broken: 1, answer: 2, tools: 3 };
  diffs.sort((p, q) => order[p.change] - order[q.change]);
  return {
    a: { dir: dirA, model: ma.model.name, accuracy: waldInterval(pairs.filter(([x]) => x.correct).length, pairs.length) },
    b: { dir: dirB, model: mb.model.name, accuracy: waldInterval(pairs.filter(([, y]) => y.correct).length, pairs.length) },
    common: pairs.length,
    onlyInA: ra.filter((r) => !bMap.has(r.id)).map((r) => r.id),
    onlyInB: rb.filter((r) => !aIds.has(r.id)).map((r) => r.id),
    bothCorrect,
    bothWrong,
    aOnly,
    bOnly,
    mcnemarP: mcnemarExact(aOnly, bOnly),
    diffs,
  };
}

function short(text: string | null, max = 40): string {
  const t = (text ?? "(none)").replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

export function formatComparison(c: Comparison): string {
  const lines: string[] = [];
  const acc = (s: RunSide) => `${pct(s.accuracy.accuracy)} ± ${pct(s.accuracy.halfWidth)}`;
  lines.push(`A  ${c.a.dir}  (${c.a.model})  accuracy ${acc(c.a)}`);
  lines.push(`B  ${c.b.dir}  (${c.b.model})  accuracy ${acc(c.b)}`);
  lines.push(
    `${c.common} items in both: both right ${c.bothCorrect}, both wrong ${c.bothWrong}, only A right ${c.aOnly}, only B right ${c.bOnly} (McNemar exact p = ${c.mcnemarP.toFixed(3)})`,
  );
  if (c.onlyInA.length || c.onlyInB.length) lines.push(`only in A: ${c.onlyInA.length} items; only in B: ${c.onlyInB.length} items`);
  if (!c.diffs.length) {
    lines.push("no per-item differences");
    return lines.join("\n");
  }
  lines.push("");
  const idW = Math.min(28, Math.max(4, ...c.diffs.map((d) => d.id.length)));
  lines.push(`${"change".padEnd(7)} ${"item".padEnd(idW)}  ${"A".padEnd(46)}  B`);
  for (const d of c.diffs) {
    const cell = (s: ItemSide) => `${s.error ? "!" : s.correct ? "✓" : "✗"} ${short(s.error ? `error: ${s.error}` : s.answer)} [${s.toolCalls} tools]`;
    lines.push(`${d.change.padEnd(7)} ${d.id.slice(0, idW).padEnd(idW)}  ${cell(d.a).padEnd(46)}  ${cell(d.b)}`);
  }
  return lines.join("\n");
}
