// The code tool without a sandbox: paths in and out, the order of saved images, the observation text, and one call run against a recording sandbox.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { describe, expect, it, onTestFinished } from "vitest";
import { resolveConfig } from "../../src/core/config.js";
import { ImageStore } from "../../src/core/images.js";
import type { CodeSandbox, SandboxRequest, SandboxResult } from "../../src/core/sandbox.js";
import type { ImageRef } from "../../src/core/state.js";
import { clip, codeAvailability, codeObservation, CodeUnavailableError, imageAtPath, inputAlias, openedImage, orderOutputs, resultText, runCodeCall, sandboxImagePath } from "./tool.js";

const ref = (id: string, extra: Partial<ImageRef> = {}): ImageRef => ({ id, sha256: id, mime: "image/jpeg", width: 10, height: 10, parent: null, op: null, ...extra });
const IMAGES = [
  ref("img_0", { path: "hr_bench_4k/179.jpg" }),
  ref("img_1", { mime: "image/png", parent: "img_0", op: "crop [0,0,5,5]" }),
  ref("img_2", { parent: "img_0", op: "code", path: "/mnt/data/temp_processed_images/179_ab12.jpg" }),
  ref("img_3", { path: "/data/photos/x.jpg" }),
];

function ran(partial: Partial<SandboxResult> = {}): SandboxResult {
  return { exitCode: 0, signal: null, problem: null, stdout: "", stderr: "", stdoutCut: 0, stderrCut: 0, files: [], filesSkipped: 0, ms: 5, ...partial };
}

describe("sandbox paths", () => {
  it("names each image by id and extension, inputs also by their path", () => {
    expect(sandboxImagePath(IMAGES[1]!)).toBe("/mnt/data/images/img_1.png");
    expect(inputAlias("hr_bench_4k/179.jpg")).toBe("/mnt/data/work/hr_bench_4k/179.jpg");
    expect(inputAlias("./a/../b.jpg")).toBe("/mnt/data/work/b.jpg");
    expect(inputAlias("/data/photos/x.jpg")).toBe("/data/photos/x.jpg");
    for (const outside of ["../secret.jpg", "https://example.com/a.jpg", "/etc/passwd", "/mnt/data/images/img_0.jpg", "/usr/share/a.jpg", undefined]) {
      expect(inputAlias(outside)).toBeUndefined();
    }
  });

  it("finds the image a sandbox path names, for image_search", () => {
    expect(imageAtPath(IMAGES, "/mnt/data/images/img_1.png")?.id).toBe("img_1");
    expect(imageAtPath(IMAGES, "/mnt/data/images/img_1")?.id).toBe("img_1");
    expect(imageAtPath(IMAGES, "/mnt/data/temp_processed_images/179_ab12.jpg")?.id).toBe("img_2");
    expect(imageAtPath(IMAGES, "hr_bench_4k/179.jpg")?.id).toBe("img_0");
    expect(imageAtPath(IMAGES, "/mnt/data/work/hr_bench_4k/179.jpg")?.id).toBe("img_0");
    expect(imageAtPath(IMAGES, "/mnt/data/images/img_9.jpg")).toBeUndefined();
    expect(imageAtPath(IMAGES, "/tmp/other.jpg")).toBeUndefined();
  });

  it("takes as parent the image whose path the code names first", () => {
    expect(openedImage('from PIL import Image\nim = Image.open("hr_bench_4k/179.jpg")', IMAGES)?.id).toBe("img_0");
    expect(openedImage('a = cv2.imread("/mnt/data/temp_processed_images/179_ab12.jpg")\nb = "/mnt/data/images/img_1.png"', IMAGES)?.id).toBe("img_2");
    expect(openedImage("print(1 + 1)", IMAGES)).toBeUndefined();
  });
});

describe("the observation", () => {
  it("is R1V4's JSON with Python's separators", () => {
    expect(codeObservation('0.5\n"x"')).toBe('{"result": "0.5\\n\\"x\\"", "type": "code"}');
    expect(JSON.parse(codeObservation("é"))).toEqual({ result: "é", type: "code" });
  });

  it("orders saved files by where the code printed them, then by name", () => {
    const file = (name: string) => ({ name, path: `/mnt/data/temp_processed_images/${name}`, bytes: Buffer.alloc(0) });
    const stdout = "/mnt/data/temp_processed_images/z.jpg\n/mnt/data/temp_processed_images/b.jpg\n";
    expect(orderOutputs([file("a.jpg"), file("b.jpg"), file("c.jpg"), file("z.jpg")], stdout).map((f) => f.name)).toEqual(["z.jpg", "b.jpg", "a.jpg", "c.jpg"]);
  });

  it("is stdout when the code ran; stdout, the traceback and what stopped it when it failed", () => {
    expect(resultText(ran({ stdout: "42\n", stderr: "a warning" }), 6000)).toEqual({ ok: true, text: "42\n" });
    const failed = resultText(ran({ exitCode: 1, stdout: "start\n", stderr: "Traceback (most recent call last):\nNameError: name 'x' is not defined\n" }), 6000);
    expect(failed.ok).toBe(false);
    expect(failed.text).toBe("start\nTraceback (most recent call last):\nNameError: name 'x' is not defined\nError: the code exited with status 1.");
    const killed = resultText(ran({ exitCode: null, signal: "SIGKILL", problem: "the code ran for more than 2 s and was stopped" }), 6000);
    expect(killed).toEqual({ ok: false, text: "the code ran for more than 2 s and was stopped" });
    expect(resultText(ran({ stdout: "x".repeat(100), stdoutCut: 9_999_900 }), 6000).text).toContain("[output cut: 9,999,900 more bytes not shown]");
  });

  it("clips long text keeping its head and its tail", () => {
    const text = `${"a".repeat(5000)}${"b".repeat(5000)}Error at the end`;
    const clipped = clip(text, 1000);
    expect(clipped.length).toBeLessThan(1100);
    expect(clipped.startsWith("aaa")).toBe(true);
    expect(clipped.endsWith("Error at the end")).toBe(true);
    expect(clipped).toMatch(/\[… [\d,]+ characters cut …\]/);
  });
});

describe("whether the tool is offered", () => {
  const missing: CodeSandbox = { probe: async () => ({ ok: false, message: "bubblewrap is not installed: apt-get install bubblewrap" }), run: async () => ran() };
  const working: CodeSandbox = { probe: async () => ({ ok: true }), run: async () => ran() };

  it("auto offers it where the sandbox works and says why not elsewhere; on refuses; off never asks", async () => {
    expect(await codeAvailability(working, "auto")).toEqual({ offered: true });
    expect(await codeAvailability(missing, "auto")).toEqual({ offered: false, reason: "bubblewrap is not installed: apt-get install bubblewrap" });
    await expect(codeAvailability(missing, "on")).rejects.toThrow(CodeUnavailableError);
    await expect(codeAvailability(missing, "on")).rejects.toThrow(/LOUPE_CODE=on.*bubblewrap is not installed: apt-get install bubblewrap/);
    expect((await codeAvailability(missing, "off")).offered).toBe(false);
  });
});

describe("runCodeCall", () => {
  async function storeWith() {
    const dir = await mkdtemp(join(tmpdir(), "loupe-code-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    return new ImageStore(join(dir, "images"));
  }
  const jpeg = (width: number, height: number, shade = 0) =>
    sharp({ create: { width, height, channels: 3, background: { r: shade, g: 128, b: 255 - shade } } }).jpeg().toBuffer();

  it("gives the sandbox every image at its paths and earlier outputs, and stores what it saved, printed first", async () => {
    const store = await storeWith();
    const input = await store.put(await jpeg(40, 30));
    const earlier = await store.put(await jpeg(20, 10, 200));
    const images = [ref("img_0", { ...input, path: "hr_bench_4k/179.jpg" }), ref("img_1", { ...earlier, parent: "img_0", op: "code", path: "/mnt/data/temp_processed_images/old.jpg" })];
    const requests: SandboxRequest[] = [];
    const saved = [
      { name: "a.jpg", path: "/mnt/data/temp_processed_images/a.jpg", bytes: await jpeg(8, 8, 50) },
      { name: "b.png", path: "/mnt/data/temp_processed_images/b.png", bytes: await sharp(await jpeg(6, 4)).png().toBuffer() },
      { name: "notes.txt", path: "/mnt/data/temp_processed_images/notes.txt", bytes: Buffer.from("hello") },
    ];
    const sandbox: CodeSandbox = {
      probe: async () => ({ ok: true }),
      run: async (request) => (requests.push(request), ran({ stdout: "/mnt/data/temp_processed_images/b.png\n", files: saved })),
    };
    const settings = resolveConfig({ codeTimeoutMs: 5000, codeMemoryMb: 512 }, {});
    const code = 'from PIL import Image\nim = Image.open("hr_bench_4k/179.jpg")';
    const out = await runCodeCall(code, images, { sandbox, store, settings });

    expect(requests[0]!.inputs.map((i) => i.sandboxPath)).toEqual(["/mnt/data/images/img_0.jpg", "/mnt/data/work/hr_bench_4k/179.jpg", "/mnt/data/images/img_1.jpg"]);
    expect(requests[0]!.previousOutputs?.map((o) => o.name)).toEqual(["old.jpg"]);
    expect(requests[0]!.limits).toMatchObject({ timeoutMs: 5000, cpuSeconds: 5, memoryBytes: 512 * 1024 * 1024, maxOutputBytes: 32768 });
    expect(out.ok).toBe(true);
    expect(out.text).toBe('{"result": "/mnt/data/temp_processed_images/b.png\\n", "type": "code"}');
    expect(out.images.map((i) => [i.path, i.width, i.height, i.op, i.parent])).toEqual([
      ["/mnt/data/temp_processed_images/b.png", 6, 4, "code", "img_0"],
      ["/mnt/data/temp_processed_images/a.jpg", 8, 8, "code", "img_0"],
    ]);
    expect(out.images[0]!.stdev).toBeTypeOf("number");
    expect(out.notes).toEqual([expect.stringMatching(/^\/mnt\/data\/temp_processed_images\/notes\.txt is not used as an image: not a readable image/)]);
  });

  it("keeps at most 8 images and says how many more were saved", async () => {
    const store = await storeWith();
    const files = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => ({ name: `f${i}.jpg`, path: `/mnt/data/temp_processed_images/f${i}.jpg`, bytes: await jpeg(4 + i, 4, i * 20) })),
    );
    const sandbox: CodeSandbox = { probe: async () => ({ ok: true }), run: async () => ran({ files, filesSkipped: 990 }) };
    const out = await runCodeCall("save many", [], { sandbox, store, settings: resolveConfig({}, {}) });
    expect(out.images).toHaveLength(8);
    expect(out.notes).toEqual([
      expect.stringContaining("more than 8 files; only the first 8 images are kept (/mnt/data/temp_processed_images/f8.jpg and later ones are not)"),
      expect.stringContaining("990 more files saved under /mnt/data/temp_processed_images were not read"),
    ]);
  });
});
