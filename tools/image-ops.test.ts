// Tests for the image tools: coordinate conventions, each operation, determinism, argument errors, decode-once.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ImageInputError, ImageStore, type StoredImage } from "../src/core/images.ts";
import {
  IMAGE_TOOL_NAMES,
  ToolArgumentError,
  imageStats,
  regionStats,
  imageToolSchemas,
  imageToolSpecs,
  runImageOp,
  toPixelBox,
} from "./image-ops.ts";

const BIG_W = 4000;
const BIG_H = 3000;
// Regions of the big test image, in pixels.
const UNIFORM = { x1: 200, y1: 200, x2: 1800, y2: 1300 };
const NOISE = { x1: 2500, y1: 1800, x2: 3500, y2: 2800 };

/** Smooth gradient with a flat grey block and a block of deterministic noise. */
function bigRaw(): Buffer {
  const buf = Buffer.alloc(BIG_W * BIG_H * 3);
  let seed = 12345;
  for (let y = 0; y < BIG_H; y++) {
    for (let x = 0; x < BIG_W; x++) {
      const i = (y * BIG_W + x) * 3;
      if (x >= UNIFORM.x1 && x < UNIFORM.x2 && y >= UNIFORM.y1 && y < UNIFORM.y2) {
        buf[i] = buf[i + 1] = buf[i + 2] = 128;
      } else if (x >= NOISE.x1 && x < NOISE.x2 && y >= NOISE.y1 && y < NOISE.y2) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        buf[i] = seed >>> 24;
        buf[i + 1] = (seed >>> 16) & 0xff;
        buf[i + 2] = (seed >>> 8) & 0xff;
      } else {
        buf[i] = Math.floor((x / BIG_W) * 255);
        buf[i + 1] = Math.floor((y / BIG_H) * 255);
        buf[i + 2] = 64;
      }
    }
  }
  return buf;
}

/** 400×300 white PNG with a red rectangle at x 20–120, y 40–140. */
async function rectPng(): Promise<Buffer> {
  const w = 400;
  const h = 300;
  const buf = Buffer.alloc(w * h * 3, 255);
  for (let y = 40; y < 140; y++) {
    for (let x = 20; x < 120; x++) {
      const i = (y * w + x) * 3;
      buf[i] = 255;
      buf[i + 1] = 0;
      buf[i + 2] = 0;
    }
  }
  return sharp(buf, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

async function pixel(store: ImageStore, image: StoredImage, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(await store.read(image)).raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return Array.from(data.subarray(i, i + info.channels));
}

async function expectArgError(p: Promise<unknown>, ...fragments: string[]): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ToolArgumentError);
  const message = (err as Error).message;
  for (const f of fragments) expect(message).toContain(f);
  return message;
}

let dir: string;
let bigJpeg: Buffer;
let store: ImageStore;
let big: StoredImage;
let rect: StoredImage;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "loupe-image-ops-"));
  bigJpeg = await sharp(bigRaw(), { raw: { width: BIG_W, height: BIG_H, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
  store = new ImageStore(join(dir, "store"));
  big = await store.ingest(bigJpeg);
  rect = await store.ingest(await rectPng());
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("toPixelBox", () => {
  it("converts the three coordinate conventions exactly", () => {
    expect(toPixelBox([250, 250, 750, 750], "rel1000", 4000, 3000, "img_0")).toEqual({
      left: 1000,
      top: 750,
      width: 2000,
      height: 1500,
    });
    expect(toPixelBox([0.1, 0.2, 0.3, 0.4], "norm1", 4000, 3000, "img_0")).toEqual({
      left: 400,
      top: 600,
      width: 800,
      height: 600,
    });
    expect(toPixelBox([100, 200, 500, 600], "pixel", 4000, 3000, "img_0")).toEqual({
      left: 100,
      top: 200,
      width: 400,
      height: 400,
    });
  });

  it("floors starts, ceils ends and clamps a slight overshoot", () => {
    expect(toPixelBox([10.4, 20.6, 30.2, 40.9], "pixel", 100, 100, "img_0")).toEqual({
      left: 10,
      top: 20,
      width: 21,
      height: 21,
    });
    expect(toPixelBox([-2, 0, 1003, 1000], "rel1000", 1000, 1000, "img_0")).toEqual({
      left: 0,
      top: 0,
      width: 1000,
      height: 1000,
    });
  });

  it("rejects reversed, outside, non-finite and sub-pixel boxes with a helpful message", () => {
    expect(() => toPixelBox([10, 20, 1200, 300], "rel1000", 640, 480, "img_2")).toThrow(
      "bbox [10, 20, 1200, 300] goes outside img_2 (rel1000 coordinates must be within 0–1000; img_2 is 640×480 pixels). Give [x1, y1, x2, y2] with x1 < x2 and y1 < y2.",
    );
    expect(() => toPixelBox([500, 100, 400, 200], "rel1000", 640, 480, "img_2")).toThrow(/x2 \(400\) must be greater than x1 \(500\)/);
    expect(() => toPixelBox([0, 0, Number.NaN, 10], "pixel", 640, 480, "img_2")).toThrow(ToolArgumentError);
    expect(() => toPixelBox([0.1, 0.1, 0.5, 0.5], "rel1000", 640, 480, "img_2")).toThrow(/norm1/);
  });
});

describe("runImageOp", () => {
  it("crops with each coordinate convention", async () => {
    const rel = await runImageOp(store, "crop", { image: "img_0", bbox: [250, 250, 750, 750] }, big, { imageId: "img_0" });
    expect([rel.image.width, rel.image.height]).toEqual([2000, 1500]);
    expect(rel.box).toEqual({ left: 1000, top: 750, width: 2000, height: 1500 });
    expect(rel.image.mime).toBe("image/jpeg");
    expect(rel.op).toContain("1000,750,3000,2250");

    const norm = await runImageOp(store, "crop", { image: "img_0", bbox: [0.1, 0.2, 0.3, 0.4], coords: "norm1" }, big, {
      imageId: "img_0",
    });
    expect([norm.image.width, norm.image.height]).toEqual([800, 600]);

    const px = await runImageOp(store, "crop", { image: "img_0", bbox: [100, 200, 500, 600] }, big, {
      imageId: "img_0",
      defaultCoords: "pixel",
    });
    expect([px.image.width, px.image.height]).toEqual([400, 400]);
  });

  it("crops a crop", async () => {
    const first = await runImageOp(store, "crop", { image: "img_0", bbox: [250, 250, 750, 750] }, big, { imageId: "img_0" });
    const second = await runImageOp(store, "crop", { image: "img_1", bbox: [0, 0, 500, 500] }, first.image, { imageId: "img_1" });
    expect([second.image.width, second.image.height]).toEqual([1000, 750]);
  });

  it("zooms: enlarges by the default and given factor, capped by maxOutputPixels", async () => {
    const bbox = [100, 100, 200, 150];
    const def = await runImageOp(store, "zoom", { image: "img_0", bbox, coords: "pixel" }, big, { imageId: "img_0" });
    expect([def.image.width, def.image.height]).toEqual([800, 400]); // 1024/100 capped at 8×
    const x3 = await runImageOp(store, "zoom", { image: "img_0", bbox, coords: "pixel", factor: 3 }, big, { imageId: "img_0" });
    expect([x3.image.width, x3.image.height]).toEqual([300, 150]);
    const capped = await runImageOp(store, "zoom", { image: "img_0", bbox, coords: "pixel", factor: 16 }, big, {
      imageId: "img_0",
      maxOutputPixels: 100_000,
    });
    expect(capped.image.width * capped.image.height).toBeLessThanOrEqual(100_000);
    expect(capped.image.width).toBeGreaterThan(100);
  });

  it("rotates: 90° swaps dimensions, other angles enlarge the canvas", async () => {
    const r90 = await runImageOp(store, "rotate", { image: "img_0", degrees: 90 }, rect, { imageId: "img_0" });
    expect([r90.image.width, r90.image.height]).toEqual([300, 400]);
    const r30 = await runImageOp(store, "rotate", { image: "img_0", degrees: -30 }, rect, { imageId: "img_0" });
    expect(r30.image.width).toBeGreaterThan(400);
    expect(r30.image.height).toBeGreaterThan(300);
    expect(await pixel(store, r30.image, 0, 0)).toEqual([255, 255, 255]);
  });

  it("rotate caps its output like zoom: a canvas over the limit is made from a downscaled source, and the op says so", async () => {
    const strip = await store.ingest(await sharp({ create: { width: 3000, height: 20, channels: 3, background: "#202020" } }).png().toBuffer());
    // 45° of 3000×20 needs a ~2135×2135 canvas: 4.6 MP, over the 1 MP limit.
    const r = await runImageOp(store, "rotate", { image: "img_2", degrees: 45 }, strip, { imageId: "img_2", maxOutputPixels: 1_000_000 });
    expect(r.image.width * r.image.height).toBeLessThanOrEqual(1_000_000);
    expect(r.image.width).toBeGreaterThan(900);
    expect(r.op).toMatch(/^rotate 45° \(scaled ×0\.\d+ to keep within 1,000,000 pixels: crop the part you need first to rotate it at full size\)$/);
    // A right angle never needs more pixels than its source, which the store already accepted.
    const r90 = await runImageOp(store, "rotate", { image: "img_0", degrees: 90 }, rect, { imageId: "img_0", maxOutputPixels: 100_000 });
    expect([r90.image.width, r90.image.height, r90.op]).toEqual([300, 400, "rotate 90°"]);
  });

  it("flips horizontally and vertically", async () => {
    expect((await pixel(store, rect, 50, 50)).slice(0, 3)).toEqual([255, 0, 0]);
    const h = await runImageOp(store, "flip", { image: "img_0", axis: "horizontal" }, rect, { imageId: "img_0" });
    expect([h.image.width, h.image.height]).toEqual([400, 300]);
    expect(await pixel(store, h.image, 50, 50)).toEqual([255, 255, 255]);
    expect(await pixel(store, h.image, 349, 50)).toEqual([255, 0, 0]);
    const v = await runImageOp(store, "flip", { image: "img_0", axis: "vertical" }, rect, { imageId: "img_0" });
    expect(await pixel(store, v.image, 50, 249)).toEqual([255, 0, 0]);
  });

  it("adjusts to grayscale and refuses an empty adjustment", async () => {
    const g = await runImageOp(store, "adjust", { image: "img_0", grayscale: true }, rect, { imageId: "img_0" });
    const meta = await sharp(await store.read(g.image)).metadata();
    expect(meta.channels).toBe(1);
    const b = await runImageOp(store, "adjust", { image: "img_0", brightness: 0.5, contrast: 1.2, sharpen: true }, rect, {
      imageId: "img_0",
    });
    expect(b.image.sha256).not.toBe(rect.sha256);
    await expectArgError(runImageOp(store, "adjust", { image: "img_0", brightness: 1 }, rect, { imageId: "img_0" }), "adjustment");
  });

  it("annotates into a different image of the same size", async () => {
    const a = await runImageOp(
      store,
      "annotate",
      {
        image: "img_0",
        shapes: [
          { type: "box", bbox: [500, 500, 900, 900], label: `<tag> & "quotes" 'n' stuff`, color: "#00ff00" },
          { type: "point", point: [100, 100], label: "p" },
          { type: "line", from: [0, 0], to: [1000, 1000], color: "Blue" },
        ],
      },
      rect,
      { imageId: "img_0" },
    );
    expect([a.image.width, a.image.height]).toEqual([400, 300]);
    expect(a.image.sha256).not.toBe(rect.sha256);
    expect(a.image.mime).toBe("image/png");
    expect((await sharp(await store.read(a.image)).metadata()).hasAlpha).toBe(false);
    await expectArgError(
      runImageOp(store, "annotate", { image: "img_0", shapes: [{ type: "box", bbox: [0, 0, 10, 10], color: "reddish" }] }, rect, {
        imageId: "img_0",
      }),
      "shapes[0].color",
      "unknown colour",
    );
  });

  it("resizes keeping the aspect ratio and refuses oversized output", async () => {
    const w = await runImageOp(store, "resize", { image: "img_0", width: 200 }, rect, { imageId: "img_0" });
    expect([w.image.width, w.image.height]).toEqual([200, 150]);
    const h = await runImageOp(store, "resize", { image: "img_0", height: 600 }, rect, { imageId: "img_0" });
    expect([h.image.width, h.image.height]).toEqual([800, 600]);
    const both = await runImageOp(store, "resize", { image: "img_0", width: 100, height: 100 }, rect, { imageId: "img_0" });
    expect([both.image.width, both.image.height]).toEqual([100, 75]);
    await expectArgError(
      runImageOp(store, "resize", { image: "img_0", width: 8000 }, rect, { imageId: "img_0", maxOutputPixels: 1_000_000 }),
      "over the limit",
    );
  });

  it("is deterministic: the same op twice gives the same bytes", async () => {
    const args = { image: "img_0", bbox: [123, 456, 223, 556] };
    const a = await runImageOp(store, "zoom", args, big, { imageId: "img_0" });
    const otherStore = new ImageStore(join(dir, "store-2"));
    const otherBig = await otherStore.ingest(bigJpeg);
    const b = await runImageOp(otherStore, "zoom", args, otherBig, { imageId: "img_0" });
    expect(b.image.sha256).toBe(a.image.sha256);
    const p1 = await runImageOp(store, "annotate", { image: "img_0", shapes: [{ type: "box", bbox: [1, 2, 300, 400], label: "x" }] }, rect, {
      imageId: "img_0",
    });
    const p2 = await runImageOp(store, "annotate", { image: "img_0", shapes: [{ type: "box", bbox: [1, 2, 300, 400], label: "x" }] }, rect, {
      imageId: "img_0",
    });
    expect(p2.image.sha256).toBe(p1.image.sha256);
  });

  it("reports a box outside the image in terms the model can act on", async () => {
    const message = await expectArgError(
      runImageOp(store, "crop", { image: "img_2", bbox: [10, 20, 1200, 300] }, rect, { imageId: "img_2" }),
      "goes outside img_2",
      "0–1000",
      "400×300",
    );
    expect(message).toContain("[x1, y1, x2, y2]");
    // 1200 cannot be a pixel x of a 400-wide image, so no hint there; on the big image it can.
    expect(message).not.toContain('coords: "pixel"');
    await expectArgError(
      runImageOp(store, "crop", { image: "img_0", bbox: [10, 20, 1200, 300] }, big, { imageId: "img_0" }),
      'If these are pixel coordinates, also pass coords: "pixel"',
    );
  });

  it("reports missing and mistyped arguments", async () => {
    const missing = await expectArgError(runImageOp(store, "crop", { image: "img_0" }, rect, { imageId: "img_0" }), "bbox", "missing");
    expect(missing).toContain("Expected:");
    const wrong = await expectArgError(
      runImageOp(store, "crop", { image: "img_0", bbox: "10,20,30,40", coords: "percent" }, rect, { imageId: "img_0" }),
      "bbox: Invalid input: expected array",
      "coords",
    );
    expect(wrong).not.toContain("characters"); // no noise about string length
    await expectArgError(runImageOp(store, "crop", { image: "img_0", bbox: [1, 2, 3] }, rect, { imageId: "img_0" }), "exactly 4");
    await expectArgError(runImageOp(store, "flip", { image: "img_0", axis: "diagonal" }, rect, { imageId: "img_0" }), "axis");
    await expectArgError(runImageOp(store, "rotate", null, rect, { imageId: "img_0" }), "(arguments)");
    await expectArgError(
      runImageOp(store, "crop", { image: "img_0", bbox_2d: [1, 2, 3, 4] }, rect, { imageId: "img_0" }),
      "Unknown argument ignored: bbox_2d",
    );
  });

  it("decodes a large source once for many crops", async () => {
    const fresh = new ImageStore(join(dir, "store-3"));
    const src = await fresh.ingest(bigJpeg);
    const read = vi.spyOn(fresh, "read");
    for (let i = 0; i < 10; i++) {
      const r = await runImageOp(fresh, "crop", { image: "img_0", bbox: [i * 50, i * 40, i * 50 + 100, i * 40 + 100] }, src, {
        imageId: "img_0",
      });
      expect(r.image.width).toBe(400);
    }
    expect(read.mock.calls.filter(([img]) => img.sha256 === src.sha256)).toHaveLength(1);
    read.mockRestore();
  });
});

describe("imageStats", () => {
  it("tells a uniform crop from a noisy one", async () => {
    const flat = await runImageOp(
      store,
      "crop",
      { image: "img_0", bbox: [UNIFORM.x1 + 50, UNIFORM.y1 + 50, UNIFORM.x2 - 50, UNIFORM.y2 - 50], coords: "pixel" },
      big,
      { imageId: "img_0" },
    );
    const flatStats = await imageStats(store, flat.image);
    expect(flatStats.stdev).toBeLessThan(2);
    expect(flatStats.mean).toBeGreaterThan(120);
    expect(flatStats.mean).toBeLessThan(136);
    const noisy = await runImageOp(
      store,
      "crop",
      { image: "img_0", bbox: [NOISE.x1, NOISE.y1, NOISE.x2, NOISE.y2], coords: "pixel" },
      big,
      { imageId: "img_0" },
    );
    expect((await imageStats(store, noisy.image)).stdev).toBeGreaterThan(10);
  });

  it("runImageOp returns the same verdicts from the pixels in hand, for crops, zooms and other ops", async () => {
    const flatBox = { image: "img_0", bbox: [UNIFORM.x1 + 50, UNIFORM.y1 + 50, UNIFORM.x2 - 50, UNIFORM.y2 - 50], coords: "pixel" };
    const noisyBox = { image: "img_0", bbox: [NOISE.x1, NOISE.y1, NOISE.x2, NOISE.y2], coords: "pixel" };
    const read = vi.spyOn(store, "read");
    const flat = await runImageOp(store, "crop", flatBox, big, { imageId: "img_0" });
    const noisy = await runImageOp(store, "zoom", noisyBox, big, { imageId: "img_0" });
    // No second decode: the result is never read back from the store.
    expect(read).not.toHaveBeenCalled();
    read.mockRestore();
    expect(flat.stats.stdev).toBeLessThan(2);
    expect(Math.abs(flat.stats.mean - (await imageStats(store, flat.image)).mean)).toBeLessThan(2);
    expect(noisy.stats.stdev).toBeGreaterThan(10);
    const bright = await runImageOp(store, "adjust", { image: "img_0", brightness: 10 }, flat.image, { imageId: "img_1" });
    expect(bright.stats.stdev).toBeLessThan(2);
    expect(bright.stats.mean).toBeGreaterThan(250);
  });

  it("regionStats samples a large box on a grid and matches the exact figures", () => {
    const width = 2000;
    const height = 1000;
    const data = Buffer.alloc(width * height * 4);
    // Noise (a linear congruential generator) over a horizontal gradient, like a noisy photo.
    let seed = 12345;
    const noise = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 24;
    for (let i = 0; i < width * height; i++) {
      data[i * 4] = noise();
      data[i * 4 + 1] = 100;
      data[i * 4 + 2] = Math.min(255, ((i % width) * 200) / width + (noise() >> 3));
      data[i * 4 + 3] = 255;
    }
    const decoded = { data, width, height, channels: 4 as const };
    const sampled = regionStats(decoded, { left: 0, top: 0, width, height });
    const small = regionStats(decoded, { left: 10, top: 10, width: 1, height: 1 });
    expect(small.stdev).toBe(0);
    // Exact figures over every pixel, alpha ignored.
    let mean = 0;
    let stdev = 0;
    for (let c = 0; c < 3; c++) {
      let s1 = 0;
      let s2 = 0;
      for (let i = 0; i < width * height; i++) {
        s1 += data[i * 4 + c]!;
        s2 += data[i * 4 + c]! ** 2;
      }
      const m = s1 / (width * height);
      mean += m / 3;
      stdev += Math.sqrt(s2 / (width * height) - m * m) / 3;
    }
    expect(stdev).toBeGreaterThan(30);
    expect(Math.abs(sampled.mean - mean)).toBeLessThan(1);
    expect(Math.abs(sampled.stdev - stdev)).toBeLessThan(1);
  });
});

describe("ImageStore input handling", () => {
  it("applies EXIF orientation 6 on ingest", async () => {
    const jpeg = await sharp({ create: { width: 300, height: 200, channels: 3, background: "#3366cc" } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const s = new ImageStore(join(dir, "store-exif"));
    const img = await s.ingest(jpeg);
    expect([img.width, img.height]).toEqual([200, 300]);
  });

  it("refuses an image over maxInputPixels", async () => {
    const png = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: "#ffffff" } })
      .png()
      .toBuffer();
    const s = new ImageStore(join(dir, "store-small"), { maxInputPixels: 1_000_000 });
    await expect(s.ingest(png)).rejects.toBeInstanceOf(ImageInputError);
  });

  it("says an oversized image's pixel count, the limit and LOUPE_MAX_INPUT_PIXELS", async () => {
    const png = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: "#ffffff" } })
      .png()
      .toBuffer();
    const s = new ImageStore(join(dir, "store-small-message"), { maxInputPixels: 1_000_000 });
    await expect(s.ingest(png)).rejects.toThrow(
      /^image is 2000×2000 \(4,000,000 pixels\), over the limit of 1,000,000 pixels; downscale it or raise LOUPE_MAX_INPUT_PIXELS$/,
    );
  });
});

describe("tool specs", () => {
  it("has a JSON Schema per tool without $schema", () => {
    expect(imageToolSpecs.map((s) => s.name)).toEqual(IMAGE_TOOL_NAMES);
    for (const spec of imageToolSpecs) {
      expect(spec.parameters).not.toHaveProperty("$schema");
      expect(spec.parameters.type).toBe("object");
      expect(spec.description).toMatch(/img_N/);
    }
    const crop = imageToolSpecs.find((s) => s.name === "crop")!;
    expect(crop.description).toContain("0–1000");
    expect(Object.keys(imageToolSchemas)).toEqual(["crop", "zoom", "rotate", "flip", "adjust", "annotate", "resize"]);
  });
});
