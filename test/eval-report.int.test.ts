// report.html in headless Chromium with the network cut off: trajectories, sub-images with their boxes, search links, filters; `loupe report` rebuilds it.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type ScriptedModelServer, type ScriptedTurn } from "../src/cli/demo/scripted-model-server.js";
import type { RecordedRequest } from "../src/cli/demo/http-recording.js";
import { requestText, tempDir } from "./helpers.js";
import { testPicture } from "./scenarios/eval.js";
import { resolveConfig } from "../src/core/config.js";
import { runEval } from "../src/eval/run.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "loupe.mjs");
const CHROMIUM = "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`eval-report: skipping the browser test: ${CHROMIUM} is not installed (apt-get install chromium)`);

const SEARCH = {
  "harbour sign code": [
    { title: "Harbour signs", url: "https://example.org/harbour-signs", content: "Each pier sign carries a code." },
    { title: "Pier codes", url: "https://example.org/pier-codes", content: "K-7 is the north pier." },
    { title: "Click me", url: "javascript:alert(document.cookie)", content: "A result with a script URL." },
  ],
};

const CASES: Record<string, Array<ScriptedTurn>> = {
  crop: [
    { content: "<think>The sign is at the top left.</think>", toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } }] },
    { content: "<think>Closer still.</think>", toolCalls: [{ name: "zoom", arguments: { image: "img_1", bbox: [100, 100, 900, 700] } }] },
    { content: "<think>It reads K-7.</think><answer>K-7</answer>" },
  ],
  search: [
    { content: "<think>Look the code up.</think>", toolCalls: [{ name: "text_search", arguments: { queries: ["harbour sign code"] } }] },
    { content: "<think>The second result names it.</think><answer>north pier</answer>" },
  ],
  wrong: [{ content: "<think>Guessing.</think><answer>Q-1</answer>" }],
  broken: [{ fault: { status: 400, message: "refused" } }],
};

let tmp: Awaited<ReturnType<typeof tempDir>>;
let model: ScriptedModelServer;
let tavily: FakeTavilyServer;
let runDir: string;

beforeAll(async () => {
  tmp = await tempDir("loupe-report-");
  await mkdir(join(tmp.dir, "ds"), { recursive: true });
  await writeFile(join(tmp.dir, "ds", "pic.png"), await testPicture(640, 480));
  const answers: Record<string, string> = { crop: "K-7", search: "north pier", wrong: "K-7", broken: "K-7" };
  const lines = Object.keys(CASES).map((name) => JSON.stringify({ id: name, image: "pic.png", question: `Case ${name}: what does the sign say?`, answer: answers[name], category: name === "search" ? "search" : "perception" }));
  await writeFile(join(tmp.dir, "ds", "cases.jsonl"), `${lines.join("\n")}\n`);
  model = await startScriptedModelServer({
    onExhausted: "repeat-last",
    script: [
      (req: RecordedRequest) => {
        const name = /Case (\w+):/.exec(requestText(req.body))?.[1] ?? "";
        const step = (req.body.messages as Array<{ role: string }>).filter((m) => m.role === "assistant").length;
        return CASES[name]?.[step] ?? { content: "<answer>?</answer>" };
      },
    ],
  });
  tavily = await startFakeTavilyServer({ search: SEARCH });
  runDir = join(tmp.dir, "run");
  const settings = resolveConfig({ modelUrl: model.url, dataDir: join(tmp.dir, "data"), retries: 1, retryBaseMs: 10, tavilyUrl: tavily.url, webVisit: "tavily" }, {});
  await runEval({
    dataset: join(tmp.dir, "ds", "cases.jsonl"),
    concurrency: 2,
    out: runDir,
    resume: false,
    settings,
    secrets: { tavilyApiKey: FAKE_TAVILY_API_KEY },
    progress: false,
    report: false,
    log: () => {},
  });
});

afterAll(async () => {
  await model?.close();
  await tavily?.close();
  await tmp?.cleanup();
});

describe("report.html", () => {
  it("loupe report RUN_DIR rebuilds report.html", async () => {
    const path = join(runDir, "report.html");
    if (existsSync(path)) unlinkSync(path);
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
      const child = spawn(process.execPath, [BIN, "report", runDir], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", fail);
      child.on("close", (code) => done({ code, stdout, stderr }));
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(path);
    expect(statSync(path).size).toBeGreaterThan(10_000);
    // Only http(s) URLs become links: a search result's javascript: URL is shown as text.
    const html = readFileSync(path, "utf8");
    expect(html).toContain("javascript:alert(document.cookie)");
    expect(html).not.toMatch(/href="\s*javascript:/i);
  });

  it.skipIf(!hasChromium)("opens offline in headless Chromium: trajectories and sub-images render, filters work (skipped without /usr/bin/chromium)", async () => {
    const path = join(runDir, "report.html");
    expect(existsSync(path)).toBe(true);
    const { chromium } = await import("playwright-core");
    const profile = await mkdtemp(join(tmpdir(), "loupe-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1280, height: 2000 },
    });
    const blocked: string[] = [];
    try {
      await context.route("**/*", (route) => {
        const url = route.request().url();
        if (url.startsWith("file:")) return route.continue();
        blocked.push(url);
        return route.abort();
      });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`file://${path}`);
      await page.click("#expand");
      // (Browser-side code as strings: the test's TypeScript has no DOM types.)
      await page.waitForFunction("Array.from(document.images).every((i) => i.complete)");
      const images = (await page.evaluate("Array.from(document.images).map((i) => ({ w: i.naturalWidth, cls: i.className }))")) as Array<{ w: number; cls: string }>;
      // crop: input, crop, zoom; search and wrong: their input; broken failed before its image entered the state.
      expect(images).toHaveLength(5);
      expect(images.every((i) => i.w > 0)).toBe(true);
      expect(images.filter((i) => i.cls === "sub")).toHaveLength(2);
      // Each sub-image's box is drawn on its parent, with the parent image filled in.
      const boxes = (await page.evaluate(
        `Array.from(document.querySelectorAll("svg.parent")).map((s) => ({ href: s.querySelector("image").getAttribute("href").slice(0, 23), rect: Number(s.querySelector("rect").getAttribute("width")) }))`,
      )) as Array<{ href: string; rect: number }>;
      expect(boxes).toHaveLength(2);
      for (const b of boxes) {
        expect(b.href).toBe("data:image/jpeg;base64,");
        expect(b.rect).toBeGreaterThan(0);
      }
      expect(await page.locator("section.step").count()).toBe(3 + 2 + 1);
      expect(await page.locator(".think").count()).toBe(6);
      const links = await page.evaluate(`Array.from(document.querySelectorAll(".links a")).map((a) => a.getAttribute("href"))`);
      expect(links).toEqual(["https://example.org/harbour-signs", "https://example.org/pier-codes"]);
      expect(await page.locator(".verdict").count()).toBe(3);
      expect(await page.locator("svg.plot").count()).toBe(3);
      await page.screenshot({ path: join(tmp.dir, "report.png"), fullPage: true });
      expect(statSync(join(tmp.dir, "report.png")).size).toBeGreaterThan(20_000);

      const visible = async () => page.locator("article.item:not(.hidden)").count();
      await page.click('button[data-filter="error"]');
      expect(await visible()).toBe(1);
      await page.click('button[data-filter="incorrect"]');
      expect(await visible()).toBe(2);
      await page.click('button[data-filter="correct"]');
      expect(await visible()).toBe(2);
      await page.click('button[data-filter="all"]');
      expect(await visible()).toBe(4);
      expect(errors).toEqual([]);
      expect(blocked).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
