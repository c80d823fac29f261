// The image-tool node on its own: one call against the real image store, its result and its events.
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { createImageToolNode, type ToolTask } from "./image-tool.js";
import { BLANK_STDEV } from "./reflect.js";
import { nodeFixture, pendingCall, storedInput, type NodeFixture } from "../test/node-fakes.js";

async function runCrop(f: NodeFixture, args: Record<string, unknown>, name = "crop") {
  const img0 = await storedInput(f);
  const task: ToolTask = { call: pendingCall("c1", name, args, "image"), images: [img0] };
  const update = await createImageToolNode(f.deps)(task, f.config);
  expect(update.results).toHaveLength(1);
  return { img0, result: update.results[0]! };
}

describe("image_tool", () => {
  it("crops the left half: a stored 200×300 image with its box, parent, op and a near-zero std dev", async () => {
    const f = await nodeFixture();
    const { result } = await runCrop(f, { image: "img_0", bbox: [0, 0, 500, 1000] });
    expect(result).toMatchObject({ callId: "c1", ok: true, text: "crop of img_0 done: crop [0,0,200,300]", urls: [] });
    expect(result.images).toHaveLength(1);
    const image = result.images[0]!;
    expect(image).toMatchObject({ mime: "image/png", width: 200, height: 300, parent: "img_0", op: "crop [0,0,200,300]", box: { left: 0, top: 0, width: 200, height: 300 } });
    expect(image.stdev).toBeLessThan(BLANK_STDEV);
    const meta = await sharp(await f.store.read(image)).metadata();
    expect([meta.width, meta.height]).toEqual([200, 300]);
  });

  it("a crop of the noisy right half has detail", async () => {
    const f = await nodeFixture();
    const { result } = await runCrop(f, { image: "img_0", bbox: [500, 0, 1000, 1000] });
    expect(result.images[0]!.box).toEqual({ left: 200, top: 0, width: 200, height: 300 });
    expect(result.images[0]!.stdev).toBeGreaterThan(20);
  });

  it("reads boxes in the run context's coordinate convention", async () => {
    const f = await nodeFixture({ context: { coords: "pixel" } });
    const { result } = await runCrop(f, { image: "img_0", bbox: [10, 20, 110, 70] });
    expect(result.images[0]!.box).toEqual({ left: 10, top: 20, width: 100, height: 50 });
  });

  it("an image id the task does not carry is an error the model reads", async () => {
    const f = await nodeFixture();
    const { result } = await runCrop(f, { image: "img_7", bbox: [0, 0, 500, 500] });
    expect(result).toMatchObject({ callId: "c1", ok: false, text: "Error: no image named img_7", images: [], urls: [] });
  });

  it("arguments that do not make a box are an error naming what is wrong", async () => {
    const f = await nodeFixture();
    const reversed = (await runCrop(f, { image: "img_0", bbox: [500, 0, 100, 100] })).result;
    expect(reversed.ok).toBe(false);
    expect(reversed.text).toMatch(/^Error: bbox \[500, 0, 100, 100\] is empty or reversed: x2 \(100\) must be greater than x1 \(500\)/);
    const missing = (await runCrop(f, { image: "img_0" })).result;
    expect(missing.ok).toBe(false);
    expect(missing.text).toMatch(/^Error: Invalid arguments for crop:[\s\S]*bbox[\s\S]*Expected: \{"image": "img_0", "bbox"/);
    expect(missing.images).toEqual([]);
  });

  it("emits tool_start and tool_end with the call, the outcome and the image made", async () => {
    const f = await nodeFixture();
    const { result } = await runCrop(f, { image: "img_0", bbox: [0, 0, 500, 500] });
    const image = result.images[0]!;
    expect(f.events).toEqual([
      { event: "tool_start", callId: "c1", name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] } },
      {
        event: "tool_end",
        callId: "c1",
        name: "crop",
        arguments: { image: "img_0", bbox: [0, 0, 500, 500] },
        ok: true,
        ms: Math.round(result.ms),
        summary: "crop of img_0 done: crop [0,0,200,150]",
        images: [{ sha256: image.sha256, width: 200, height: 150 }],
      },
    ]);
  });
});
