// The code tool through the CLI: R1V4-style Python cells in both dialects, hostile code kept in its sandbox, and --code on/auto/off.
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import { existsSync, watch } from "node:fs";
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { describe, expect, it, type TestContext } from "vitest";
import type { RecordedRequest, ScriptEntry, ScriptedModelServer, ScriptedTurn } from "../src/cli/demo/scripted-model-server.js";
import { probeSandbox } from "../tools/code/sandbox.js";
import { baseEnv, fixtureServers, imagesInRequest, requestText, runCli, tempDir, type CliRun } from "./helpers.js";

const probe = await probeSandbox();
if (!probe.ok) console.warn(`code-tool.int.test.ts: skipping the sandbox tests, the code sandbox does not work here: ${probe.message}`);
const sandboxWorks = probe.ok;

const OUT = "/mnt/data/temp_processed_images";
const INPUT_REL = "hr_bench_4k/179.jpg";
/** The input image's size: under the default 1,048,576 max pixels, so the model sees every image at its own size. */
const [W, H] = [1000, 750];
/** Python's repr of math.log2(15/11), what print() writes. */
const LOG2 = "0.44745897697122117";

type Dialect = "tools" | "tags";
type Message = { role: string; content?: unknown; tool_calls?: unknown[] };

/** A test's own temp dir and fixture servers, removed when it ends (the tests of this file run concurrently). */
async function setup(ctx: TestContext): Promise<{ dir: string; servers: ReturnType<typeof fixtureServers> }> {
  const tmp = await tempDir("loupe-code-test-");
  const servers = fixtureServers();
  ctx.onTestFinished(async () => {
    await servers.closeAll();
    await tmp.cleanup();
  });
  return { dir: tmp.dir, servers };
}

/** A textured JPEG (gradients and a pattern), so that crops, enhancements and rotations are not blank. */
async function photo(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = (x * 255) / width;
      raw[i + 1] = (y * 255) / height;
      raw[i + 2] = ((x ^ y) & 0xff) / 2 + ((x * 7 + y * 13) % 64);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

/** One model turn calling `name`: a tool call in the tools dialect, R1V4's <tool_call> text in the tags dialect. */
function call(dialect: Dialect, think: string, name: string, args: Record<string, unknown>): ScriptedTurn {
  if (dialect === "tools") return { content: `<think>${think}</think>`, toolCalls: [{ name, arguments: args }] };
  return { content: `<think>${think}</think>\n<tool_call>${JSON.stringify({ name, arguments: args })}</tool_call>` };
}

function codeCall(dialect: Dialect, think: string, code: string): ScriptedTurn {
  return call(dialect, think, "code", { code });
}

function answer(text: string): ScriptedTurn {
  return { content: `<think>Done.</think>\n<answer>${text}</answer>` };
}

function messagesOf(req: RecordedRequest): Message[] {
  return (req.body?.messages ?? []) as Message[];
}

/** What request `i + 1` added after request `i`'s messages: the model's reply to request i, then what its call gave back. */
function after(model: ScriptedModelServer, i: number): Message[] {
  const reqs = model.chatRequests();
  return messagesOf(reqs[i + 1]!).slice(messagesOf(reqs[i]!).length);
}

function textOf(message: Message): string {
  if (typeof message.content === "string") return message.content;
  if (Array.isArray(message.content)) return (message.content as Array<{ text?: string }>).map((p) => p.text ?? "").join("");
  return "";
}

/** The code observation's JSON text as the model got it: the tool message (tools), or inside <observation> (tags). */
function observationJson(messages: Message[], dialect: Dialect): string {
  if (dialect === "tools") {
    const tool = messages.find((m) => m.role === "tool");
    if (!tool) throw new Error(`no tool message in ${JSON.stringify(messages).slice(0, 500)}`);
    // The result is the tool message's first part (the call's images and the notes follow it), or,
    // when only notes follow, its first line (the JSON has its newlines escaped).
    return Array.isArray(tool.content) ? ((tool.content as Array<{ text?: string }>)[0]?.text ?? "") : textOf(tool).split("\n")[0]!;
  }
  const user = messages.find((m) => m.role === "user");
  const m = /^<observation>(\{[\s\S]*?"type": "code"\})<\/observation>/.exec(user ? textOf(user) : "");
  if (!m) throw new Error(`no code observation in ${JSON.stringify(messages).slice(0, 500)}`);
  return m[1]!;
}

/** The "result" of the code observation the model got after call `i`. */
function resultAfter(model: ScriptedModelServer, i: number, dialect: Dialect): string {
  const json = JSON.parse(observationJson(after(model, i), dialect)) as { result: string; type: string };
  expect(json.type).toBe("code");
  return json.result;
}

/** [width, height] of each image the model got after call `i`. */
function imagesAfter(model: ScriptedModelServer, i: number): Promise<Array<[number, number]>> {
  return imagesInRequest({ messages: after(model, i) });
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The bytes of each image the model got after call `i`. */
function imageBytesAfter(model: ScriptedModelServer, i: number): Buffer[] {
  const out: Buffer[] = [];
  for (const m of after(model, i)) {
    if (!Array.isArray(m.content)) continue;
    for (const part of m.content as Array<{ type: string; image_url?: { url: string } }>) {
      if (part.type === "image_url" && part.image_url) out.push(Buffer.from(part.image_url.url.slice(part.image_url.url.indexOf(",") + 1), "base64"));
    }
  }
  return out;
}

function toolNames(req: RecordedRequest): string[] {
  return ((req.body?.tools ?? []) as Array<{ function: { name: string } }>).map((t) => t.function.name);
}

function parseJsonOut(run: CliRun): { answer: string; toolCalls: Array<{ name: string; ok: boolean; ms: number }>; images: Array<{ id: string; width: number; height: number; op?: string }>; notes?: string[] } {
  expect(run.stderr).not.toMatch(/^\s+at /m);
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout.trim());
}

/** A working directory holding the input at hr_bench_4k/179.jpg, as in R1V4's prompts. */
async function benchDir(dir: string): Promise<string> {
  const cwd = join(dir, "cwd");
  await mkdir(join(cwd, "hr_bench_4k"), { recursive: true });
  await writeFile(join(cwd, INPUT_REL), await photo(W, H));
  return cwd;
}

// ---------------------------------------------------------------------------------------------
// R1V4's cells in both dialects
// ---------------------------------------------------------------------------------------------

const PIL_ZOOM = `from PIL import Image
import random
image_path = "${INPUT_REL}"
img = Image.open(image_path)
box = (100, 200, 400, 350)
crop = img.crop(box)
zoom = crop.resize((crop.width * 2, crop.height * 2), Image.LANCZOS)
path = f"${OUT}/179_{random.randint(100000, 999999)}.jpg"
zoom.save(path)
print(path)`;

const CV_CROP = `import cv2
img = cv2.imread("/mnt/data/images/img_0.jpg")
part = img[120:440, 60:300]
cv2.imwrite("${OUT}/cv_crop.png", part)
print("${OUT}/cv_crop.png", part.shape)`;

const CONTRAST = `from PIL import Image, ImageEnhance
img = Image.open("${INPUT_REL}")
ImageEnhance.Contrast(img).enhance(1.8).save("${OUT}/contrast.jpg")
print("${OUT}/contrast.jpg")`;

const PIL_ROTATE = `from PIL import Image
img = Image.open("${INPUT_REL}").crop((0, 0, 400, 300))
img.rotate(90, expand=True).save("${OUT}/rotated.jpg")
print("${OUT}/rotated.jpg")`;

const CV_ROTATE = `import cv2
img = cv2.imread("${INPUT_REL}")[0:300, 0:400]
cv2.imwrite("${OUT}/rotated.png", cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE))
print("${OUT}/rotated.png")`;

const FROM_CROP = `import os
from PIL import Image
print(sorted(os.listdir("/mnt/data/images")))
sub = Image.open("/mnt/data/images/img_1.jpg")
print(sub.format, sub.size)
sub.resize((sub.width // 2, sub.height // 2)).save("${OUT}/half_of_crop.jpg")
print("${OUT}/half_of_crop.jpg")`;

const ARITHMETIC = "import math; print(math.log2(15/11))";

const TRACEBACK = `print("measuring")
width = undefined_width * 2`;

const FIXED = `width = 300 * 2
print("width", width)`;

/** The calls of one run, in order, then the answer. Call i is answered in chat request i + 1. */
function cellsScript(dialect: Dialect, searchPath: (req: RecordedRequest) => string): ScriptEntry[] {
  return [
    call(dialect, "Crop the upper left quarter first.", "crop", { image: "img_0", bbox: [0, 0, 500, 500] }),
    codeCall(dialect, "Zoom into the sign with PIL.", PIL_ZOOM),
    codeCall(dialect, "Crop with OpenCV.", CV_CROP),
    codeCall(dialect, "Raise the contrast.", CONTRAST),
    codeCall(dialect, "The text is sideways: rotate.", dialect === "tools" ? PIL_ROTATE : CV_ROTATE),
    codeCall(dialect, "Open the crop made earlier.", FROM_CROP),
    codeCall(dialect, "Compute the ratio.", ARITHMETIC),
    (req) => call(dialect, "Reverse-search it.", "image_search", { image_paths: [searchPath(req)] }),
    codeCall(dialect, "Measure.", TRACEBACK),
    codeCall(dialect, "Fix the name.", FIXED),
    answer("a kite"),
  ];
}

const CALL = { crop: 0, pilZoom: 1, cvCrop: 2, contrast: 3, rotate: 4, fromCrop: 5, arithmetic: 6, imageSearch: 7, traceback: 8, fixed: 9 } as const;

/** The path the PIL cell printed, as the model saw it. */
function zoomPathIn(req: RecordedRequest): string {
  const m = new RegExp(`${OUT}/179_\\d{6}\\.jpg`).exec(JSON.stringify(req.body?.messages ?? []));
  return m ? m[0] : "img_0";
}

/**
 * One run of the cells: the input given by its relative path from the CLI's working directory. The tools
 * dialect asks for the tool (--code on), the tags dialect gets it by default (auto). Replay mode offers
 * image_search from the search cache alone: its miss names the sha256 of the image searched.
 */
async function runCells(ctx: TestContext, dialect: Dialect) {
  const { dir, servers } = await setup(ctx);
  const cwd = await benchDir(dir);
  const model = await servers.model(cellsScript(dialect, dialect === "tools" ? zoomPathIn : () => "/mnt/data/images/img_0.jpg"));
  const mode = dialect === "tools" ? ["--code", "on"] : [];
  const args = ["ask", "--json", "--dialect", dialect, ...mode, "--model-url", model.url, "--image", INPUT_REL, "--data-dir", join(dir, "data"), "What does the sign say?"];
  const run = await runCli(args, baseEnv({ LOUPE_SEARCH_CACHE: "replay" }), undefined, { cwd });
  return { model, out: parseJsonOut(run), input: await readFile(join(cwd, INPUT_REL)) };
}

// ---------------------------------------------------------------------------------------------
// Hostile code
// ---------------------------------------------------------------------------------------------

interface HostileSetup {
  photo: string;
  hostDir: string;
  secret: string;
  dataDir: string;
  urls: string[];
  usrFile: string;
  marker: string;
}

function hostileCells(s: HostileSetup): Record<string, string> {
  return {
    network: `import urllib.request
for url in ${JSON.stringify(s.urls)}:
    try:
        print(url, "answered", urllib.request.urlopen(url, timeout=3).read())
    except Exception as e:
        print(url, "failed:", type(e).__name__, e)`,
    environment: `import glob, os
print("env:", sorted(os.environ))
print("keys:", os.environ.get("LOUPE_API_KEY"), os.environ.get("TAVILY_API_KEY"))
for p in sorted(glob.glob("/proc/[0-9]*/environ")):
    try:
        print(p, open(p, "rb").read())
    except Exception as e:
        print(p, type(e).__name__)`,
    sibling: `import os
print(os.path.isfile(${JSON.stringify(s.photo)}), sorted(os.listdir(${JSON.stringify(s.hostDir)})))
print(open(${JSON.stringify(s.secret)}).read())`,
    dataDir: `import os
print(sorted(os.listdir(${JSON.stringify(s.dataDir)})))`,
    shadow: `print(open("/etc/shadow").read())`,
    writeUsr: `try:
    open(${JSON.stringify(s.photo)}, "ab").write(b"x")
except OSError as e:
    print("input:", type(e).__name__, e)
open(${JSON.stringify(s.usrFile)}, "w").write("x")`,
    loop: `while True:
    pass`,
    memory: `block = bytearray(8 * 1024 ** 3)
print(len(block))`,
    // Every process of the bomb carries the marker as its name (/proc/PID/comm), for the check that none is left.
    forkBomb: `import os, time
with open("/proc/self/comm", "w") as f:
    f.write(${JSON.stringify(s.marker)})
root, told = os.getpid(), False
while True:
    try:
        os.fork()
    except OSError as e:
        if os.getpid() == root and not told:
            print("fork failed:", type(e).__name__, flush=True)
            told = True
        time.sleep(0.05)`,
    output: `import sys
sys.stdout.write("x" * 10_000_000)`,
    // 16 distinct PNGs (more than are read back), then copies: 1,000 files in all.
    files: `import io
from PIL import Image
base = Image.linear_gradient("L").resize((64, 48))
for i in range(1000):
    if i < 16:
        buf = io.BytesIO()
        base.point(lambda v: (v + 16 * i) % 256).save(buf, "PNG")
    with open(f"${OUT}/f_{i:04d}.png", "wb") as f:
        f.write(buf.getvalue())
print("saved 1000 files")`,
  };
}

/** Host processes whose name or command line holds `marker`. */
async function processesWith(marker: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir("/proc")).filter((p) => /^\d+$/.test(p))) {
    const names = await Promise.all(["comm", "cmdline"].map((f) => readFile(`/proc/${pid}/${f}`, "utf8").catch(() => "")));
    if (names.some((n) => n.includes(marker))) found.push(`${pid}: ${names.join(" ").replaceAll("\0", " ")}`);
  }
  return found;
}

/** Host processes still holding `marker` after up to 2 s. */
async function noProcessesWith(marker: string): Promise<string[]> {
  for (let i = 0; i < 20; i++) {
    const left = await processesWith(marker);
    if (left.length === 0) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
  return processesWith(marker);
}

/** A loopback HTTP server on every interface of the host, recording what reaches it. */
async function listener(servers: ReturnType<typeof fixtureServers>): Promise<{ port: number; hits: string[] }> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.end("hello from the host");
  });
  await new Promise<void>((r) => server.listen(0, "0.0.0.0", () => r()));
  servers.track({ close: () => new Promise<void>((r) => server.close(() => r())) });
  return { port: (server.address() as AddressInfo).port, hits };
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

const asRoot = process.getuid?.() === 0;
if (!asRoot) console.warn("code-tool.int.test.ts: skipping the tests of a sandbox that cannot run: they make it unusable with a TMPDIR that uid 65534 cannot reach, which needs root");

describe.concurrent("the code tool through the CLI", () => {
  describe.skipIf(!sandboxWorks)("R1V4's cells", () => {
    for (const dialect of ["tools", "tags"] as const) {
      it(`${dialect} dialect: PIL zoom of the input by its relative path, OpenCV crop, contrast, rotation, a crop's sub-image, arithmetic, image_search on a sandbox path, a traceback then its fix`, async (ctx) => {
        const { model, out, input } = await runCells(ctx, dialect);
        expect(out.answer).toBe("a kite");
        expect(out.toolCalls.map((c) => [c.name, c.ok])).toEqual([
          ["crop", true],
          ["code", true],
          ["code", true],
          ["code", true],
          ["code", true],
          ["code", true],
          ["code", true],
          ["image_search", false],
          ["code", false],
          ["code", true],
        ]);
        const first = model.chatRequests()[0]!;
        if (dialect === "tools") expect(toolNames(first)).toContain("code");
        else expect(requestText(first.body)).toContain('{"name":"code",');
        expect(requestText(first.body)).toContain("# The code tool");
        // The question names the input's path, as R1V4's prompts do.
        expect(requestText(first.body)).toContain(`img_0 (${W}×${H}; path: ${INPUT_REL}):`);

        // The crop tool's sub-image, img_1 (500×375).
        expect(await imagesAfter(model, CALL.crop)).toEqual([[500, 375]]);

        // a. PIL crop (300×150) zoomed ×2, saved under a random name and printed: the model sees exactly 600×300.
        const zoomed = resultAfter(model, CALL.pilZoom, dialect);
        expect(zoomed).toMatch(new RegExp(`^${OUT}/179_\\d{6}\\.jpg\\n$`));
        expect(await imagesAfter(model, CALL.pilZoom)).toEqual([[600, 300]]);
        expect(requestText({ messages: after(model, CALL.pilZoom) })).toContain(`img_2 at ${zoomed.trim()} (600×300; code):`);
        if (dialect === "tags") {
          // R1V4's exact form: the observation, then the image labelled with its id and path, in the same user turn.
          const parts = after(model, CALL.pilZoom).find((m) => m.role === "user")!.content as Array<{ type: string; text?: string }>;
          expect(parts.map((p) => p.type)).toEqual(["text", "image_url"]);
          expect(parts[0]!.text).toBe(`<observation>{"result": ${JSON.stringify(zoomed)}, "type": "code"}</observation>\nimg_2 at ${zoomed.trim()} (600×300; code):`);
        }

        // b. OpenCV crop: rows 120..440, columns 60..300.
        expect(resultAfter(model, CALL.cvCrop, dialect)).toBe(`${OUT}/cv_crop.png (320, 240, 3)\n`);
        expect(await imagesAfter(model, CALL.cvCrop)).toEqual([[240, 320]]);

        // c. Contrast enhancement keeps the input's size.
        expect(resultAfter(model, CALL.contrast, dialect)).toBe(`${OUT}/contrast.jpg\n`);
        expect(await imagesAfter(model, CALL.contrast)).toEqual([[W, H]]);

        // d. Rotation by 90°: 400×300 becomes 300×400.
        expect(await imagesAfter(model, CALL.rotate)).toEqual([[300, 400]]);

        // e. The crop tool's img_1 is a JPEG at /mnt/data/images/img_1.jpg, beside the other images of the run.
        const fromCrop = resultAfter(model, CALL.fromCrop, dialect);
        expect(fromCrop).toContain("['img_0.jpg', 'img_1.jpg', 'img_2.jpg', 'img_3.png', 'img_4.jpg', ");
        expect(fromCrop).toContain("\nJPEG (500, 375)\n");
        expect(await imagesAfter(model, CALL.fromCrop)).toEqual([[250, 187]]);

        // f. A computation's printed value reaches the model, exactly.
        expect(observationJson(after(model, CALL.arithmetic), dialect)).toBe(`{"result": "${LOG2}\\n", "type": "code"}`);
        const arithmetic = after(model, CALL.arithmetic);
        if (dialect === "tags") expect(textOf(arithmetic.find((m) => m.role === "user")!)).toBe(`<observation>{"result": "${LOG2}\\n", "type": "code"}</observation>`);
        else expect(arithmetic.map((m) => m.role)).toEqual(["assistant", "tool"]);

        // g. image_search on a sandbox path ran on that image: the replay cache's miss names its sha256.
        const searched = dialect === "tools" ? imageBytesAfter(model, CALL.pilZoom)[0]! : input;
        expect(requestText({ messages: after(model, CALL.imageSearch) })).toContain(`image_search of image sha256:${sha256(searched).slice(0, 12)}`);

        // h. The traceback reaches the model, and the next call's fix runs.
        const failed = resultAfter(model, CALL.traceback, dialect);
        expect(failed).toMatch(/^measuring\nTraceback \(most recent call last\):\n/);
        expect(failed).toContain("NameError: name 'undefined_width' is not defined");
        expect(resultAfter(model, CALL.fixed, dialect)).toBe("width 600\n");

        expect(out.images.map((i) => [i.id, i.width, i.height])).toEqual([
          ["img_0", W, H],
          ["img_1", 500, 375],
          ["img_2", 600, 300],
          ["img_3", 240, 320],
          ["img_4", W, H],
          ["img_5", 300, 400],
          ["img_6", 250, 187],
        ]);
        expect(out.images.slice(2).map((i) => i.op)).toEqual(Array(5).fill("code"));
      });
    }
  });

  describe.skipIf(!sandboxWorks)("hostile code", () => {
    it("network, environment, host files, /usr, an endless loop, 8 GiB, a fork bomb, 10 MB of output and 1,000 files each end in an observation; the run answers; the host is unchanged", async (ctx) => {
      const { dir, servers } = await setup(ctx);
      // The sandbox's temp dirs go to a dir of this test's own (reachable by the sandbox's uid when run as root).
      await chmod(dir, 0o711);
      const tmpDir = join(dir, "tmp");
      await mkdir(tmpDir, { mode: 0o711 });
      const made = new Set<string>();
      const watcher = watch(tmpDir, (_event, name) => void (name?.startsWith("loupe-sandbox-") && made.add(name)));
      ctx.onTestFinished(() => watcher.close());

      const hostDir = join(dir, "host");
      await mkdir(hostDir);
      const photoPath = join(hostDir, "photo.jpg");
      const photoBytes = await photo(320, 240);
      await writeFile(photoPath, photoBytes);
      await writeFile(join(hostDir, "secret.txt"), "host-secret-789");
      const { port, hits } = await listener(servers);
      const hostIp = Object.values(networkInterfaces()).flat().find((a) => a?.family === "IPv4" && !a.internal)?.address;
      const setupInfo: HostileSetup = {
        photo: photoPath,
        hostDir,
        secret: join(hostDir, "secret.txt"),
        dataDir: join(dir, "data"),
        urls: [`http://127.0.0.1:${port}/from-sandbox`, ...(hostIp ? [`http://${hostIp}:${port}/from-sandbox`] : [])],
        usrFile: `/usr/loupe-escape-${randomBytes(6).toString("hex")}.txt`,
        marker: `lb${randomBytes(6).toString("hex")}`,
      };
      const cells = hostileCells(setupInfo);
      const names = Object.keys(cells);
      const model = await servers.model([...names.map((name) => codeCall("tools", `Try: ${name}.`, cells[name]!)), answer("still here")]);

      const env = baseEnv({ TMPDIR: tmpDir, LOUPE_API_KEY: "sk-secret-123", TAVILY_API_KEY: "tvly-secret-456", LOUPE_CODE_TIMEOUT_MS: "2000" });
      const args = ["ask", "--json", "--code", "on", "--max-tool-calls", "20", "--model-url", model.url, "--image", photoPath, "--data-dir", setupInfo.dataDir, "Break out."];
      const run = await runCli(args, env);
      const out = parseJsonOut(run);
      expect(out.answer).toBe("still here");
      const at = (name: string) => names.indexOf(name);
      const result = (name: string) => resultAfter(model, at(name), "tools");
      const okOf = (name: string) => out.toolCalls[at(name)]!.ok;

      // Network: neither the host's loopback nor its address is reachable; the server saw nothing.
      for (const url of setupInfo.urls) expect(result("network")).toMatch(new RegExp(`^${url} failed: URLError`, "m"));
      expect(hits).toEqual([]);

      // Environment: only what Python needs; no key, no LOUPE_* variable, not even through /proc.
      const environment = result("environment");
      expect(environment).toContain("keys: None None");
      const envNames = JSON.parse(/^env: (\[.*\])$/m.exec(environment)![1]!.replaceAll("'", '"')) as string[];
      expect(envNames).toContain("PATH");
      expect(envNames.filter((n) => !/^(HOME|LANG|LC_\w+|PATH|PWD|TMPDIR|MPLCONFIGDIR|\w+_THREADS(_NUM)?)$/.test(n))).toEqual([]);
      for (const leak of ["sk-secret-123", "tvly-secret-456", "LOUPE_", "TAVILY"]) expect(environment).not.toContain(leak);

      // Host files: the input alone of its folder is visible; the secret beside it, the data dir and /etc/shadow are not.
      expect(result("sibling")).toMatch(/^True \['photo\.jpg'\]\nTraceback[\s\S]*FileNotFoundError: .*secret\.txt/);
      expect(result("dataDir")).toContain(`FileNotFoundError: [Errno 2] No such file or directory: '${setupInfo.dataDir}'`);
      expect(result("shadow")).toContain("FileNotFoundError: [Errno 2] No such file or directory: '/etc/shadow'");
      expect(result("writeUsr")).toMatch(/^input: (PermissionError \[Errno 13\] Permission denied|OSError \[Errno 30\] Read-only file system)/);
      expect(result("writeUsr")).toMatch(/OSError: \[Errno 30\] Read-only file system: '\/usr\/loupe-escape-/);

      // Limits: the endless loop is stopped at the 2 s limit, 8 GiB is refused, the fork bomb hits the process limit and is stopped.
      expect(result("loop")).toContain("more than 2 s");
      expect(out.toolCalls[at("loop")]!.ms).toBeLessThan(10_000);
      expect(result("memory")).toContain("MemoryError");
      expect(result("forkBomb")).toMatch(/^fork failed: BlockingIOError\n/);
      expect(result("forkBomb")).toContain("more than 2 s");
      expect(await noProcessesWith(setupInfo.marker)).toEqual([]);

      // 10 MB of output: cut, with how much.
      const output = result("output");
      expect(output.length).toBeLessThan(8_000);
      expect(output).toContain(`[output cut: ${(10_000_000 - 32_768).toLocaleString("en-US")} more bytes not shown]`);

      // 1,000 files: 8 images come back, and a note says the rest were not.
      expect(result("files")).toBe("saved 1000 files\n");
      expect(await imagesAfter(model, at("files"))).toEqual(Array(8).fill([64, 48]));
      const filesNote = requestText({ messages: after(model, at("files")) });
      expect(filesNote).toContain("more than 8 files");
      expect(filesNote).toMatch(/\b\d+ more files saved under \/mnt\/data\/temp_processed_images were not read/);

      expect(names.map((n) => [n, okOf(n)])).toEqual([
        ["network", true],
        ["environment", true],
        ["sibling", false],
        ["dataDir", false],
        ["shadow", false],
        ["writeUsr", false],
        ["loop", false],
        ["memory", false],
        ["forkBomb", false],
        ["output", true],
        ["files", true],
      ]);

      // The host is unchanged: the input, the file beside it, /usr; every sandbox dir was removed.
      expect(await readFile(photoPath)).toEqual(photoBytes);
      expect(await readFile(join(hostDir, "secret.txt"), "utf8")).toBe("host-secret-789");
      expect((await readdir(hostDir)).sort()).toEqual(["photo.jpg", "secret.txt"]);
      expect(existsSync(setupInfo.usrFile)).toBe(false);
      expect(made.size).toBeGreaterThanOrEqual(names.length);
      expect((await readdir(tmpDir)).filter((n) => n.startsWith("loupe-sandbox-"))).toEqual([]);
    });
  });

  // The sandbox is made unusable for the child alone: as root, bubblewrap runs as uid 65534, which cannot
  // reach a TMPDIR inside a 0700 folder. (bwrap cannot be hidden through PATH: the sandbox also looks in /usr/bin.)
  describe.skipIf(!asRoot)("a sandbox that cannot run", () => {
    async function unusable(ctx: TestContext) {
      const { dir, servers } = await setup(ctx);
      const locked = join(dir, "locked");
      await mkdir(locked, { mode: 0o700 });
      const tmpDir = join(locked, "tmp");
      await mkdir(tmpDir);
      const image = join(dir, "photo.jpg");
      await writeFile(image, await photo(320, 240));
      return { dir, servers, tmpDir, image };
    }

    it("--code on: exit 2 with one line naming what is wrong, before any model call", async (ctx) => {
      const { dir, servers, tmpDir, image } = await unusable(ctx);
      const model = await servers.model([answer("should not be asked")]);
      const run = await runCli(["ask", "--code", "on", "--model-url", model.url, "--image", image, "--data-dir", join(dir, "data"), "What is it?"], baseEnv({ TMPDIR: tmpDir }));
      expect(run.code).toBe(2);
      expect(run.stdout).toBe("");
      const lines = run.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^loupe: the code tool is on \(LOUPE_CODE=on or --code on\) but cannot run here: /);
      expect(lines[0]).toContain(tmpDir);
      expect(lines[0]).toContain("Permission denied");
      expect(model.requests).toEqual([]);
    });

    it("--code auto: a note on stderr and in --json, and the tool is not offered", async (ctx) => {
      const { dir, servers, tmpDir, image } = await unusable(ctx);
      const model = await servers.model([answer("a photo")]);
      const run = await runCli(["ask", "--json", "--code", "auto", "--model-url", model.url, "--image", image, "--data-dir", join(dir, "data"), "What is it?"], baseEnv({ TMPDIR: tmpDir }));
      const out = parseJsonOut(run);
      expect(out.answer).toBe("a photo");
      const notes = run.stderr.split("\n").filter((l) => l.startsWith("loupe: note: the code tool is not offered: "));
      expect(notes).toHaveLength(1);
      expect(notes[0]).toContain(tmpDir);
      expect(out.notes).toEqual([notes[0]!.slice("loupe: note: ".length)]);
      const first = model.chatRequests()[0]!;
      expect(toolNames(first)).toContain("crop");
      expect(toolNames(first)).not.toContain("code");
      expect(requestText(first.body)).not.toContain("# The code tool");
      expect(requestText(first.body)).toContain("img_0 (320×240):");
    });
  });

  it("--code off: the tool is not offered, and nothing is said about it", async (ctx) => {
    const { dir, servers } = await setup(ctx);
    const image = join(dir, "photo.jpg");
    await writeFile(image, await photo(320, 240));
    const model = await servers.model([answer("a photo")]);
    const run = await runCli(["ask", "--json", "--code", "off", "--model-url", model.url, "--image", image, "--data-dir", join(dir, "data"), "What is it?"], baseEnv());
    const out = parseJsonOut(run);
    expect(out.answer).toBe("a photo");
    expect(out.notes).toBeUndefined();
    expect(run.stderr).not.toContain("code tool");
    const first = model.chatRequests()[0]!;
    expect(toolNames(first)).toContain("crop");
    expect(toolNames(first)).not.toContain("code");
    expect(requestText(first.body)).not.toContain("# The code tool");
  });
});
