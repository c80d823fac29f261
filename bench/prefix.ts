// Benchmark 5: prefix stability. Over 24-tool-call trajectories, how much of each request re-sends the
// previous request byte for byte (what vLLM's prefix cache can reuse), and how many image parts are
// re-sent byte-identical. The anchor is the ideal: 100%.
// Then the same where vLLM's prefix cache actually works, on the prompt the chat template renders: the 15-call
// trajectory with a Qwen3-VL model's replies as vLLM returns them, each request rendered through Qwen3-VL's
// Instruct and Thinking templates as vLLM renders it (test/chat-template.ts, shared with its test).
import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { createAgent } from "../graphs/agent.js";
import { createCheckpointer } from "../src/runtime/checkpointer.js";
import { createDeps } from "../src/runtime/deps.js";
import { ask } from "../src/run/ask.js";
import { FAKE_TAVILY_API_KEY, startFakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type RecordedRequest, type ScriptEntry } from "../src/cli/demo/scripted-model-server.js";
import { harbourImage, TRAJECTORY_ACTIONS, TRAJECTORY_PAGES, TRAJECTORY_SEARCH } from "../src/cli/demo/trajectory.js";
import { benchSettings, fmt, pct, photoJpeg, round, tempDir, type Benchmark } from "./lib/common.js";
import { scenarioEntry, SCENARIO_ANSWER } from "./lib/scenarios.js";
import { QUESTION } from "./overhead.js";
import { promptStability, runEmulatedTrajectory, setupLabel, type ContentFormat, type EmulatedSetup, type TemplateName } from "../test/chat-template.js";
import { TRAJECTORY_ANSWER, TRAJECTORY_TOOL_CALLS } from "../src/cli/demo/trajectory.js";

type Action = (typeof TRAJECTORY_ACTIONS)[number];

/** Nine more image calls after the recorded 15-call trajectory: 24 tool calls in all. */
const EXTRA_ACTIONS: Action[] = [
  { think: "Zoom into the first crop's upper left.", calls: [{ name: "zoom", arguments: { image: "img_1", bbox: [100, 100, 400, 400] } }] },
  { think: "Look at the sky on the right.", calls: [{ name: "crop", arguments: { image: "img_0", bbox: [600, 100, 900, 400] } }] },
  { think: "Zoom into the red square.", calls: [{ name: "zoom", arguments: { image: "img_0", bbox: [550, 550, 650, 650] } }] },
  { think: "The middle of the lower-right crop.", calls: [{ name: "crop", arguments: { image: "img_4", bbox: [200, 200, 800, 800] } }] },
  { think: "The lower left corner.", calls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 700, 300, 1000] } }] },
  { think: "Zoom the second crop's centre.", calls: [{ name: "zoom", arguments: { image: "img_2", bbox: [300, 300, 700, 700] } }] },
  { think: "The lower right corner.", calls: [{ name: "crop", arguments: { image: "img_0", bbox: [700, 700, 1000, 1000] } }] },
  { think: "Turn the small patch around.", calls: [{ name: "rotate", arguments: { image: "img_5", degrees: 180 } }] },
  { think: "Bottom right of the first crop.", calls: [{ name: "crop", arguments: { image: "img_1", bbox: [500, 500, 1000, 1000] } }] },
];

const ANSWER_TURN = { content: "<think>The page says the north pier sign reads LOUPE-42.</think>\n<answer>LOUPE-42</answer>" };

function mixedScript(dialect: "tools" | "tags"): ScriptEntry[] {
  const turns: ScriptEntry[] = [];
  for (const action of [...TRAJECTORY_ACTIONS, ...EXTRA_ACTIONS]) {
    if (dialect === "tools") turns.push({ content: `<think>${action.think}</think>`, toolCalls: action.calls.map((c) => ({ name: c.name, arguments: c.arguments })) });
    else for (const c of action.calls) turns.push({ content: `<think>${action.think}</think>\n<tool_call>${JSON.stringify({ name: c.name, arguments: c.arguments })}</tool_call>\nignored text after the stop` });
  }
  turns.push(ANSWER_TURN);
  return turns;
}

interface PairStat {
  /** Request index k (1-based pairs: k-1 → k). */
  k: number;
  /** Bytes of request k-1's messages (JSON, without the closing bracket) re-sent as the start of request k's. */
  prefixBytes: number;
  prevBytes: number;
  share: number;
  /** All fields other than messages (model, tools, stop, sampling…) identical. */
  fieldsEqual: boolean;
  /** The same on the raw HTTP body, fields after the messages included. */
  rawShare: number;
  imagesPrev: number;
  imagesSame: number;
}

interface TrajectoryStat {
  name: string;
  dialect: "tools" | "tags";
  requests: number;
  toolCalls: number;
  /** Sum of prefix bytes over sum of previous-request bytes. */
  overallShare: number;
  minShare: number;
  allFieldsEqual: boolean;
  imageShare: number;
  imagesPrevTotal: number;
  pairs: PairStat[];
}

/** Prompt-level stability of one chat template's rendering of a trajectory, in one of vLLM's content formats. */
interface PromptFigures {
  /** Consecutive pairs whose rendered(k) + generated(k) is a prefix of rendered(k+1). */
  extending: number;
  pairs: number;
  /** Characters re-prefilled per pair (prompt and generated text after the first difference): median, mean, worst. */
  medianReprefilled: number;
  meanReprefilled: number;
  maxReprefilled: number;
}

interface PromptStat {
  dialect: "tools" | "tags";
  template: TemplateName;
  /** vLLM started with `--reasoning-parser qwen3`. */
  reasoningParser: boolean;
  label: string;
  requests: number;
  toolCalls: number;
  /** The JSON-level figures for the same requests, as in the table above. */
  json: { overallShare: number; minShare: number; allFieldsEqual: boolean };
  /** `--chat-template-content-format openai` (auto-detection's choice for Instruct). */
  openai: PromptFigures;
  /** vLLM's "string" content format (auto-detection's choice for Thinking up to 0.18). */
  string: PromptFigures;
}

export interface PrefixResult {
  trajectories: TrajectoryStat[];
  /** Prompt-level stability through Qwen3-VL's chat templates (absent in results stored before it was measured). */
  prompt?: PromptStat[];
}

/** The set-ups of the prompt-level table: each dialect × template, Thinking also with the reasoning parser. */
const PROMPT_SETUPS: EmulatedSetup[] = [
  { dialect: "tools", template: "instruct", reasoningParser: false },
  { dialect: "tags", template: "instruct", reasoningParser: false },
  { dialect: "tools", template: "thinking", reasoningParser: false },
  { dialect: "tools", template: "thinking", reasoningParser: true },
  { dialect: "tags", template: "thinking", reasoningParser: false },
  { dialect: "tags", template: "thinking", reasoningParser: true },
];

async function promptStat(setup: EmulatedSetup, image: Buffer): Promise<PromptStat> {
  const run = await runEmulatedTrajectory(setup, image);
  const label = setupLabel(setup);
  if (run.answer !== TRAJECTORY_ANSWER || run.toolCalls !== TRAJECTORY_TOOL_CALLS || run.turns.length !== run.requests.length) {
    throw new Error(`prefix/${label}: expected ${TRAJECTORY_TOOL_CALLS} tool calls, one reply per request and ${TRAJECTORY_ANSWER}, got ${run.toolCalls} calls, ${run.turns.length} replies to ${run.requests.length} requests and ${run.answer}`);
  }
  const replies = run.turns.map((t) => t.reply);
  const figures = (contentFormat: ContentFormat): PromptFigures => {
    const [s] = promptStability(run.requests, replies, { templates: [setup.template], contentFormat });
    return { extending: s!.extending, pairs: s!.pairs, medianReprefilled: s!.medianReprefilled, meanReprefilled: s!.reprefilledPerPair, maxReprefilled: s!.maxReprefilled };
  };
  const json = prefixStats(label, setup.dialect, run.recorded, run.toolCalls);
  return {
    dialect: setup.dialect,
    template: setup.template,
    reasoningParser: setup.reasoningParser,
    label,
    requests: run.requests.length,
    toolCalls: run.toolCalls,
    json: { overallShare: json.overallShare, minShare: json.minShare, allFieldsEqual: json.allFieldsEqual },
    openai: figures("openai"),
    string: figures("string"),
  };
}

function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  // Compare in chunks first: the strings are megabytes long.
  const CH = 4096;
  while (i + CH <= n && a.slice(i, i + CH) === b.slice(i, i + CH)) i += CH;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

function imageUrls(messages: Array<{ content?: unknown }>): string[] {
  const urls: string[] = [];
  for (const m of messages) {
    if (!Array.isArray(m.content)) continue;
    for (const p of m.content as Array<{ type?: string; image_url?: { url?: string } }>) if (p.type === "image_url" && p.image_url?.url) urls.push(p.image_url.url);
  }
  return urls;
}

/** Byte-level comparison of consecutive chat requests. */
export function prefixStats(name: string, dialect: "tools" | "tags", requests: RecordedRequest[], toolCalls: number): TrajectoryStat {
  const pairs: PairStat[] = [];
  for (let k = 1; k < requests.length; k++) {
    const prev = requests[k - 1]!;
    const next = requests[k]!;
    const { messages: pm, ...prevRest } = prev.body as { messages: Array<{ content?: unknown }> };
    const { messages: nm, ...nextBody } = next.body as { messages: Array<{ content?: unknown }>; tool_choice?: unknown };
    // The budget's final request forbids tool calls with tool_choice "none" and keeps the tools
    // listed: the prompt the server renders is unchanged, so that one field is left out here.
    const { tool_choice: forced, ...nextRest } = nextBody;
    if (forced !== undefined && forced !== "none") Object.assign(nextRest, { tool_choice: forced });
    const p = JSON.stringify(pm).slice(0, -1);
    const n = JSON.stringify(nm);
    const prefixBytes = commonPrefix(p, n);
    const prevImages = imageUrls(pm);
    const nextImages = imageUrls(nm);
    pairs.push({
      k,
      prefixBytes,
      prevBytes: p.length,
      share: round(prefixBytes / p.length, 6),
      fieldsEqual: JSON.stringify(prevRest) === JSON.stringify(nextRest),
      rawShare: round(commonPrefix(prev.rawBody, next.rawBody) / prev.rawBody.length, 6),
      imagesPrev: prevImages.length,
      imagesSame: prevImages.filter((u, i) => nextImages[i] === u).length,
    });
  }
  const sum = (f: (x: PairStat) => number) => pairs.reduce((a, x) => a + f(x), 0);
  return {
    name,
    dialect,
    requests: requests.length,
    toolCalls,
    overallShare: round(sum((x) => x.prefixBytes) / sum((x) => x.prevBytes), 6),
    minShare: Math.min(...pairs.map((x) => x.share)),
    allFieldsEqual: pairs.every((x) => x.fieldsEqual),
    imageShare: round(sum((x) => x.imagesSame) / Math.max(1, sum((x) => x.imagesPrev)), 6),
    imagesPrevTotal: sum((x) => x.imagesPrev),
    pairs,
  };
}

export const prefix: Benchmark<PrefixResult> = {
  name: "prefix",
  title: "5. Prefix stability",
  async run(ctx) {
    const trajectories: TrajectoryStat[] = [];
    const harbour = join(ctx.tmp, "harbour.jpg");
    await writeFile(harbour, await harbourImage());
    const small = await photoJpeg(ctx.cacheDir, 640, 480, 1, 10);
    const cases: Array<{ name: string; dialect: "tools" | "tags"; mixed: boolean }> = [
      { name: "24 crops of a 640×480 photo (the overhead benchmark's trajectory)", dialect: "tools", mixed: false },
      { name: "recorded harbour trajectory + 9 image calls: crops of crops, zoom, rotate, flip, adjust, annotate, resize, 3 searches, a page visit (4000×3000 input)", dialect: "tools", mixed: true },
      { name: "the same trajectory in the tags dialect (one call per turn, stop sequences)", dialect: "tags", mixed: true },
    ];
    for (const c of ctx.quick ? cases.slice(1, 2) : cases) {
      const dir = await tempDir(ctx.tmp, "prefix-");
      const model = await startScriptedModelServer(c.mixed ? { script: mixedScript(c.dialect) } : { script: [scenarioEntry({ steps: 24, dialect: c.dialect })], onExhausted: "repeat-last" });
      const tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
      try {
        // Pages are read through the fake Tavily, as in the trajectory test.
        const settings = benchSettings({ modelUrl: model.url, dataDir: dir.dir, dialect: c.dialect, tavilyUrl: tavily.url, webVisit: "tavily", maxToolCalls: 24 });
        const saver = createCheckpointer(settings);
        const deps = createDeps(settings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
        const agent = createAgent({ deps, checkpointer: saver });
        const result = await ask(agent, { settings, question: c.mixed ? "What code is written on the north pier sign, and what does it mark?" : QUESTION, images: [c.mixed ? harbour : small] });
        saver.db.close();
        deps.close();
        const expected = c.mixed ? "LOUPE-42" : SCENARIO_ANSWER;
        const failed = result.toolCalls.filter((t) => !t.ok).map((t) => t.name);
        if (result.answer !== expected || result.toolCalls.length !== 24 || failed.length) {
          throw new Error(`prefix/${c.dialect}: expected 24 successful tool calls and ${expected}, got ${result.toolCalls.length} (failed: ${failed.join(", ") || "none"}) and ${result.answer}`);
        }
        const stat = prefixStats(c.name, c.dialect, model.chatRequests(), result.toolCalls.length);
        trajectories.push(stat);
        ctx.log(`  ${c.dialect}${c.mixed ? " mixed" : " crops"}: ${stat.requests} requests, prefix ${pct(stat.overallShare, 3)} (min ${pct(stat.minShare, 3)}), images re-sent identical ${pct(stat.imageShare, 3)}`);
      } finally {
        await model.close();
        await tavily.close();
        await dir.cleanup();
      }
    }
    // Prompt level: the set-ups run side by side (nothing here is timed).
    const image = await harbourImage();
    const setups = ctx.quick ? PROMPT_SETUPS.filter((x) => x.template === "instruct" ? x.dialect === "tools" : x.dialect === "tags" && !x.reasoningParser) : PROMPT_SETUPS;
    const prompt = await Promise.all(setups.map((x) => promptStat(x, image)));
    for (const p of prompt) {
      ctx.log(`  ${p.label}: JSON prefix ${pct(p.json.minShare, 3)} (lowest), prompt pairs extending ${p.openai.extending}/${p.openai.pairs}, re-prefilled per pair median ${p.openai.medianReprefilled} / worst ${p.openai.maxReprefilled} chars ("string" format ${p.string.extending}/${p.string.pairs})`);
    }
    return { trajectories, prompt };
  },
  markdown(r) {
    const rows = r.trajectories.map(
      (t) => `| ${t.name} | ${t.dialect} | ${t.requests} | **${pct(t.overallShare, 3)}** | ${pct(t.minShare, 3)} | ${t.allFieldsEqual ? "yes" : "**no**"} | ${pct(t.imageShare, 3)} (${t.imagesPrevTotal}) |`,
    );
    const perRequest = r.trajectories.map((t) => {
      const name = `${t.dialect}${t.name.startsWith("24 crops") ? " crops" : " mixed"}`;
      if (t.pairs.every((p) => p.share === 1 && p.imagesSame === p.imagesPrev)) return `${name}: all ${t.pairs.length} requests after the first 100%, with every image part identical`;
      return `${name}: ${t.pairs.map((p) => fmt(p.share * 100, 2)).join(" · ")}`;
    });
    return [
      "For each request k after the first: the bytes of request k−1's `messages` (serialised, without the closing bracket) that request k repeats as its start, as a share of request k−1; the other fields (model, tools, stop, sampling) must be identical too, except that the budget's final request adds `tool_choice: \"none\"` (the tools stay listed, so the prompt the server renders keeps its prefix; vLLM leaves the tools in the prompt unless started with `--exclude-tools-when-tool-choice-none`). Image parts: of the images in request k−1, the share that request k sends again at the same position with identical bytes (base64 data URLs). The anchor is the ideal, 100%.",
      "",
      "| trajectory (24 tool calls) | dialect | requests | prefix re-sent, all requests | lowest single request | other fields identical | image parts re-sent identical (count) |",
      "|---|---|---|---|---|---|---|",
      ...rows,
      "",
      "Per request (share of the previous request re-sent, %):",
      "",
      ...perRequest.map((l) => `- ${l}`),
      ...(r.prompt?.length ? ["", ...promptMarkdown(r.prompt)] : []),
    ].join("\n");
  },
  targets(r) {
    const min = Math.min(...r.trajectories.map((t) => t.minShare));
    const img = Math.min(...r.trajectories.map((t) => t.imageShare));
    const fields = r.trajectories.every((t) => t.allFieldsEqual);
    return [{ target: "Prefix stability 100% (every request, every image part)", measured: `lowest request ${pct(min, 3)}, image parts ${pct(img, 3)}, other fields identical: ${fields ? "yes" : "no"}`, holds: min === 1 && img === 1 && fields }];
  },
};

function promptMarkdown(stats: PromptStat[]): string[] {
  const setUp = (p: PromptStat) => (p.template === "thinking" ? (p.reasoningParser ? "`--reasoning-parser qwen3`" : "no reasoning parser") : "—");
  const name = (t: TemplateName) => (t === "instruct" ? "Instruct" : "Thinking");
  const chars = (f: PromptFigures) => `${f.medianReprefilled} / ${f.maxReprefilled}`;
  const rows = stats.map(
    (p) =>
      `| ${p.dialect} | ${name(p.template)} | ${setUp(p)} | ${p.requests} | ${pct(p.json.minShare, 3)}${p.json.allFieldsEqual ? "" : " (other fields differ)"} | **${p.openai.extending}/${p.openai.pairs}** | ${chars(p.openai)} | ${p.string.extending}/${p.string.pairs} · ${chars(p.string)} |`,
  );
  return [
    "**Prompt level.** vLLM's prefix cache works on the prompt the chat template renders, not on the JSON. The recorded harbour trajectory (15 tool calls) runs end to end with each reply written as a Qwen3-VL model writes it and returned as vLLM's parsers return it, and every request is rendered through Qwen's Qwen3-VL chat template as vLLM renders it (`test/chat-template.ts`): a pair of consecutive requests extends when request k's prompt plus what the model generated is a prefix of request k+1's prompt; otherwise the server prefills everything after the first difference again (characters of prompt and generated text; 0 for a pair that extends).",
    "",
    "| dialect | chat template | vLLM set-up | requests | JSON prefix re-sent, lowest request | pairs whose prompt extends (content format `openai`) | characters re-prefilled per pair, median / worst | content format `string`: pairs that extend · median / worst |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    "tags × Thinking breaks because the Thinking template keeps a turn's `<think>` block only after the last user query (the last user message that is not a `<tool_response>`), and every `<observation>` of the tags dialect is one: each request drops the previous turn's reasoning (and the `<think>\\n` its prompt opened), so what the model generated is prefilled again and the model never sees its earlier reasoning, however byte-stable the JSON is. The last column is vLLM's `string` content format, which its auto-detection can pick for the Thinking template (`--chat-template-content-format openai` selects the first).",
  ];
}
