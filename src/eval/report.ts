// report.html: one self-contained page (inline CSS, SVG plots, images as data URLs) with the summary and every item's trajectory.
import { join } from "node:path";
import sharp from "sharp";
import type { ImageStore } from "../core/images.js";
import type { Interval } from "./score.js";
import {
  pct,
  readManifest,
  readResults,
  readSummary,
  REPORT_FILE,
  summarizeResults,
  type EvalSummary,
  type ResultRow,
  type RunManifest,
} from "./summary.js";
import { writeAtomic } from "./output-file.js";
import { readThreadState, toTrajectory, type ThreadReader, type TrajImage, type Trajectory } from "./trajectory.js";

export interface ReportSources {
  reader: ThreadReader;
  images: ImageStore;
}

export function esc(text: unknown): string {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** A link only for http(s) URLs (a search result's javascript: or data: URL must not become one); anything else is plain text. */
function link(url: string, text: string): string {
  return /^https?:\/\//i.test(url) ? `<a href="${esc(url)}" rel="noreferrer noopener" target="_blank">${esc(text)}</a>` : `<span class="title">${esc(text)}</span>`;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}\n… [${text.length - max} more characters]`;
}

const THUMB = 480;

/** Downscaled JPEG data URLs, one per stored image, made once however often the image appears. */
class Thumbnails {
  private readonly urls = new Map<string, string>();
  private readonly failed = new Set<string>();
  constructor(private readonly store: ImageStore) {}

  async add(image: { sha256: string; mime: TrajImage["mime"] }): Promise<boolean> {
    if (this.urls.has(image.sha256)) return true;
    if (this.failed.has(image.sha256)) return false;
    try {
      const bytes = await this.store.read(image);
      const out = await sharp(bytes)
        .resize({ width: THUMB, height: THUMB, fit: "inside", withoutEnlargement: true })
        .flatten({ background: "#ffffff" })
        .jpeg({ quality: 75 })
        .toBuffer();
      this.urls.set(image.sha256, `data:image/jpeg;base64,${out.toString("base64")}`);
      return true;
    } catch {
      this.failed.add(image.sha256);
      return false;
    }
  }

  json(): string {
    // Safe inside <script>: no "</" can close the element.
    return JSON.stringify(Object.fromEntries(this.urls)).replace(/</g, "\\u003c");
  }
}

// ---------------------------------------------------------------------------------------------
// Plots (inline SVG)

function accuracyPlot(summary: EvalSummary): string {
  const rows: Array<[string, Interval]> = [["overall", summary.accuracy], ...Object.entries(summary.byCategory)];
  const label = 120;
  const width = 440;
  const plot = width - label - 60;
  const rowH = 24;
  const height = rows.length * rowH + 30;
  const x = (v: number) => label + v * plot;
  const bars = rows
    .map(([name, i], k) => {
      const y = 10 + k * rowH;
      return `<g><title>${esc(name)}: ${pct(i.accuracy)} ± ${pct(i.halfWidth)} (n=${i.n})</title>
<text x="${label - 6}" y="${y + 15}" text-anchor="end">${esc(name.length > 22 ? `${name.slice(0, 21)}…` : name)}</text>
<rect x="${label}" y="${y + 3}" width="${(i.accuracy * plot).toFixed(1)}" height="${rowH - 8}" class="${k === 0 ? "bar overall" : "bar"}"/>
<line x1="${x(i.ci95[0]).toFixed(1)}" x2="${x(i.ci95[1]).toFixed(1)}" y1="${y + rowH / 2}" y2="${y + rowH / 2}" class="whisker"/>
<line x1="${x(i.ci95[0]).toFixed(1)}" x2="${x(i.ci95[0]).toFixed(1)}" y1="${y + 6}" y2="${y + rowH - 6}" class="whisker"/>
<line x1="${x(i.ci95[1]).toFixed(1)}" x2="${x(i.ci95[1]).toFixed(1)}" y1="${y + 6}" y2="${y + rowH - 6}" class="whisker"/>
<text x="${width - 4}" y="${y + 15}" text-anchor="end">${pct(i.accuracy, 0)}</text></g>`;
    })
    .join("\n");
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map((t) => `<line x1="${x(t)}" x2="${x(t)}" y1="6" y2="${height - 18}" class="grid"/><text x="${x(t)}" y="${height - 4}" text-anchor="middle">${t * 100}%</text>`)
    .join("");
  return `<svg class="plot" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="Accuracy per category with 95% confidence intervals">${ticks}${bars}</svg>`;
}

function histogramPlot(counts: Array<[string, number]>, xLabel: string, aria: string, marks: Array<[string, number]> = []): string {
  const width = 360;
  const height = 200;
  const left = 34;
  const bottom = 34;
  const max = Math.max(1, ...counts.map(([, c]) => c));
  const slot = (width - left - 10) / Math.max(1, counts.length);
  const y = (v: number) => height - bottom - (v / max) * (height - bottom - 12);
  const bars = counts
    .map(([label, c], k) => {
      const x = left + k * slot;
      return `<g><title>${esc(label)}: ${c}</title><rect x="${(x + 2).toFixed(1)}" y="${y(c).toFixed(1)}" width="${Math.max(1, slot - 4).toFixed(1)}" height="${(height - bottom - y(c)).toFixed(1)}" class="bar"/>
<text x="${(x + slot / 2).toFixed(1)}" y="${height - bottom + 14}" text-anchor="middle">${esc(label)}</text>${c ? `<text x="${(x + slot / 2).toFixed(1)}" y="${(y(c) - 3).toFixed(1)}" text-anchor="middle" class="count">${c}</text>` : ""}</g>`;
    })
    .join("\n");
  const markLines = marks
    .map(([name, pos], k) => {
      const x = left + pos * slot;
      const anchor = x > width - 90 ? `x="${(x - 3).toFixed(1)}" text-anchor="end"` : `x="${(x + 3).toFixed(1)}"`;
      return `<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="8" y2="${height - bottom}" class="mark"/><text ${anchor} y="${16 + k * 12}" class="mark-label">${esc(name)}</text>`;
    })
    .join("");
  return `<svg class="plot" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(aria)}">
<line x1="${left}" x2="${width - 6}" y1="${height - bottom}" y2="${height - bottom}" class="axis"/>
<text x="${(left + width) / 2}" y="${height - 4}" text-anchor="middle">${esc(xLabel)}</text>
<text x="10" y="${(height - bottom) / 2}" transform="rotate(-90 10 ${(height - bottom) / 2})" text-anchor="middle">items</text>${bars}${markLines}</svg>`;
}

function toolHistogram(summary: EvalSummary): string {
  const max = Math.max(0, ...Object.keys(summary.toolCalls.histogram).map(Number));
  const counts: Array<[string, number]> = Array.from({ length: max + 1 }, (_, k) => [String(k), summary.toolCalls.histogram[String(k)] ?? 0]);
  return histogramPlot(counts, "tool calls per item", "Histogram of tool calls per item");
}

function latencyHistogram(rows: ResultRow[], summary: EvalSummary): string {
  const values = rows.filter((r) => !r.error).map((r) => r.latencyMs / 1000);
  if (!values.length) return "<p>No finished items.</p>";
  const hi = Math.max(...values);
  const bins = 12;
  const step = hi > 0 ? hi / bins : 1;
  const counts = Array.from({ length: bins }, () => 0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(v / step))]!++;
  const fmt = (v: number) => v.toFixed(step < 0.1 ? 2 : step < 1 ? 1 : 0);
  const labelled: Array<[string, number]> = counts.map((c, k) => [k % 2 === 0 ? fmt(k * step) : "", c]);
  const at = (ms: number) => ms / 1000 / step;
  return histogramPlot(labelled, "latency per item (s)", "Latency distribution", [
    [`p50 ${(summary.latencyMs.p50 / 1000).toFixed(1)} s`, at(summary.latencyMs.p50)],
    [`p95 ${(summary.latencyMs.p95 / 1000).toFixed(1)} s`, at(summary.latencyMs.p95)],
  ]);
}

// ---------------------------------------------------------------------------------------------
// Items

function status(row: ResultRow): "correct" | "incorrect" | "error" {
  return row.error ? "error" : row.correct ? "correct" : "incorrect";
}

function img(image: { sha256: string }, alt: string, cls: string): string {
  return `<img data-img="${esc(image.sha256)}" alt="${esc(alt)}" class="${cls}">`;
}

function withBox(parent: TrajImage, child: TrajImage): string {
  const b = child.box!;
  const stroke = Math.max(2, Math.round(Math.max(parent.width, parent.height) / 150));
  const shown = Math.round(Math.min(320, (240 * parent.width) / parent.height));
  return `<svg class="parent" style="width:${shown}px" viewBox="0 0 ${parent.width} ${parent.height}" role="img" aria-label="${esc(`${child.id} on ${parent.id}`)}"><image data-img="${esc(parent.sha256)}" x="0" y="0" width="${parent.width}" height="${parent.height}" preserveAspectRatio="none"/><rect x="${b.left}" y="${b.top}" width="${b.width}" height="${b.height}" class="box" stroke-width="${stroke}"/></svg>`;
}

function argsText(raw: string): string {
  try {
    return JSON.stringify(JSON.parse(raw));
  } catch {
    return raw;
  }
}

function trajectoryHtml(traj: Trajectory): string {
  const byId = new Map(traj.images.map((i) => [i.id, i]));
  const parts: string[] = [];
  const inputs = traj.images.filter((i) => !i.parent);
  if (inputs.length) {
    parts.push(`<div class="inputs">${inputs.map((i) => `<figure>${img(i, i.id, "input")}<figcaption>${esc(i.id)} · ${i.width}×${i.height}</figcaption></figure>`).join("")}</div>`);
  }
  if (traj.plan?.length) {
    parts.push(`<div class="plan"><b>Plan</b><ol>${traj.plan.map((s) => `<li>${esc(s.description)} <code>${esc(s.tool_name)} ${esc(JSON.stringify(s.parameters))}</code></li>`).join("")}</ol></div>`);
  }
  traj.steps.forEach((step, k) => {
    const body: string[] = [];
    if (step.think) body.push(`<div class="think"><span class="tag">thinking</span>${esc(step.think)}</div>`);
    if (step.kind === "malformed") {
      body.push(`<div class="problem"><span class="tag">format error</span>${esc(step.problem ?? "")}</div><pre class="raw">${esc(clip(step.text, 2000))}</pre>`);
    }
    for (const call of step.calls) {
      const r = call.record;
      const made = (r?.images ?? []).map((id) => byId.get(id)).filter((i): i is TrajImage => Boolean(i));
      const figures = made
        .map((child) => {
          const parent = child.parent ? byId.get(child.parent) : undefined;
          const sub = `<figure>${img(child, child.id, "sub")}<figcaption>${esc(child.id)} · ${child.width}×${child.height}${child.op ? ` · ${esc(child.op)}` : ""}</figcaption></figure>`;
          const ctx = parent && child.box ? `<figure>${withBox(parent, child)}<figcaption>box on ${esc(parent.id)}</figcaption></figure>` : "";
          return `<div class="made">${sub}${ctx}</div>`;
        })
        .join("");
      const links = r?.urls.length
        ? `<ul class="links">${r.urls.map((u) => `<li>${link(u.url, u.title || u.url)} <span class="url">${esc(u.url)}</span></li>`).join("")}</ul>`
        : "";
      const state = !r ? `<span class="pill">not run</span>` : r.ok ? `<span class="pill ok">ok · ${r.ms} ms</span>` : `<span class="pill fail">failed</span>`;
      body.push(
        `<div class="call"><div><span class="tag">tool call</span><code class="name">${esc(call.name)}</code> <code class="args">${esc(clip(argsText(call.rawArguments), 600))}</code> ${state}</div>${r?.error ? `<div class="error">${esc(r.error)}</div>` : ""}${figures}${links}</div>`,
      );
    }
    if (step.observation) body.push(`<details class="obs"><summary>observation</summary><pre>${esc(clip(step.observation, 6000))}</pre></details>`);
    if (step.kind === "answer") body.push(`<div class="answer"><span class="tag">answer</span>${esc(step.answer ?? "")}</div>`);
    parts.push(`<section class="step"><h4>Step ${k + 1}</h4>${body.join("\n")}</section>`);
  });
  return parts.join("\n");
}

function itemHtml(row: ResultRow, traj: Trajectory | null, k: number): string {
  const st = status(row);
  const mark = st === "correct" ? "✓" : st === "error" ? "!" : "✗";
  const verdict: string[] = [];
  if (row.method === "judge" && row.judge) {
    verdict.push(`<div class="verdict ${row.judge.correct ? "yes" : "no"}"><b>Judge (${esc(row.judge.model)}${row.judge.cached ? ", cached" : ""}): correct: ${row.judge.correct ? "yes" : "no"}</b><br>${esc(row.judge.reasoning)}</div>`);
  } else if (row.method === "choice") {
    verdict.push(`<div class="verdict ${row.correct ? "yes" : "no"}"><b>Option extraction:</b> picked ${esc(row.extracted?.join(", ") ?? "nothing")}; expected ${esc(row.answers.join(", "))}</div>`);
  } else if (row.method === "match") {
    verdict.push(`<div class="verdict ${row.correct ? "yes" : "no"}"><b>Exact match / containment:</b> ${row.correct ? "matches" : "does not match"} (token F1 ${row.match?.f1 ?? 0})</div>`);
  } else if (!row.error) {
    verdict.push(`<div class="verdict no"><b>No &lt;answer&gt; tag:</b> scored wrong, as in R1V4's protocol</div>`);
  }
  if (row.error) verdict.push(`<div class="error"><b>Error (${esc(row.error.stage)}):</b> ${esc(row.error.message)}</div>`);
  const meta = `${row.toolCalls} tool call${row.toolCalls === 1 ? "" : "s"} · ${row.turns} turns · ${(row.latencyMs / 1000).toFixed(1)} s · ${row.promptTokens + row.completionTokens} tokens`;
  return `<article class="item ${st}" data-status="${st}" id="item-${k}">
<details${k < 3 ? " open" : ""}><summary><span class="mark ${st}">${mark}</span> <b>${esc(row.id)}</b> <span class="cat">${esc(row.category)}</span> <span class="q">${esc(clip(row.question, 140))}</span> <span class="meta">${meta}</span></summary>
<div class="body">
<p class="question">${esc(row.question)}</p>
<table class="kv"><tr><th>expected</th><td>${esc(row.answers.join(" | "))}</td></tr><tr><th>answer</th><td>${esc(row.answerTag ?? row.prediction ?? "(none)")}</td></tr><tr><th>thread</th><td><code>${esc(row.threadId)}</code></td></tr></table>
${verdict.join("\n")}
${traj ? trajectoryHtml(traj) : `<p class="error">The thread ${esc(row.threadId)} is not in the checkpointer, so its trajectory cannot be shown.</p>`}
</div></details></article>`;
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header,main{max-width:1180px;margin:0 auto;padding:12px 20px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:22px 0 8px}h4{margin:10px 0 4px;font-size:13px;color:#556}
.sub{color:#556}
table.summary,table.tools{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001}
table.summary td,table.summary th,table.tools td,table.tools th{padding:5px 12px;border-bottom:1px solid #e4e6ea;text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.plots figure{background:#fff;margin:0;padding:10px;box-shadow:0 1px 2px #0001}
.plots figcaption{font-weight:600;margin-bottom:4px}
svg.plot text{font-size:11px;fill:#334}svg.plot .bar{fill:#6c8ebf}svg.plot .bar.overall{fill:#3d5a80}
svg.plot .whisker{stroke:#111;stroke-width:1.5}svg.plot .grid{stroke:#e4e6ea}svg.plot .axis{stroke:#99a}
svg.plot .mark{stroke:#c0392b;stroke-dasharray:3 2}svg.plot .mark-label{fill:#c0392b}svg.plot .count{fill:#223}
.filters{position:sticky;top:0;background:#f6f7f9;padding:8px 0;z-index:2;display:flex;gap:6px;flex-wrap:wrap;align-items:center}
.filters button{border:1px solid #b8bfcc;background:#fff;border-radius:14px;padding:3px 12px;cursor:pointer}
.filters button.active{background:#3d5a80;color:#fff;border-color:#3d5a80}
article.item{background:#fff;margin:6px 0;box-shadow:0 1px 2px #0001;border-left:4px solid #aaa}
article.correct{border-left-color:#2e8b57}article.incorrect{border-left-color:#c0392b}article.error{border-left-color:#e69500}
article.hidden{display:none}
summary{cursor:pointer;padding:7px 10px}summary .cat{color:#fff;background:#778;border-radius:8px;padding:0 6px;font-size:12px}
summary .meta{color:#778;font-size:12px;float:right}summary .q{color:#334}
.mark{font-weight:700}.mark.correct{color:#2e8b57}.mark.incorrect{color:#c0392b}.mark.error{color:#e69500}
.body{padding:4px 14px 12px}.question{white-space:pre-wrap}
table.kv th{text-align:left;color:#667;font-weight:500;padding-right:10px;vertical-align:top}
.step{border-top:1px dashed #dde;margin-top:6px}
.think{white-space:pre-wrap;background:#f3f1fa;padding:6px 8px;border-radius:4px;color:#333}
.tag{display:inline-block;font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:#667;margin-right:8px}
.call{margin:6px 0;padding:6px 8px;background:#f4f7fb;border-radius:4px}.call code.name{font-weight:700}
.call code.args{font-size:12px;word-break:break-all}
.pill{font-size:11px;border-radius:8px;padding:0 6px;background:#ccd}.pill.ok{background:#d4edda}.pill.fail{background:#f8d7da}
.made{display:flex;gap:10px;flex-wrap:wrap;align-items:flex-start;margin-top:6px}
figure{margin:0}figcaption{font-size:11px;color:#667}
img.sub,img.input{max-width:320px;max-height:240px;border:1px solid #ccd;display:block;background:#fff}
svg.parent{width:320px;max-height:240px;border:1px solid #ccd;display:block;background:#fff}
svg.parent .box{fill:none;stroke:#ff2d55}
.inputs{display:flex;gap:10px;margin:6px 0}
.links{margin:4px 0 0 16px;padding:0}.links .url{color:#889;font-size:11px}
.obs pre,pre.raw{white-space:pre-wrap;font-size:12px;background:#fafafa;padding:6px;max-height:320px;overflow:auto}
.answer{background:#eef7ee;padding:6px 8px;border-radius:4px;font-weight:600}
.verdict{padding:6px 8px;border-radius:4px;margin:6px 0}.verdict.yes{background:#eef7ee}.verdict.no{background:#fbeeee}
.error{color:#8a4b00;background:#fff5e0;padding:4px 8px;border-radius:4px;margin:4px 0}
.problem{color:#8a1c1c}.plan ol{margin:4px 0}
`;

const SCRIPT = `
(function(){
  var images = JSON.parse(document.getElementById('images').textContent);
  document.querySelectorAll('[data-img]').forEach(function(el){
    var url = images[el.getAttribute('data-img')];
    if (!url) return;
    if (el.tagName.toLowerCase() === 'img') el.src = url; else el.setAttribute('href', url);
  });
  var buttons = document.querySelectorAll('.filters button[data-filter]');
  buttons.forEach(function(b){ b.addEventListener('click', function(){
    buttons.forEach(function(x){ x.classList.toggle('active', x === b); });
    var f = b.getAttribute('data-filter');
    document.querySelectorAll('article.item').forEach(function(a){
      var s = a.getAttribute('data-status');
      a.classList.toggle('hidden', !(f === 'all' || s === f || (f === 'incorrect' && s === 'error')));
    });
  }); });
  var open = function(v){ return function(){ document.querySelectorAll('article.item:not(.hidden) details').forEach(function(d){ d.open = v; }); }; };
  document.getElementById('expand').addEventListener('click', open(true));
  document.getElementById('collapse').addEventListener('click', open(false));
})();
`;

/** Each item's article, its trajectory read from the checkpointer (its images added to the thumbnails). */
async function itemArticles(rows: ResultRow[], sources: ReportSources, thumbs: Thumbnails): Promise<string[]> {
  const articles: string[] = [];
  for (const [k, row] of rows.entries()) {
    const state = await readThreadState(sources.reader, row.threadId).catch(() => null);
    const traj = state ? toTrajectory(row.threadId, state) : null;
    if (traj) for (const image of traj.images) await thumbs.add(image);
    articles.push(itemHtml(row, traj, k));
  }
  return articles;
}

/** The summary table: label and value per row. */
function summaryTableRows(summary: EvalSummary, manifest: RunManifest): Array<[string, string]> {
  const a = summary.accuracy;
  const summaryRows: Array<[string, string]> = [
    ["items", String(summary.items)],
    ["accuracy", `${pct(a.accuracy)} ± ${pct(a.halfWidth)} (Wald 95% CI ${pct(a.ci95[0])}–${pct(a.ci95[1])})`],
    ["scored by", Object.entries(summary.byMethod).map(([m, i]) => `${m} ${i.n}`).join(", ")],
    ["tool calls per item", `${summary.toolCalls.mean.toFixed(2)} (total ${summary.toolCalls.total}, failed ${summary.toolCalls.failed})`],
    ["turns per item", summary.turns.mean.toFixed(2)],
    ["tokens", `${summary.tokens.prompt} prompt + ${summary.tokens.completion} completion (mean ${summary.tokens.meanPrompt} + ${summary.tokens.meanCompletion} per item)`],
    ["latency", `p50 ${(summary.latencyMs.p50 / 1000).toFixed(2)} s · p95 ${(summary.latencyMs.p95 / 1000).toFixed(2)} s · mean ${(summary.latencyMs.mean / 1000).toFixed(2)} s`],
    ["answers without <answer> tag", String(summary.answered.withoutAnswerTag)],
    ["budget exhausted", String(summary.answered.budgetExhausted)],
    ["errors", summary.errors.count ? `${summary.errors.count} (${Object.entries(summary.errors.byStage).map(([s, n]) => `${s} ${n}`).join(", ")})` : "0"],
  ];
  if (summary.judge) summaryRows.push(["judge", `${manifest.judge?.model ?? ""} at ${manifest.judge?.url ?? ""}: ${summary.judge.requests} requests, ${summary.judge.cached} cached verdicts`]);
  return summaryRows;
}

/** The report page for a run directory, trajectories read from the checkpointer and images from the store. */
export async function buildReportHtml(runDir: string, sources: ReportSources): Promise<string> {
  const manifest = readManifest(runDir);
  const rows = readResults(runDir);
  const summary =
    readSummary(runDir) ??
    summarizeResults(rows, { ...manifest, dir: runDir, finishedAt: "" }, null);
  const thumbs = new Thumbnails(sources.images);
  const articles = await itemArticles(rows, sources, thumbs);
  const counts = { all: rows.length, correct: rows.filter((r) => status(r) === "correct").length, incorrect: rows.filter((r) => !r.correct).length, error: rows.filter((r) => r.error).length };
  const summaryRows = summaryTableRows(summary, manifest);
  const byTool = Object.entries(summary.toolCalls.byTool);
  const catRows = Object.entries(summary.byCategory)
    .map(([c, i]) => `<tr><td>${esc(c)}</td><td>${i.n}</td><td>${i.correct}</td><td>${pct(i.accuracy)} ± ${pct(i.halfWidth)}</td></tr>`)
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Loupe evaluation — ${esc(manifest.dataset.split(/[\\/]/).pop())}</title>
<style>${CSS}</style></head>
<body>
<header><h1>Loupe evaluation: ${esc(manifest.dataset.split(/[\\/]/).pop())}</h1>
<div class="sub">${esc(manifest.format)} · model <b>${esc(manifest.model.name)}</b> at ${esc(manifest.model.url)} · ${esc(manifest.dialect)} dialect${manifest.plan ? " · plan mode" : ""} · run ${esc(manifest.runId)} started ${esc(manifest.createdAt)}</div></header>
<main>
<h2>Summary</h2>
<table class="summary">${summaryRows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("")}</table>
<h2>Plots</h2>
<div class="plots">
<figure><figcaption>Accuracy per category (Wald 95% CI)</figcaption>${accuracyPlot(summary)}</figure>
<figure><figcaption>Tool calls per item</figcaption>${toolHistogram(summary)}</figure>
<figure><figcaption>Latency per item</figcaption>${latencyHistogram(rows, summary)}</figure>
</div>
<h2>By category</h2>
<table class="tools"><tr><th>category</th><th>n</th><th>correct</th><th>accuracy</th></tr>${catRows}</table>
${byTool.length ? `<h2>Tools</h2><table class="tools"><tr><th>tool</th><th>calls</th><th>items using it</th><th>calls per item</th></tr>${byTool.map(([n, t]) => `<tr><td>${esc(n)}</td><td>${t.total}</td><td>${t.items}</td><td>${t.meanPerItem.toFixed(2)}</td></tr>`).join("")}</table>` : ""}
<h2>Items</h2>
<div class="filters"><button data-filter="all" class="active">All (${counts.all})</button><button data-filter="correct">Correct (${counts.correct})</button><button data-filter="incorrect">Incorrect (${counts.incorrect})</button><button data-filter="error">Errors (${counts.error})</button>
<button id="expand">Expand all</button><button id="collapse">Collapse all</button></div>
${articles.join("\n")}
</main>
<script type="application/json" id="images">${thumbs.json()}</script>
<script>${SCRIPT}</script>
</body></html>
`;
}

export async function writeReport(runDir: string, sources: ReportSources): Promise<string> {
  const html = await buildReportHtml(runDir, sources);
  const path = join(runDir, REPORT_FILE);
  writeAtomic(path, html);
  return path;
}

