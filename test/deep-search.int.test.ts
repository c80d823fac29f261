// Deep search end to end through the CLI: crop a region, reverse-search the crop (Serper Lens, which
// downloads it from the public image route), text-search the entity found (Tavily), read a page toward
// a goal (Loupe's guarded reader), answer with citations. Then replay it from the cache with no network,
// and check that no API key reached the databases, the --json output or the logs.
import { createServer, type Server } from "node:http";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { imageRouteSecret } from "../src/core/image-urls.js";
import { createImageRoute, serveImageRoute } from "../src/server/image-route.js";
import { ImageStore } from "../src/core/images.js";
import { FAKE_SERPER_API_KEY, startFakeSerper, type FakeSearchServer } from "./fixtures/fake-search-servers.js";
import { FAKE_TAVILY_API_KEY, startFakeTavilyServer, type FakeTavilyServer } from "../src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer, type RecordedRequest, type ScriptEntry } from "../src/cli/demo/scripted-model-server.js";
import sharp from "sharp";
import { ask } from "../src/run/ask.js";
import { runEval } from "../src/eval/run.js";
import { SearchCache, searchCachePath } from "../tools/search/cache.js";
import { importMmsearchResults } from "../tools/search/mmsearch-import.js";
import { baseEnv, imagesInRequest, NETWORK_GUARD, runCli, tempDir, testAgent, testSettings, writeImage } from "./helpers.js";
import { harbourImage } from "../src/cli/demo/trajectory.js";

const LENS_TITLE = "North Pier Lighthouse - Port Loupe harbour guide";
const LENS_LINK = "https://en.wikipedia.org/wiki/North_Pier_Lighthouse";
const QUERY = "North Pier Lighthouse Port Loupe history";
const GOAL = "the year the North Pier Lighthouse was built";
const MODEL_KEY = "sk-model-key-0123456789abcdef";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let pages: Server;
let pageUrl: string;
let pageHits = 0;
let tavily: FakeTavilyServer;
let serper: FakeSearchServer;
let route: Awaited<ReturnType<typeof serveImageRoute>>;

beforeEach(async () => {
  tmp = await tempDir();
  pageHits = 0;
  const photo = await harbourImage(640, 480);
  pages = createServer((req, res) => {
    pageHits++;
    if (req.url === "/photo.jpg") {
      res.writeHead(200, { "content-type": "image/jpeg", "content-length": photo.length });
      res.end(photo);
      return;
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><html><head><title>North Pier Lighthouse</title></head><body><nav>Home | Harbour</nav>
      <article><h1>North Pier Lighthouse</h1><p>The North Pier Lighthouse stands at the end of the north pier of Port Loupe.</p>
      <p>The lighthouse was built in 1887 by the harbour board, after two ships were lost on the pier in the storm of 1884.</p>
      <p>Its blue sign carries the inspection code LOUPE-42.</p></article></body></html>`);
  });
  await new Promise<void>((r) => pages.listen(0, "127.0.0.1", () => r()));
  pageUrl = `http://127.0.0.1:${(pages.address() as { port: number }).port}/north-pier-lighthouse`;
  tavily = await startFakeTavilyServer({
    search: { [QUERY]: [{ title: "North Pier Lighthouse history", url: pageUrl, content: "History of the lighthouse on the north pier of Port Loupe." }] },
  });
  // Lens answers any image it can download; the test checks which image that was.
  serper = await startFakeSerper({ lens: { "*": [{ title: LENS_TITLE, link: LENS_LINK, imageUrl: "https://upload.example.org/north-pier.jpg" }] } });
  const data = join(tmp.dir, "data");
  // The image route, as `loupe serve-images` runs it, on the same data directory (and so the same secret).
  route = await serveImageRoute(createImageRoute({ store: new ImageStore(join(data, "images")), secret: imageRouteSecret(data) }), { port: 0 });
});

afterEach(async () => {
  await new Promise<void>((r) => pages.close(() => r()));
  await tavily.close();
  await serper.close();
  await route.close();
  await tmp.cleanup();
});

function script(): ScriptEntry[] {
  const call = (think: string, name: string, args: Record<string, unknown>): ScriptEntry => ({ content: `<think>${think}</think>`, toolCalls: [{ name, arguments: args }] });
  return [
    call("The sign is in the upper left. Crop it.", "crop", { image: "img_0", bbox: [250, 250, 500, 500] }),
    call("What is this structure? Reverse-search the crop.", "image_search", { image_paths: ["img_1"] }),
    call("Lens says it is the North Pier Lighthouse. Search for its history.", "text_search", { queries: [QUERY] }),
    call("Read the history page.", "web_visit", { urls: [pageUrl], goal: GOAL }),
    (req: RecordedRequest) => {
      // Answer from what the observations said, so a lost observation shows up as a wrong answer.
      const seen = JSON.stringify(req.body?.messages ?? []);
      const year = /built in (\d{4})/.exec(seen)?.[1] ?? "unknown";
      const identified = seen.includes(LENS_TITLE);
      return { content: `<think>${identified ? "Lens identified the North Pier Lighthouse; " : ""}${pageUrl} says it was built in ${year}.</think>\n<answer>${year}</answer>` };
    },
  ];
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

it("crop → reverse image search → text search → goal-directed visit → answer with citations; replay needs no network; keys appear nowhere", async () => {
  const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(1600, 1200));
  const data = join(tmp.dir, "data");
  const netLog = join(tmp.dir, "net.log");
  const pagePort = new URL(pageUrl).port;
  const env = baseEnv({
    LOUPE_API_KEY: MODEL_KEY,
    TAVILY_API_KEY: FAKE_TAVILY_API_KEY,
    LOUPE_TAVILY_URL: tavily.url,
    SERPER_API_KEY: FAKE_SERPER_API_KEY,
    LOUPE_SERPER_URL: serper.url,
    LOUPE_PUBLIC_IMAGE_BASE_URL: route.url,
    // Tavily for text, Serper for images, Loupe's own reader for pages.
    LOUPE_SEARCH_PROVIDERS: "tavily,serper-lens,web",
    LOUPE_WEB_VISIT: "direct",
    LOUPE_WEB_ALLOW_HOSTS: `127.0.0.1:${pagePort}`,
    LOUPE_RETRY_BASE_MS: "10",
    NODE_OPTIONS: `--require ${NETWORK_GUARD}`,
    LOUPE_NETWORK_LOG: netLog,
  });

  const model = await startScriptedModelServer({ script: script() });
  const run = await runCli(["ask", "--json", "--model-url", model.url, "--image", image, "--data-dir", data, "When was the structure with this sign built?"], env);
  expect(run.stderr).not.toMatch(/^\s+at /m);
  expect(run.code).toBe(0);
  const out = JSON.parse(run.stdout.trim());
  expect(out.answer).toBe("1887");
  expect(out.toolCalls.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
    ["crop", true],
    ["image_search", true],
    ["text_search", true],
    ["web_visit", true],
  ]);
  expect(out.citations).toContainEqual(expect.objectContaining({ type: "url", url: pageUrl }));

  // Lens got a signed public URL of the crop (img_1), and downloaded exactly that image from the route.
  const lensRequest = serper.requests.find((r) => r.path === "/lens")!;
  expect(lensRequest.headers["x-api-key"]).toBe(FAKE_SERPER_API_KEY);
  expect(lensRequest.body.url).toMatch(new RegExp(`^${route.url}/images/[0-9a-f]{64}-[0-9a-f]{32}\\.(jpg|png)$`));
  expect(serper.imageFetches).toHaveLength(1);
  expect(serper.imageFetches[0]!.ok).toBe(true);
  const crop = await new ImageStore(join(data, "images")).read({ sha256: serper.imageFetches[0]!.sha256!, mime: "image/jpeg" }).catch(() =>
    new ImageStore(join(data, "images")).read({ sha256: serper.imageFetches[0]!.sha256!, mime: "image/png" }),
  );
  // The image Lens downloaded is the crop (img_1: 400×300 of the 1600×1200 photo), not the whole photo.
  expect(out.images[1]).toEqual(expect.objectContaining({ id: "img_1", width: 400, height: 300 }));
  const fetched = await sharp(crop).metadata();
  expect([fetched.width, fetched.height]).toEqual([400, 300]);
  // The model saw the Lens match, the search hit and the page's evidence, with their URLs.
  const last = JSON.stringify(model.chatRequests().at(-1)!.body.messages);
  expect(last).toContain(LENS_TITLE);
  expect(last).toContain(LENS_LINK);
  expect(last).toContain(`Goal: ${GOAL}`);
  expect(last).toContain("built in 1887");
  expect(tavily.requests.filter((r) => r.path === "/search")).toHaveLength(1);
  expect(pageHits).toBe(1);

  // The run contacted only the model, the search services and the page server (and the route, via Lens).
  const contacts = (await readFile(netLog, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
  const allowed = new Set([model.port, new URL(tavily.url).port, new URL(serper.url).port, pagePort].map(String));
  const network = contacts.filter((c) => c.kind === "connect" && !String(c.host ?? "").startsWith("unix:"));
  expect(network.filter((c) => !(c.host === "127.0.0.1" && allowed.has(String(c.port))))).toEqual([]);
  await model.close();

  // Replay: the same trajectory from the cache, no search or page request at all.
  const searchesBefore = [tavily.requests.length, serper.requests.length, pageHits];
  const replayModel = await startScriptedModelServer({ script: script() });
  const replay = await runCli(
    ["ask", "--json", "--model-url", replayModel.url, "--image", image, "--data-dir", data, "When was the structure with this sign built?"],
    { ...env, LOUPE_SEARCH_CACHE: "replay" },
  );
  await replayModel.close();
  expect(replay.code).toBe(0);
  const again = JSON.parse(replay.stdout.trim());
  expect(again.answer).toBe("1887");
  expect(again.toolCalls.every((c: { ok: boolean }) => c.ok)).toBe(true);
  expect([tavily.requests.length, serper.requests.length, pageHits]).toEqual(searchesBefore);

  // No key in any file of the data directory (checkpoints, search cache, images), in stdout or in stderr.
  const keys = [MODEL_KEY, FAKE_TAVILY_API_KEY, FAKE_SERPER_API_KEY];
  const files = await filesUnder(data);
  expect(files.some((f) => f.endsWith("checkpoints.sqlite"))).toBe(true);
  expect(files.some((f) => f.endsWith("search-cache.sqlite"))).toBe(true);
  for (const file of files) {
    const bytes = await readFile(file);
    for (const key of keys) expect(bytes.includes(Buffer.from(key)), `${key} in ${file}`).toBe(false);
  }
  for (const text of [run.stdout, run.stderr, replay.stdout, replay.stderr]) {
    for (const key of keys) expect(text).not.toContain(key);
  }
});

it("a refused Serper key becomes an observation naming SERPER_API_KEY, and the key stays out of output and files", async () => {
  const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(800, 600));
  const data = join(tmp.dir, "data");
  const badKey = "serper-revoked-key-987654321";
  const model = await startScriptedModelServer({
    script: [
      { content: "<think>Reverse-search the photo.</think>", toolCalls: [{ name: "image_search", arguments: { image_paths: ["img_0"] } }] },
      (req: RecordedRequest) => {
        const seen = JSON.stringify(req.body?.messages ?? []);
        return { content: `<answer>${seen.includes("set a valid SERPER_API_KEY") ? "told to fix the key" : "no error seen"}</answer>` };
      },
    ],
  });
  const run = await runCli(
    ["ask", "--json", "--model-url", model.url, "--image", image, "--data-dir", data, "What is this?"],
    baseEnv({ SERPER_API_KEY: badKey, LOUPE_SERPER_URL: serper.url, LOUPE_PUBLIC_IMAGE_BASE_URL: route.url, LOUPE_SEARCH_PROVIDERS: "serper-lens" }),
  );
  await model.close();
  expect(run.code).toBe(0);
  const out = JSON.parse(run.stdout.trim());
  expect(out.answer).toBe("told to fix the key");
  expect(out.toolCalls[0]).toEqual(expect.objectContaining({ name: "image_search", ok: false }));
  // Refused at once: no retries of a 403.
  expect(serper.requests.filter((r) => r.path === "/lens")).toHaveLength(1);
  for (const file of await filesUnder(data)) expect((await readFile(file)).includes(Buffer.from(badKey)), file).toBe(false);
  expect(run.stdout + run.stderr).not.toContain(badKey);
  expect(run.stderr).not.toContain("needs LOUPE_PUBLIC_IMAGE_BASE_URL");
});

it("an image URL from the results, visited, becomes a new image the model can look at and crop", async () => {
  const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage(800, 600));
  const data = join(tmp.dir, "data");
  const photoUrl = new URL("/photo.jpg", pageUrl).href;
  const model = await startScriptedModelServer({
    script: [
      { content: "<think>Look at the matching photo.</think>", toolCalls: [{ name: "web_visit", arguments: { urls: [photoUrl] } }] },
      { content: "<think>Crop its sign.</think>", toolCalls: [{ name: "crop", arguments: { image: "img_1", bbox: [250, 250, 500, 500] } }] },
      { content: "<answer>LOUPE-42</answer>" },
    ],
  });
  const run = await runCli(
    ["ask", "--json", "--model-url", model.url, "--image", image, "--data-dir", data, "What does the sign say?"],
    baseEnv({
      TAVILY_API_KEY: FAKE_TAVILY_API_KEY,
      LOUPE_TAVILY_URL: tavily.url,
      LOUPE_WEB_VISIT: "direct",
      LOUPE_WEB_ALLOW_HOSTS: new URL(pageUrl).host,
      // A Lens key with no public image URL: the run says what is missing up front.
      SERPER_API_KEY: FAKE_SERPER_API_KEY,
      LOUPE_SERPER_URL: serper.url,
    }),
  );
  expect(run.stderr).toContain("reverse image search (Lens) needs LOUPE_PUBLIC_IMAGE_BASE_URL");
  const requests = model.chatRequests();
  await model.close();
  expect(run.code).toBe(0);
  const out = JSON.parse(run.stdout.trim());
  expect(out.images[1]).toEqual({ id: "img_1", width: 640, height: 480, op: `fetched from ${photoUrl}` });
  expect(out.images[2]).toEqual(expect.objectContaining({ id: "img_2", width: 160, height: 120 }));
  expect(out.toolCalls.map((c: { ok: boolean }) => c.ok)).toEqual([true, true]);
  // The fetched photo was shown to the model as an image part after the visit.
  const afterVisit = JSON.stringify(requests[1]!.body.messages);
  expect(afterVisit).toContain(`Image: ${photoUrl} (640×480, shown below as a new image)`);
  expect((afterVisit.match(/data:image\//g) ?? []).length).toBe(2);
});

it("MMSearch offline: an imported Lens screenshot is replayed with no key and shown to the model as an image", async () => {
  const photo = await harbourImage(800, 600);
  const imagePath = await writeImage(tmp.dir, "q.jpg", photo);
  const data = join(tmp.dir, "data");
  // What `loupe eval` does for MMSearch rows: the question image's store sha → the benchmark's result screenshot.
  const store = new ImageStore(join(data, "images"));
  const question = await store.ingest(photo);
  const screenshot = await sharp({ create: { width: 320, height: 200, channels: 3, background: "#eeeeee" } }).png().toBuffer();
  const cache = new SearchCache(searchCachePath(data));
  const summary = await importMmsearchResults(cache, [{ imageSha256: question.sha256, results: { bytes: screenshot, path: "lens.png" } }], "serper-lens", { images: store });
  cache.close();
  expect(summary.screenshots).toBe(1);

  const model = await startScriptedModelServer({
    script: [
      { content: "<think>Reverse-search the photo.</think>", toolCalls: [{ name: "image_search", arguments: { image_paths: ["img_0"] } }] },
      { content: "<answer>Port Loupe</answer>" },
    ],
  });
  const settings = testSettings({ modelUrl: model.url, dataDir: data, searchCache: "replay" });
  const { agent, close } = testAgent(settings, {});
  const result = await ask(agent, { settings, question: "Where is this?", images: [imagePath] });
  await close();
  const requests = model.chatRequests();
  await model.close();
  expect(result.toolCalls[0]).toEqual(expect.objectContaining({ name: "image_search", ok: true }));
  expect(result.images[1]).toEqual(expect.objectContaining({ id: "img_1", width: 320, height: 200, op: "reverse image search results for img_0" }));
  const after = JSON.stringify(requests[1]!.body.messages);
  expect(after).toContain("The results page for img_0 is shown below as an image.");
  expect(await imagesInRequest(requests[1]!.body)).toEqual([
    [800, 600],
    [320, 200],
  ]);
});

it("loupe eval on MMSearch rows answers image_search on the question image from the recorded results, with no Lens key", async () => {
  await writeImage(tmp.dir, "q.jpg", await harbourImage(640, 480));
  const dataset = join(tmp.dir, "mmsearch.jsonl");
  const recorded = JSON.stringify([{ title: "North Pier Lighthouse, Port Loupe", link: "https://example.org/north-pier", snippet: "A lighthouse in Port Loupe" }]);
  await writeFile(dataset, `${JSON.stringify({ sample_id: "m1", query: "In which town is this lighthouse?", query_image: "q.jpg", gt_answer: "Port Loupe", area: "travel", image_search_result: recorded })}\n`);
  const model = await startScriptedModelServer({
    script: [
      { content: "<think>Reverse-search the photo.</think>", toolCalls: [{ name: "image_search", arguments: { image_paths: ["img_0"] } }] },
      (req: RecordedRequest) => ({ content: `<answer>${JSON.stringify(req.body?.messages ?? []).includes("North Pier Lighthouse, Port Loupe") ? "Port Loupe" : "unknown"}</answer>` }),
    ],
  });
  const settings = testSettings({ modelUrl: model.url, dataDir: join(tmp.dir, "data") });
  const logs: string[] = [];
  const outcome = await runEval({ dataset, concurrency: 1, out: join(tmp.dir, "run"), resume: false, settings, secrets: {}, progress: false, report: false, log: (l) => logs.push(l) });
  await model.close();
  expect(logs.join("\n")).toContain("1 recorded reverse image searches");
  expect(outcome.summary.accuracy.accuracy).toBe(1);
  const row = JSON.parse((await readFile(join(tmp.dir, "run", "results.jsonl"), "utf8")).trim());
  expect(row.prediction).toBe("Port Loupe");
  expect(serper.requests).toHaveLength(0);
});
