// The live page (/ui) in headless Chromium against `npm run dev` with the scripted model: upload, watch crops boxed as
// they are made, approve a paused web_visit from the page, reload and reopen the thread; nothing but the server's origin.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type ScriptedModelServer } from "../src/cli/demo/scripted-model-server.js";
import { harbourImage, SIGN_PAGE_URL, TRAJECTORY_PAGES, TRAJECTORY_SEARCH } from "../src/cli/demo/trajectory.js";
import { devServerEnv, startDevServer, stopDevServer, type DevServer } from "./dev-server.js";
import { tempDir } from "./helpers.js";

const ROOT = resolve(import.meta.dirname, "..");
const CHROMIUM = "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`ui: skipping the browser test: ${CHROMIUM} is not installed (apt-get install chromium)`);
/** docs/ui.png is written when missing, or again with LOUPE_UI_SCREENSHOT=1. */
const SCREENSHOT = join(ROOT, "docs", "ui.png");

const QUESTION = "What code is written on the north pier sign?";
const think = (text: string) => `<think>${text}</think>`;
const SCRIPT = [
  { content: think("The sign is in the upper left quarter. Crop it."), toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [250, 250, 500, 500] } }] },
  { content: think("Closer: the lettering."), toolCalls: [{ name: "crop", arguments: { image: "img_1", bbox: [0, 0, 600, 600] } }] },
  { content: think("And the red box lower right."), toolCalls: [{ name: "crop", arguments: { image: "img_0", bbox: [520, 520, 680, 680] } }] },
  { content: think("What kind of sign is this?"), toolCalls: [{ name: "text_search", arguments: { queries: ["blue harbour sign white lettering"] } }] },
  { content: think("Read the harbour page."), toolCalls: [{ name: "web_visit", arguments: { urls: [SIGN_PAGE_URL], goal: "the code on the north pier sign" } }] },
  { content: `${think("The page says LOUPE-42.")}<answer>LOUPE-42</answer>` },
];

let tmp: Awaited<ReturnType<typeof tempDir>>;
let model: ScriptedModelServer;
let tavily: FakeTavilyServer;
let server: DevServer;

beforeAll(async () => {
  if (!hasChromium) return;
  tmp = await tempDir("loupe-ui-");
  tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  // Slow enough turns that the page is seen mid-run.
  model = await startScriptedModelServer({ script: SCRIPT, latencyMs: 350 });
  server = await startDevServer(join(tmp.dir, "server"), devServerEnv(tmp.dir, model.url, tavily.url, { LOUPE_CODE: "off" }));
}, 90_000);

afterAll(async () => {
  await stopDevServer(server);
  await model?.close();
  await tavily?.close();
  await tmp?.cleanup();
});

/** Pixels of exactly the boxes' colour (pure magenta) in a PNG. */
async function magentaPixels(png: Buffer): Promise<number> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let n = 0;
  for (let i = 0; i < data.length; i += info.channels) if (data[i]! > 245 && data[i + 1]! < 10 && data[i + 2]! > 245) n++;
  return n;
}

describe("the live page (/ui)", () => {
  it.skipIf(!hasChromium)("asks with an upload, draws crops as they are made, approves a paused web_visit, reopens the thread after a reload; same origin only (skipped without /usr/bin/chromium)", async () => {
    const { chromium } = await import("playwright-core");
    const profile = await mkdtemp(join(tmpdir(), "loupe-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1280, height: 800 },
    });
    const origin = new URL(server.url).origin;
    const blocked: string[] = [];
    try {
      await context.route("**/*", (route) => {
        const url = route.request().url();
        if (new URL(url).origin === origin || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
        blocked.push(url);
        return route.abort();
      });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${server.url}/ui`);
      // The server's defaults are preselected.
      await page.waitForFunction(() => (document.getElementById("ctx-maxTurns") as HTMLInputElement | null)?.value !== "", null, { timeout: 15_000 });
      expect(await page.inputValue("#ctx-dialect")).toBe("tools");
      expect(await page.inputValue("#ctx-code")).toBe("off");

      const photo = await harbourImage(1600, 1200);
      await page.setInputFiles("#file", { name: "harbour.jpg", mimeType: "image/jpeg", buffer: photo });
      await page.waitForSelector("#previews img");
      await page.fill("#question", QUESTION);
      await page.click("#settings summary");
      await page.check("#ctx-approveWebVisit");
      const started = Date.now();
      await page.click("#ask-button");

      // Poll the DOM while the run streams: when the first box and the answer appear.
      let firstBoxAt = 0;
      let answerAt = 0;
      let shot: Buffer | undefined;
      const deadline = Date.now() + 40_000;
      for (;;) {
        const seen = await page.evaluate(() => ({
          boxes: document.querySelectorAll("#images figure.input [data-box]").length,
          answer: document.getElementById("answer-text")?.textContent ?? "",
          approve: Boolean(document.querySelector("#approval:not([hidden]) [data-action=approve]")),
        }));
        if (seen.boxes > 0 && !firstBoxAt) firstBoxAt = Date.now();
        if (seen.answer && !answerAt) answerAt = Date.now();
        if (seen.approve && !shot) {
          // Paused before web_visit: three crops boxed on the input, the crops, the search's links.
          expect(seen.boxes).toBe(3);
          expect(await page.locator("#images figure.input [data-box]").evaluateAll((gs) => gs.map((g) => g.getAttribute("data-box")))).toEqual(["img_1", "img_2", "img_3"]);
          await page.waitForFunction(() => document.querySelectorAll(".crop-thumb img").length >= 3, null, { timeout: 10_000 });
          await page.waitForFunction(() => [...document.querySelectorAll("#images figure.input img")].every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0));
          expect(await page.locator("a.search-link").count()).toBeGreaterThan(0);
          expect(await page.locator("a.search-link").first().getAttribute("href")).toMatch(/^https:\/\/example\.org\//);
          expect(await page.locator("#images figure.input img").getAttribute("alt")).toMatch(/img_0.*crop boxes: img_1, img_2, img_3/);
          shot = await page.screenshot();
          expect(await magentaPixels(shot)).toBeGreaterThan(200);
          if (!existsSync(SCREENSHOT) || process.env.LOUPE_UI_SCREENSHOT === "1") {
            await mkdir(join(ROOT, "docs"), { recursive: true });
            await writeFile(SCREENSHOT, await sharp(shot).resize({ width: 960 }).png({ palette: true, quality: 80, compressionLevel: 9 }).toBuffer());
          }
          await page.click("#approval [data-action=approve]");
        }
        if (answerAt) break;
        if (Date.now() > deadline) throw new Error(`no answer within 40 s: ${JSON.stringify(seen)}\n${server.log().slice(-3000)}`);
        await page.waitForTimeout(100);
      }
      expect(shot, "the run paused for the web_visit approval").toBeDefined();
      expect(firstBoxAt).toBeGreaterThan(started);
      expect(firstBoxAt).toBeLessThan(answerAt);
      expect(await page.textContent("#answer-text")).toBe("LOUPE-42");
      // The approved call ran: the page it read is shown.
      await page.waitForSelector('article.call[data-tool="web_visit"].done');
      expect(await page.locator("a.page-link").first().getAttribute("href")).toBe(SIGN_PAGE_URL);
      // A sub-image opens full size with its box on its parent.
      await page.click('.node[data-image="img_2"]');
      await page.waitForSelector("#viewer figure.parent [data-box=img_2]");

      // After a reload, the thread is in the list; opening it shows the same answer.
      await page.goto(`${server.url}/ui`);
      const threadButton = page.locator("#threads button.thread").first();
      await threadButton.waitFor({ timeout: 10_000 });
      expect(await threadButton.textContent()).toContain(QUESTION);
      await threadButton.click();
      await page.waitForSelector("#answer-text");
      expect(await page.textContent("#answer-text")).toBe("LOUPE-42");
      await page.waitForFunction(() => document.querySelectorAll("#images figure.input [data-box]").length === 3);
      // Replay from the history: the first checkpoint has no answer, the last has it.
      await page.click("#replay");
      await page.waitForSelector("#replay-bar:not([hidden])");
      await page.waitForFunction(() => !document.getElementById("answer-text"), null, { timeout: 5000 }).catch(async (err) => {
        throw new Error(`${err}: ${await page.evaluate(() => [document.getElementById("error")?.textContent, document.getElementById("replay-label")?.textContent].join(" | "))}`);
      });
      expect(await page.textContent("#replay-label")).toMatch(/^Checkpoint 1 of \d+/);
      await page.locator("#replay-range").fill(String(await page.locator("#replay-range").getAttribute("max")));
      await page.waitForSelector("#answer-text");

      // A narrow window: nothing wider than the viewport.
      await page.setViewportSize({ width: 400, height: 800 });
      await page.waitForTimeout(200);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(400);

      expect(errors).toEqual([]);
      expect(blocked).toEqual([]);
    } finally {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    }
  }, 90_000);
});
