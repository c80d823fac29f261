/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="dom.asynciterable" />
// The live page (/ui): ask about images, watch every crop, search and page as the run streams, approve paused
// calls, stop, resume, follow up; browse past threads and replay them. Talks to the graph API with the SDK's Client.
import { Client } from "@langchain/langgraph-sdk/client";
import "./style.css";
import { $, fill, h, s } from "./dom.js";
import { childrenOf, opBox, placements, type ImageNode } from "./geometry.js";

// ---------- the state's shape, as far as the page reads it ----------
interface ImageRef extends ImageNode {
  sha256: string;
  mime: string;
}
interface ToolRecord {
  step: number;
  turn: number;
  name: string;
  arguments: Record<string, unknown> | null;
  ok: boolean;
  ms: number;
  images: string[];
  error?: string;
  urls: Array<{ url: string; title?: string }>;
}
type Block = { type?: string; text?: string; url?: string; metadata?: Record<string, unknown> } & Record<string, unknown>;
interface Msg {
  type?: string;
  id?: string;
  content?: string | Block[];
  tool_calls?: Array<{ id?: string; name: string; args: Record<string, unknown> }>;
  tool_call_id?: string;
  name?: string;
  status?: string;
  response_metadata?: { citations?: Citation[] };
}
type Citation = { type: "url"; url: string; title?: string } | { type: "image"; id: string };
interface Final {
  answer: string;
  citations: Citation[];
  reason: string;
}
interface Turn {
  role: string;
  toolCallId?: string;
  text?: string;
  parts?: Array<{ type: string; text?: string }>;
}
interface Interrupt {
  id?: string;
  value: {
    type?: "plan_review" | "call_review";
    question?: string;
    plan?: unknown[];
    calls?: Array<{ callId: string; name: string; arguments: Record<string, unknown> | null }>;
    action_requests?: Array<{ name: string; args: Record<string, unknown>; description?: string }>;
    problem?: string;
  };
}
interface Values {
  question?: string;
  images?: ImageRef[];
  toolCalls?: ToolRecord[];
  messages?: Msg[];
  conversation?: Turn[];
  final?: Final | null;
  usage?: { turns: number; toolCalls: number; promptTokens: number; completionTokens: number };
  __interrupt__?: Interrupt[];
}
type Context = Record<string, string | number | boolean>;
interface HistoryState {
  values: Values;
  next: string[];
  created_at?: string | null;
  metadata?: Record<string, unknown> | null;
}

// ---------- page state ----------
const client = new Client({ apiUrl: location.origin, apiKey: null, callerOptions: { maxRetries: 1 } });
const ui = {
  threadId: null as string | null,
  values: null as Values | null,
  status: "idle" as "idle" | "running" | "interrupted" | "error" | "done",
  runId: null as string | null,
  abort: null as AbortController | null,
  urls: new Map<string, string>(),
  thinking: "",
  modelRunning: false,
  running: new Map<string, { name: string; args: Record<string, unknown> | null; started: number }>(),
  ended: new Map<string, { ms: number; ok: boolean; summary: string }>(),
  interrupt: null as Interrupt | null,
  context: {} as Context,
  selected: null as string | null,
  history: null as HistoryState[] | null,
  replay: 0,
  pending: [] as Array<{ name: string; mimeType: string; data: string; preview: string }>,
  schemaDefaults: {} as Context,
};

// ---------- layout ----------
const CONTEXT_FIELDS: Array<{ key: string; label: string; kind: "select" | "number" | "check" }> = [
  { key: "dialect", label: "Dialect", kind: "select" },
  { key: "maxToolCalls", label: "Max tool calls", kind: "number" },
  { key: "maxTurns", label: "Max turns", kind: "number" },
  { key: "code", label: "Code tool", kind: "select" },
  { key: "plan", label: "Plan first", kind: "check" },
  { key: "approvePlan", label: "Approve the plan", kind: "check" },
  { key: "approveSearch", label: "Approve searches", kind: "check" },
  { key: "approveWebVisit", label: "Approve page visits", kind: "check" },
];

function layout(): void {
  const app = $("#app");
  fill(app,
    h("header", { class: "top" },
      h("h1", {}, "Loupe ", h("span", { class: "sub" }, "watch it think")),
      h("nav", { "aria-label": "Threads" },
        h("button", { type: "button", id: "new-thread", onclick: () => void newThread() }, "New question"),
        h("button", { type: "button", id: "toggle-threads", "aria-expanded": "true", "aria-controls": "threads-panel", onclick: toggleThreads }, "Threads"),
      ),
    ),
    h("div", { id: "error", role: "alert", hidden: true }),
    h("aside", { id: "threads-panel", "aria-label": "Past threads" },
      h("div", { class: "row" }, h("h2", {}, "Threads"), h("button", { type: "button", onclick: () => void refreshThreads() }, "Refresh")),
      h("ul", { id: "threads" }),
    ),
    h("main", {},
      askForm(),
      h("section", { id: "status-bar", "aria-live": "polite" },
        h("span", { id: "status" }, "Ready."),
        h("span", { class: "actions" },
          h("button", { type: "button", id: "stop", hidden: true, onclick: () => void stopRun() }, "Stop"),
          h("button", { type: "button", id: "resume", hidden: true, onclick: () => void resumeRun() }, "Resume"),
          h("button", { type: "button", id: "replay", hidden: true, onclick: () => void startReplay() }, "Replay"),
        ),
      ),
      h("section", { id: "replay-bar", hidden: true, "aria-label": "Replay" },
        h("button", { type: "button", id: "replay-prev", "aria-label": "Previous step", onclick: () => stepReplay(-1) }, "◀"),
        h("input", { type: "range", id: "replay-range", min: 0, max: 0, value: 0, "aria-label": "Step", oninput: (e: Event) => setReplay(Number((e.target as HTMLInputElement).value)) }),
        h("button", { type: "button", id: "replay-next", "aria-label": "Next step", onclick: () => stepReplay(1) }, "▶"),
        h("span", { id: "replay-label" }),
        h("button", { type: "button", onclick: endReplay }, "Back to the final state"),
      ),
      h("section", { id: "approval", hidden: true, "aria-label": "Waiting for your decision" }),
      h("section", { id: "answer", hidden: true, "aria-label": "Answer" }),
      h("div", { class: "work" },
        h("section", { id: "images", "aria-label": "Images" }),
        h("section", { id: "timeline", "aria-label": "Steps" }),
      ),
    ),
  );
}

function askForm(): HTMLElement {
  const fields = CONTEXT_FIELDS.map((f) => {
    const id = `ctx-${f.key}`;
    if (f.kind === "check") return h("label", { class: "check" }, h("input", { type: "checkbox", id, name: f.key }), ` ${f.label}`);
    const control = f.kind === "select" ? h("select", { id, name: f.key }, h("option", { value: "" }, "(server default)")) : h("input", { type: "number", id, name: f.key, min: 0, inputmode: "numeric" });
    return h("label", {}, f.label, control);
  });
  return h("form", { id: "ask", onsubmit: (e: Event) => { e.preventDefault(); void ask(); } },
    h("div", { id: "drop", tabindex: 0, role: "button", "aria-describedby": "drop-help", onclick: () => $<HTMLInputElement>("#file").click(), onkeydown: (e: Event) => {
      const key = (e as KeyboardEvent).key;
      if (key === "Enter" || key === " ") { e.preventDefault(); $<HTMLInputElement>("#file").click(); }
    } },
      h("span", { id: "drop-help" }, "Drop, paste or pick images"),
      h("div", { id: "previews" }),
    ),
    h("input", { type: "file", id: "file", accept: "image/*", multiple: true, hidden: true, onchange: (e: Event) => void addFiles([...((e.target as HTMLInputElement).files ?? [])]) }),
    h("label", { for: "urls", class: "block" }, "Image URLs (one per line)"),
    h("textarea", { id: "urls", rows: 1, placeholder: "https://…/photo.jpg" }),
    h("label", { for: "question", class: "block" }, "Question"),
    h("textarea", { id: "question", rows: 2, required: true, placeholder: "What is written on the sign?", onkeydown: (e: Event) => {
      const k = e as KeyboardEvent;
      if (k.key === "Enter" && (k.ctrlKey || k.metaKey)) { e.preventDefault(); void ask(); }
    } }),
    h("details", { id: "settings" }, h("summary", {}, "Run settings"), h("div", { class: "fields" }, fields)),
    h("div", { class: "row" },
      h("button", { type: "submit", id: "ask-button", class: "primary" }, "Ask"),
      h("span", { id: "ask-mode", class: "muted" }, "A new thread"),
    ),
  );
}

// ---------- errors ----------
function readable(err: unknown): string {
  const raw = err instanceof Error ? err.message : typeof err === "string" ? err : JSON.stringify(err);
  // The SDK's HTTP errors carry the server's JSON body: show what it says.
  const json = /\{[\s\S]*\}/.exec(raw)?.[0];
  if (json) {
    try {
      const body = JSON.parse(json) as { error?: unknown; message?: unknown; detail?: unknown };
      const said = [body.message, body.error, body.detail].find((v) => typeof v === "string" && v);
      if (said) return `${raw.slice(0, raw.indexOf(json)).replace(/[:\s]+$/, "")}${raw.indexOf(json) > 0 ? ": " : ""}${said}`;
    } catch {
      /* not JSON after all */
    }
  }
  if (/Failed to fetch|NetworkError/i.test(raw)) return "The server cannot be reached (is `npm run dev` still running?).";
  return raw.split("\n")[0]!.slice(0, 600);
}

function showError(err: unknown): void {
  const box = $("#error");
  fill(box, h("span", {}, readable(err)), h("button", { type: "button", class: "link", "aria-label": "Dismiss the error", onclick: () => (box.hidden = true) }, "×"));
  box.hidden = false;
}
const clearError = () => ($("#error").hidden = true);

// ---------- settings from the server ----------
async function loadSchema(): Promise<void> {
  try {
    const schemas = await client.assistants.getSchemas("agent");
    const props = ((schemas.context_schema ?? {}) as { properties?: Record<string, { default?: unknown; enum?: unknown[]; description?: string }> }).properties ?? {};
    for (const f of CONTEXT_FIELDS) {
      const prop = props[f.key];
      const el = document.getElementById(`ctx-${f.key}`) as HTMLInputElement | HTMLSelectElement | null;
      if (!el) continue;
      if (!prop) {
        el.closest("label")!.hidden = true;
        continue;
      }
      if (prop.description) el.closest("label")!.title = prop.description;
      if (el instanceof HTMLSelectElement) for (const v of prop.enum ?? []) el.append(h("option", { value: String(v) }, String(v)));
      if (prop.default !== undefined) ui.schemaDefaults[f.key] = prop.default as string | number | boolean;
      if (el instanceof HTMLInputElement && el.type === "checkbox") el.checked = prop.default === true;
      else if (prop.default !== undefined) el.value = String(prop.default);
    }
  } catch (err) {
    showError(`Could not read the server's run settings: ${readable(err)}`);
  }
}

function contextFromForm(): Context {
  const context: Context = {};
  for (const f of CONTEXT_FIELDS) {
    const el = document.getElementById(`ctx-${f.key}`) as HTMLInputElement | HTMLSelectElement | null;
    if (!el || el.closest("label")?.hidden) continue;
    if (el instanceof HTMLInputElement && el.type === "checkbox") {
      if (el.checked || ui.schemaDefaults[f.key] === true) context[f.key] = el.checked;
    } else if (el.value !== "") context[f.key] = f.kind === "number" ? Number(el.value) : el.value;
  }
  return context;
}

// ---------- images to send ----------
async function addFiles(files: File[]): Promise<void> {
  for (const file of files) {
    if (!file.type.startsWith("image/")) {
      showError(`${file.name || "That file"} is not an image (${file.type || "unknown type"}).`);
      continue;
    }
    const dataUrl = await new Promise<string>((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
    ui.pending.push({ name: file.name || "pasted image", mimeType: file.type, data: dataUrl.slice(dataUrl.indexOf(",") + 1), preview: dataUrl });
  }
  renderPreviews();
}

function renderPreviews(): void {
  fill($("#previews"),
    ...ui.pending.map((p, i) =>
      h("figure", { class: "preview" },
        h("img", { src: p.preview, alt: `Image to send: ${p.name}` }),
        h("button", { type: "button", class: "link", "aria-label": `Remove ${p.name}`, onclick: (e: Event) => { e.stopPropagation(); ui.pending.splice(i, 1); renderPreviews(); } }, "×"),
      ),
    ),
  );
}

function wireDropAndPaste(): void {
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const dt = (e as DragEvent).dataTransfer;
    if (!dt) return;
    if (dt.files.length) void addFiles([...dt.files]);
    else {
      const url = dt.getData("text/uri-list") || dt.getData("text/plain");
      if (/^https?:\/\//.test(url)) addUrl(url);
    }
  });
  document.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      e.preventDefault();
      void addFiles(files);
      return;
    }
    const text = e.clipboardData?.getData("text/plain")?.trim() ?? "";
    const target = e.target as HTMLElement | null;
    if (/^https?:\/\/\S+$/.test(text) && target?.id !== "urls" && target?.id !== "question") {
      e.preventDefault();
      addUrl(text);
    }
  });
}

function addUrl(url: string): void {
  const area = $<HTMLTextAreaElement>("#urls");
  area.value = [area.value.trim(), url.trim()].filter(Boolean).join("\n");
}

// ---------- asking and streaming ----------
const STREAM_MODE = ["values", "messages-tuple", "custom"] as ["values", "messages-tuple", "custom"];

async function ask(): Promise<void> {
  if (ui.status === "running") return;
  const question = $<HTMLTextAreaElement>("#question").value.trim();
  const urls = $<HTMLTextAreaElement>("#urls").value.split(/\s+/).filter((u) => /^https?:\/\//.test(u));
  if (!question) {
    showError("Type a question first.");
    $("#question").focus();
    return;
  }
  clearError();
  const content: Block[] = [{ type: "text", text: question }];
  for (const p of ui.pending) content.push({ type: "image", mimeType: p.mimeType, data: p.data, metadata: { name: p.name } });
  for (const url of urls) content.push({ type: "image", url });
  const context = contextFromForm();
  try {
    if (!ui.threadId) {
      const thread = await client.threads.create({ metadata: { graph_id: "agent", source: "loupe-ui" } });
      ui.threadId = thread.thread_id;
      ui.values = null;
      ui.urls.clear();
      history.replaceState(null, "", `#thread=${ui.threadId}`);
      void refreshThreads();
    }
  } catch (err) {
    showError(err);
    return;
  }
  ui.context = context;
  ui.pending = [];
  renderPreviews();
  $<HTMLTextAreaElement>("#question").value = "";
  $<HTMLTextAreaElement>("#urls").value = "";
  const id = crypto.randomUUID();
  await streamRun({ input: { messages: [{ type: "human", id, content }] }, context });
}

async function streamRun(payload: { input?: Record<string, unknown> | null; command?: { resume: unknown }; context: Context }): Promise<void> {
  const threadId = ui.threadId!;
  endReplay();
  ui.abort = new AbortController();
  ui.status = "running";
  ui.interrupt = null;
  ui.thinking = "";
  ui.running.clear();
  ui.ended.clear();
  setStatus("Running…");
  renderApproval();
  scheduleRender();
  let failed = false;
  try {
    const stream = client.runs.stream(threadId, "agent", {
      ...(payload.command ? { command: payload.command } : { input: payload.input ?? null }),
      context: payload.context,
      streamMode: STREAM_MODE,
      signal: ui.abort.signal,
      onRunCreated: ({ run_id }) => (ui.runId = run_id),
    });
    for await (const chunk of stream) {
      if (threadId !== ui.threadId) break; // another thread was opened meanwhile
      onEvent(chunk.event, chunk.data);
      if (chunk.event === "error") failed = true;
    }
  } catch (err) {
    if ((err as Error).name === "AbortError" || ui.abort?.signal.aborted) setStatus("Stopped.");
    else {
      failed = true;
      showError(err);
    }
  } finally {
    ui.abort = null;
    ui.runId = null;
    ui.modelRunning = false;
  }
  if (threadId !== ui.threadId) return;
  await refreshThreadState(failed);
  void refreshThreads();
}

function onEvent(event: string, data: unknown): void {
  if (event === "metadata") ui.runId = (data as { run_id?: string }).run_id ?? ui.runId;
  else if (event === "values") {
    const values = data as Values;
    if (values.__interrupt__?.length) {
      ui.interrupt = values.__interrupt__[0]!;
      ui.status = "interrupted";
      setStatus("Paused: waiting for your decision.");
      renderApproval();
    }
    if (Object.keys(values).some((k) => k !== "__interrupt__")) ui.values = values;
    void fillImageUrls();
  } else if (event === "messages") {
    const [message] = data as [{ content?: unknown; type?: string }, unknown];
    if (typeof message?.content === "string" && message.type !== "tool") ui.thinking += message.content;
  } else if (event === "custom") {
    const e = data as { event: string; callId?: string; name?: string; arguments?: Record<string, unknown> | null; ms?: number; ok?: boolean; summary?: string };
    if (e.event === "model_start") {
      ui.thinking = "";
      ui.modelRunning = true;
    } else if (e.event === "model_end") ui.modelRunning = false;
    else if (e.event === "tool_start" && e.callId) ui.running.set(e.callId, { name: e.name ?? "", args: e.arguments ?? null, started: performance.now() });
    else if (e.event === "tool_end" && e.callId) ui.ended.set(e.callId, { ms: e.ms ?? 0, ok: e.ok ?? true, summary: e.summary ?? "" });
    else if (e.event === "tool_result") void fillImageUrls();
  } else if (event === "error") {
    const err = data as { error?: string; message?: string };
    showError(`The run failed: ${err.message ?? err.error ?? JSON.stringify(data)}`);
  }
  scheduleRender();
}

async function refreshThreadState(failed = false): Promise<void> {
  const threadId = ui.threadId;
  if (!threadId) return;
  try {
    const [state, thread] = await Promise.all([client.threads.getState<Values>(threadId), client.threads.get(threadId)]);
    if (threadId !== ui.threadId) return;
    ui.values = state.values as Values;
    const interrupts = (state.tasks ?? []).flatMap((t) => (t.interrupts ?? []) as Interrupt[]);
    ui.interrupt = interrupts[0] ?? null;
    const busy = thread.status === "busy";
    ui.status = ui.interrupt ? "interrupted" : busy ? "running" : failed || thread.status === "error" ? "error" : state.next.length ? "error" : "done";
    setStatus(
      ui.interrupt ? "Paused: waiting for your decision." :
      busy ? "A run is in progress on this thread." :
      ui.status === "error" ? "The last run did not finish: resume it, or ask again." :
      ui.values.final ? "Done." : "Ready.",
    );
    renderApproval();
    await fillImageUrls();
    if (busy) void joinRunning(threadId);
  } catch (err) {
    showError(err);
  }
  scheduleRender();
}

/** Opening a thread whose run is still going: follow it. */
async function joinRunning(threadId: string): Promise<void> {
  try {
    const runs = await client.runs.list(threadId, { limit: 5 });
    const run = runs.find((r) => r.status === "running" || r.status === "pending");
    if (!run) return;
    ui.status = "running";
    ui.runId = run.run_id;
    ui.abort = new AbortController();
    setStatus("Following the run in progress…");
    for await (const chunk of client.runs.joinStream(threadId, run.run_id, { streamMode: STREAM_MODE, signal: ui.abort.signal })) {
      if (threadId !== ui.threadId) return;
      onEvent(chunk.event, chunk.data);
    }
    ui.abort = null;
    await refreshThreadState();
  } catch (err) {
    if (!ui.abort?.signal.aborted) showError(err);
  }
}

async function stopRun(): Promise<void> {
  const { threadId, runId } = ui;
  if (threadId && runId) {
    try {
      await client.runs.cancel(threadId, runId, false);
    } catch (err) {
      showError(err);
    }
  }
  ui.abort?.abort();
  setStatus("Stopped.");
}

async function resumeRun(): Promise<void> {
  if (!ui.threadId || ui.status === "running") return;
  clearError();
  await streamRun({ input: null, context: Object.keys(ui.context).length ? ui.context : contextFromForm() });
}

async function decide(resume: unknown): Promise<void> {
  if (!ui.threadId) return;
  clearError();
  await streamRun({ command: { resume }, context: Object.keys(ui.context).length ? ui.context : contextFromForm() });
}

let urlsLoading: Promise<void> | null = null;
let urlsAgain = false;
/** Signed URLs of the thread's images (GET /threads/{id}/images), fetched when an image has none yet. */
async function fillImageUrls(): Promise<void> {
  const images = ui.values?.images ?? [];
  if (!ui.threadId || images.every((i) => ui.urls.has(i.id))) return;
  if (urlsLoading) {
    urlsAgain = true;
    return urlsLoading;
  }
  const threadId = ui.threadId;
  urlsLoading = (async () => {
    try {
      const res = await fetch(`/threads/${encodeURIComponent(threadId)}/images`);
      const body = (await res.json()) as { images?: Array<{ id: string; url: string }>; error?: string };
      if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
      if (threadId === ui.threadId) for (const i of body.images ?? []) ui.urls.set(i.id, new URL(i.url, location.href).pathname);
    } catch (err) {
      showError(`Could not list the thread's images: ${readable(err)}`);
    } finally {
      urlsLoading = null;
    }
    scheduleRender();
    if (urlsAgain) {
      urlsAgain = false;
      await fillImageUrls();
    }
  })();
  return urlsLoading;
}

// ---------- threads ----------
function toggleThreads(): void {
  const panel = $("#threads-panel");
  panel.hidden = !panel.hidden;
  $("#toggle-threads").setAttribute("aria-expanded", String(!panel.hidden));
  if (!panel.hidden) void refreshThreads();
}

function threadTitle(values: Values | undefined): string {
  const human = (values?.messages ?? []).find((m) => m.type === "human");
  const text = typeof human?.content === "string" ? human.content : (human?.content ?? []).filter((b) => b.type === "text").map((b) => b.text).join(" ");
  return (text || values?.question || "(no question yet)").slice(0, 120);
}

async function refreshThreads(): Promise<void> {
  try {
    const threads = await client.threads.search<Values>({ limit: 50, sortBy: "created_at", sortOrder: "desc" });
    fill($("#threads"),
      ...threads.map((t) =>
        h("li", { class: t.thread_id === ui.threadId ? "current" : "" },
          h("button", { type: "button", class: "thread", "data-thread": t.thread_id, onclick: () => void openThread(t.thread_id) },
            h("span", { class: "title" }, threadTitle(t.values as Values | undefined)),
            h("span", { class: "muted" }, `${new Date(t.created_at).toLocaleString()} · ${t.status}`),
          ),
        ),
      ),
    );
    if (!threads.length) $("#threads").append(h("li", { class: "muted" }, "No threads yet."));
  } catch (err) {
    showError(`Could not list the threads: ${readable(err)}`);
  }
}

async function openThread(threadId: string): Promise<void> {
  ui.abort?.abort();
  ui.threadId = threadId;
  ui.values = null;
  ui.urls.clear();
  ui.running.clear();
  ui.ended.clear();
  ui.thinking = "";
  ui.selected = null;
  ui.context = {};
  endReplay();
  clearError();
  history.replaceState(null, "", `#thread=${threadId}`);
  setStatus("Loading the thread…");
  await refreshThreadState();
  void refreshThreads();
}

function newThread(): void {
  ui.abort?.abort();
  Object.assign(ui, { threadId: null, values: null, interrupt: null, status: "idle", selected: null, thinking: "", context: {} });
  ui.urls.clear();
  ui.running.clear();
  endReplay();
  history.replaceState(null, "", location.pathname);
  setStatus("Ready.");
  renderApproval();
  scheduleRender();
  $("#question").focus();
}

// ---------- replay ----------
async function startReplay(): Promise<void> {
  if (!ui.threadId) return;
  try {
    const states = (await client.threads.getHistory<Values>(ui.threadId, { limit: 200 })) as unknown as HistoryState[];
    ui.history = states.reverse();
    ui.replay = 0;
    const range = $<HTMLInputElement>("#replay-range");
    range.max = String(Math.max(0, ui.history.length - 1));
    $("#replay-bar").hidden = false;
    setReplay(0);
    $("#replay-next").focus();
  } catch (err) {
    showError(err);
  }
}

function stepReplay(delta: number): void {
  if (ui.history) setReplay(ui.replay + delta);
}

function setReplay(i: number): void {
  if (!ui.history?.length) return;
  ui.replay = Math.max(0, Math.min(ui.history.length - 1, i));
  $<HTMLInputElement>("#replay-range").value = String(ui.replay);
  const state = ui.history[ui.replay]!;
  const step = state.metadata?.step;
  $("#replay-label").textContent = `Checkpoint ${ui.replay + 1} of ${ui.history.length}${typeof step === "number" ? ` (step ${step})` : ""}${state.next.length ? ` → ${state.next.join(", ")}` : " (final)"}`;
  scheduleRender();
}

function endReplay(): void {
  ui.history = null;
  const bar = document.getElementById("replay-bar");
  if (bar) bar.hidden = true;
  scheduleRender();
}

// ---------- rendering ----------
let frame = 0;
function scheduleRender(): void {
  if (!frame) frame = requestAnimationFrame(() => {
    frame = 0;
    render();
  });
}

function setStatus(text: string): void {
  $("#status").textContent = text;
}

function shownValues(): Values | null {
  return ui.history ? (ui.history[ui.replay]?.values ?? null) : ui.values;
}

let formThread: string | null = null;
function render(): void {
  const values = shownValues();
  const live = !ui.history;
  $("#stop").hidden = !(live && ui.status === "running");
  $("#resume").hidden = !(live && ui.status === "error" && ui.threadId);
  $("#replay").hidden = !(ui.threadId && ui.status !== "running");
  $("#ask-mode").textContent = ui.threadId ? "A follow-up on this thread" : "A new thread";
  // On a thread the question box moves below the run (a follow-up, as in a chat); a new question starts at the top.
  $("main").classList.toggle("on-thread", Boolean(ui.threadId));
  if (ui.threadId !== formThread) {
    formThread = ui.threadId;
    if (ui.threadId) $<HTMLDetailsElement>("#settings").open = false;
  }
  $<HTMLButtonElement>("#ask-button").disabled = ui.status === "running";
  renderImages(values);
  renderTimeline(values, live);
  renderAnswer(values);
}

function urlOf(id: string): string | undefined {
  return ui.urls.get(id);
}

const BOX_COLOUR = "#ff00ff";

function describe(image: ImageRef): string {
  return `${image.id}: ${image.op ? `${image.op} of ${image.parent}` : "input image"}, ${image.width}×${image.height} pixels`;
}

/** An image with boxes drawn over it (in its own pixels), labelled. */
function boxedImage(image: ImageRef, boxes: Array<{ id: string; x1: number; y1: number; x2: number; y2: number }>, cls: string): HTMLElement {
  const url = urlOf(image.id);
  const label = Math.max(image.width, image.height) / 24;
  return h("figure", { class: `boxed ${cls}` },
    url ? h("img", { src: url, alt: `${describe(image)}${boxes.length ? `, with ${boxes.length} crop box${boxes.length === 1 ? "" : "es"}: ${boxes.map((b) => b.id).join(", ")}` : ""}`, width: image.width, height: image.height })
      : h("div", { class: "placeholder", style: `aspect-ratio: ${image.width} / ${image.height}`, role: "img", "aria-label": `${describe(image)} (loading)` }),
    s("svg", { class: "boxes", viewBox: `0 0 ${image.width} ${image.height}`, preserveAspectRatio: "none", "aria-hidden": "true" },
      boxes.map((b) => s("g", { "data-box": b.id },
        s("rect", { x: b.x1, y: b.y1, width: Math.max(1, b.x2 - b.x1), height: Math.max(1, b.y2 - b.y1), fill: "none", stroke: BOX_COLOUR, "stroke-width": 4, "vector-effect": "non-scaling-stroke" }),
        s("text", { x: b.x1 + label * 0.3, y: b.y1 + label * 1.1, "font-size": label, fill: BOX_COLOUR, stroke: "#000", "stroke-width": label / 12, "paint-order": "stroke" }, b.id),
      )),
    ),
  );
}

function renderImages(values: Values | null): void {
  const pane = $("#images");
  const images = values?.images ?? [];
  if (!images.length) {
    pane.replaceChildren(h("p", { class: "muted" }, ui.status === "running" ? "Reading the image…" : "Images the agent looks at appear here, each crop boxed on the photo."));
    return;
  }
  const placed = placements(images);
  const roots = images.filter((i) => i.parent === null);
  const kids = childrenOf(images) as Map<string | null, ImageRef[]>;
  const tree = (parent: string | null): HTMLElement | null => {
    const list = (kids.get(parent) ?? []).filter((i) => parent !== null || i.parent === null || !images.some((p) => p.id === i.parent));
    if (!list.length) return null;
    return h("ul", { class: "tree" }, list.map((image) => h("li", {},
      h("button", { type: "button", class: `node${ui.selected === image.id ? " selected" : ""}`, "data-image": image.id, "aria-pressed": String(ui.selected === image.id), onclick: () => selectImage(image.id) },
        urlOf(image.id) ? h("img", { src: urlOf(image.id)!, alt: describe(image), loading: "lazy" }) : h("span", { class: "thumb-placeholder", "aria-hidden": "true" }),
        h("span", {}, h("b", {}, image.id), " ", h("span", { class: "muted" }, image.op ?? "input")),
      ),
      tree(image.id),
    )));
  };
  const selected = images.find((i) => i.id === ui.selected);
  const parent = selected?.parent ? images.find((i) => i.id === selected.parent) : undefined;
  const box = selected ? opBox(selected.op) : undefined;
  fill(pane,
    h("h2", {}, "Input"),
    ...roots.map((root) => boxedImage(root, images.flatMap((i) => {
      const p = placed.get(i.id);
      return p && p.cut && p.root === root.id ? [{ id: i.id, ...p.box }] : [];
    }), "input")),
    h("h2", {}, "Images made"),
    tree(null) ?? h("p", { class: "muted" }, "None yet."),
    selected ? h("div", { class: "viewer", id: "viewer", tabindex: -1, "aria-label": `${selected.id}, full size` },
      h("div", { class: "row" }, h("h2", {}, selected.id), h("button", { type: "button", onclick: () => selectImage(null) }, "Close")),
      h("p", { class: "muted" }, describe(selected)),
      boxedImage(selected, [], "full"),
      parent && box ? [h("p", {}, `Where it was cut from ${parent.id}:`), boxedImage(parent, [{ id: selected.id, ...box }], "parent")] : null,
      step(selected.id) ? h("button", { type: "button", class: "link", onclick: () => goToStep(step(selected.id)!) }, "Go to the step that made it") : null,
    ) : null,
  );
}

function selectImage(id: string | null): void {
  ui.selected = id;
  render();
  if (id) document.getElementById("viewer")?.focus();
}

/** The call id whose result made an image (from the calls' records and tool messages), if known. */
function step(imageId: string): string | undefined {
  for (const call of calls(shownValues())) if (call.images.includes(imageId)) return call.id;
  return undefined;
}

function goToStep(callId: string): void {
  const el = document.getElementById(`call-${callId}`);
  if (!el) return;
  el.scrollIntoView({ behavior: "smooth", block: "center" });
  el.classList.add("flash");
  setTimeout(() => el.classList.remove("flash"), 1600);
  el.focus();
}

interface CallView {
  id: string;
  name: string;
  args: Record<string, unknown>;
  result?: Msg;
  record?: ToolRecord;
  images: string[];
  notes: string[];
}

function textOf(content: Msg["content"]): string {
  return typeof content === "string" ? content : (content ?? []).filter((b) => b.type === "text").map((b) => b.text ?? "").join("\n");
}

/** Every tool call of the thread, in order, with its result message, its record and reflect's notes. */
function calls(values: Values | null): CallView[] {
  const messages = values?.messages ?? [];
  const records = [...(values?.toolCalls ?? [])];
  const results = new Map(messages.filter((m) => m.type === "tool" && m.tool_call_id).map((m) => [m.tool_call_id!, m]));
  const notes = new Map<string, string[]>();
  for (const t of values?.conversation ?? []) {
    if (t.role === "tool" && t.toolCallId) notes.set(t.toolCallId, (t.parts ?? []).filter((p) => p.type === "text" && p.text && !/^img_\d+/.test(p.text)).map((p) => p.text!));
  }
  const out: CallView[] = [];
  let next = 0;
  for (const m of messages) {
    for (const c of m.type === "ai" ? (m.tool_calls ?? []) : []) {
      const id = c.id ?? `${out.length}`;
      const result = results.get(id);
      const at = records.findIndex((r, i) => i >= next && r.name === c.name);
      const record = result && at >= 0 ? records[at] : undefined;
      if (record) next = at + 1;
      const fromText = [...textOf(result?.content).matchAll(/^(img_\d+) \(/gm)].map((x) => x[1]!);
      out.push({ id, name: c.name, args: c.args ?? {}, result, record, images: record?.images.length ? record.images : fromText, notes: notes.get(id) ?? [] });
    }
  }
  return out;
}

function stripThink(text: string): string {
  return text.replace(/<\/?think>/g, "").replace(/<tool_call>[\s\S]*?(<\/tool_call>|$)/g, "").replace(/<answer>[\s\S]*?(<\/answer>|$)/g, "").trim();
}

function argsView(name: string, args: Record<string, unknown>): HTMLElement {
  if (name === "code" && typeof args.code === "string") return h("pre", { class: "code" }, h("code", {}, args.code));
  return h("pre", { class: "args" }, JSON.stringify(args, null, 1).replace(/\n\s*/g, " "));
}

function callCard(call: CallView, live: boolean): HTMLElement {
  const running = live ? ui.running.get(call.id) : undefined;
  const ended = live ? ui.ended.get(call.id) : undefined;
  const ms = call.record?.ms ?? ended?.ms;
  const ok = call.record?.ok ?? ended?.ok;
  const state = call.result ? (ok === false ? "failed" : "done") : running ? (ended ? "finishing" : "running") : "waiting";
  const text = textOf(call.result?.content);
  const links = call.record?.urls ?? [];
  const visited = call.name === "web_visit" ? ((call.args.urls as string[] | undefined) ?? []) : [];
  return h("article", { class: `call ${state}`, id: `call-${call.id}`, tabindex: -1, "data-tool": call.name },
    h("header", {},
      h("b", {}, call.name),
      h("span", { class: `badge ${state}` }, state === "running" ? "running…" : state),
      ms !== undefined ? h("span", { class: "muted" }, `${(ms / 1000).toFixed(2)} s`) : null,
    ),
    argsView(call.name, call.args),
    visited.length ? h("p", {}, "Pages visited: ", visited.map((u, i) => [i ? ", " : "", h("a", { href: u, target: "_blank", rel: "noopener noreferrer", class: "page-link" }, u)])) : null,
    links.length && call.name !== "web_visit" ? h("ul", { class: "links" }, links.map((l) => h("li", {}, h("a", { href: l.url, target: "_blank", rel: "noopener noreferrer", class: "search-link" }, l.title || l.url), " ", h("span", { class: "muted" }, l.url)))) : null,
    call.images.length ? h("div", { class: "made" }, call.images.map((id) => {
      const image = (shownValues()?.images ?? []).find((i) => i.id === id);
      const url = urlOf(id);
      return h("button", { type: "button", class: "crop-thumb", onclick: () => selectImage(id), "aria-label": `Open ${id}` },
        url && image ? h("img", { src: url, alt: describe(image) }) : null, h("span", {}, id));
    })) : null,
    text ? h("details", { class: "result", open: call.name === "web_visit" || call.name === "code" }, h("summary", {}, call.name === "code" ? "Output" : call.name === "web_visit" ? "What the pages say" : "Result"), h("pre", {}, text.replace(/ ?!\[img_\d+\]\([^)]*\)/g, ""))) : !call.result && ended?.summary ? h("p", { class: "muted" }, ended.summary) : null,
    call.notes.length ? h("div", { class: "notes" }, h("b", {}, "Reflect's notes"), h("ul", {}, call.notes.map((n) => h("li", {}, n)))) : null,
  );
}

function renderTimeline(values: Values | null, live: boolean): void {
  const pane = $("#timeline");
  const messages = values?.messages ?? [];
  const all = calls(values);
  const byId = new Map(all.map((c) => [c.id, c]));
  const items: Array<HTMLElement | null> = [];
  for (const m of messages) {
    if (m.type === "human") {
      items.push(h("article", { class: "human" }, h("b", {}, "Question"), h("p", {}, textOf(m.content))));
    } else if (m.type === "ai") {
      const text = stripThink(textOf(m.content));
      const isAnswer = !m.tool_calls?.length && m.response_metadata?.citations !== undefined;
      if (isAnswer) continue;
      items.push(h("article", { class: "turn" },
        text ? h("details", { class: "thinking", open: true }, h("summary", {}, "Thinking"), h("p", {}, text)) : null,
        (m.tool_calls ?? []).map((c) => (c.id && byId.get(c.id) ? callCard(byId.get(c.id)!, live) : null)),
      ));
    }
  }
  if (live && ui.status === "running" && ui.modelRunning) {
    items.push(h("article", { class: "turn live", "aria-live": "off" }, h("details", { class: "thinking", open: true }, h("summary", {}, "Thinking…"), h("p", {}, stripThink(ui.thinking) || "…"))));
  }
  fill(pane, h("h2", {}, "Steps"), ...(items.length ? items : [h("p", { class: "muted" }, "The model's thinking, each tool call and its results appear here as the run goes.")]));
}

function renderAnswer(values: Values | null): void {
  const pane = $("#answer");
  const final = values?.final;
  if (!final) {
    pane.hidden = true;
    pane.replaceChildren();
    return;
  }
  const all = calls(values);
  const pageStep = (url: string) => all.find((c) => c.record?.urls.some((u) => u.url === url) || (c.name === "web_visit" && ((c.args.urls as string[] | undefined) ?? []).includes(url)))?.id;
  pane.hidden = false;
  fill(pane,
    h("h2", {}, final.reason === "answered" ? "Answer" : "Answer (a budget ran out)"),
    h("p", { id: "answer-text" }, final.answer),
    final.citations.length ? h("div", { class: "citations" }, h("b", {}, "Sources: "), final.citations.map((c) => {
      if (c.type === "image") {
        const made = step(c.id);
        return h("button", { type: "button", class: "cite", onclick: () => { selectImage(c.id); if (made) goToStep(made); } }, c.id);
      }
      const at = pageStep(c.url);
      return h("span", { class: "cite-page" },
        h("button", { type: "button", class: "cite", disabled: !at, title: at ? "Go to the step that found it" : "", onclick: () => at && goToStep(at) }, c.title || c.url),
        h("a", { href: c.url, target: "_blank", rel: "noopener noreferrer", "aria-label": `Open ${c.url}` }, "↗"),
      );
    })) : null,
    values?.usage ? h("p", { class: "muted" }, `${values.usage.turns} turns · ${values.usage.toolCalls} tool calls · ${values.usage.promptTokens + values.usage.completionTokens} tokens`) : null,
  );
}

// ---------- approval ----------
let shownInterrupt: string | null = null;
function renderApproval(): void {
  const pane = $("#approval");
  const it = ui.interrupt;
  if (!it || ui.status !== "interrupted") {
    pane.hidden = true;
    shownInterrupt = null;
    return;
  }
  const key = JSON.stringify(it);
  if (shownInterrupt === key && !pane.hidden) return;
  shownInterrupt = key;
  pane.hidden = false;
  const v = it.value ?? {};
  const reason = h("input", { type: "text", id: "deny-reason", placeholder: "Why (optional; the model reads it)" });
  if (v.type === "plan_review") {
    const plan = h("textarea", { id: "plan-edit", rows: 8, "aria-label": "The plan (JSON)" }) as HTMLTextAreaElement;
    plan.value = JSON.stringify(v.plan ?? [], null, 2);
    fill(pane,
      h("h2", {}, "Review the plan"),
      v.problem ? h("p", { class: "problem" }, v.problem) : null,
      h("ol", {}, (v.plan as Array<{ description?: string; tool_name?: string }> | undefined ?? []).map((p) => h("li", {}, `${p.description ?? ""} (${p.tool_name ?? "?"})`))),
      h("details", {}, h("summary", {}, "Edit the plan"), plan),
      h("label", { class: "block" }, "Reason ", reason),
      h("div", { class: "row" },
        h("button", { type: "button", class: "primary", "data-action": "approve", onclick: () => void decide({ action: "approve" }) }, "Approve"),
        h("button", { type: "button", "data-action": "edit", onclick: () => {
          try {
            void decide({ action: "edit", plan: JSON.parse(plan.value), ...(reason.value ? { reason: reason.value } : {}) });
          } catch (err) {
            showError(`The edited plan is not JSON: ${readable(err)}`);
          }
        } }, "Use the edited plan"),
        h("button", { type: "button", "data-action": "deny", onclick: () => void decide({ action: "deny", ...(reason.value ? { reason: reason.value } : {}) }) }, "Reject"),
      ),
    );
  } else {
    const requests = v.action_requests ?? (v.calls ?? []).map((c) => ({ name: c.name, args: c.arguments ?? {} }));
    const editors = requests.map((r, i) => {
      const area = h("textarea", { rows: 4, "aria-label": `Arguments of ${r.name} (JSON)`, id: `call-edit-${i}` }) as HTMLTextAreaElement;
      area.value = JSON.stringify(r.args, null, 2);
      return area;
    });
    fill(pane,
      h("h2", {}, requests.length === 1 ? "A call waits for your approval" : `${requests.length} calls wait for your approval`),
      v.problem ? h("p", { class: "problem" }, v.problem) : null,
      requests.map((r, i) => h("div", { class: "pending-call" }, h("b", {}, r.name), argsView(r.name, r.args), h("details", {}, h("summary", {}, "Edit the arguments"), editors[i]))),
      h("label", { class: "block" }, "Reason ", reason),
      h("div", { class: "row" },
        h("button", { type: "button", class: "primary", "data-action": "approve", onclick: () => void decide({ action: "approve" }) }, "Approve"),
        v.action_requests ? h("button", { type: "button", "data-action": "edit", onclick: () => {
          try {
            const decisions = requests.map((r, i) => {
              const args = JSON.parse(editors[i]!.value) as Record<string, unknown>;
              return JSON.stringify(args) === JSON.stringify(r.args) ? { type: "approve" } : { type: "edit", edited_action: { name: r.name, args } };
            });
            void decide({ decisions });
          } catch (err) {
            showError(`The edited arguments are not JSON: ${readable(err)}`);
          }
        } }, "Run as edited") : null,
        h("button", { type: "button", "data-action": "deny", onclick: () => void decide({ action: "deny", ...(reason.value ? { reason: reason.value } : {}) }) }, "Deny"),
      ),
    );
  }
  (pane.querySelector("[data-action=approve]") as HTMLElement | null)?.focus({ preventScroll: true });
}

// ---------- start ----------
async function start(): Promise<void> {
  layout();
  wireDropAndPaste();
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && ui.selected) selectImage(null);
  });
  scheduleRender();
  await loadSchema();
  const fromHash = /thread=([\w-]+)/.exec(location.hash)?.[1];
  if (fromHash) await openThread(fromHash);
  void refreshThreads();
}

void start();
