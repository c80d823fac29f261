// The first turn's steps on their own: storing the inputs, R1V4's Plan mode (with its one retry), and how a plan reads.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";
import { describe, expect, it, vi } from "vitest";
import { ImageInputError, ImageStore } from "../src/core/images.js";
import { EMPTY_USAGE } from "../src/core/state.js";
import { createToolbox } from "../tools/index.js";
import { formatPlan, ingestInputs, makePlan, startConversation } from "./first-turn.js";
import { agentState, halfBlankFile, halfBlankPng, imageRef, modelReply, nodeFixture, userTurn, type NodeFixture } from "../test/node-fakes.js";

const PLAN = [
  { description: "Crop the sign", tool_name: "crop", parameters: { image: "img_0" } },
  { description: "Verify", tool_name: "none", parameters: {} },
];

describe("ingestInputs", () => {
  it("stores each input as img_0, img_1, … with the view the model is shown", async () => {
    const f = await nodeFixture();
    const path = await halfBlankFile(f);
    const inputs = await ingestInputs(f.deps, [path, path], f.settings.maxPixels);
    const stored = await f.store.ingest(await halfBlankPng());
    expect(inputs.map((i) => i.ref)).toEqual([imageRef("img_0", stored, null, null, path), imageRef("img_1", stored, null, null, path)]);
    expect(inputs[0]!.view).toEqual(stored);
  });

  it("shows an input larger than the pixel budget downscaled", async () => {
    const f = await nodeFixture();
    const [input] = await ingestInputs(f.deps, [await halfBlankFile(f)], 10_000);
    expect(input!.ref).toMatchObject({ width: 400, height: 300 });
    expect(input!.view.sha256).not.toBe(input!.ref.sha256);
    expect(input!.view.width * input!.view.height).toBeLessThanOrEqual(10_000);
    expect(input!.view.width / input!.view.height).toBeCloseTo(4 / 3, 1);
  });

  it("refuses a file that is not an image with an ImageInputError naming the source", async () => {
    const f = await nodeFixture();
    const notes = join(f.dir, "notes.txt");
    await writeFile(notes, "not an image");
    const read = ingestInputs(f.deps, [await halfBlankFile(f), notes], f.settings.maxPixels);
    await expect(read).rejects.toThrow(ImageInputError);
    await expect(read).rejects.toThrow(new RegExp(`^image ${notes}: not a readable image`));
  });

  it("uses the deps' image reader when there is one", async () => {
    const f = await nodeFixture();
    const asked: string[] = [];
    f.deps.readImage = async (source) => {
      asked.push(source);
      return halfBlankPng();
    };
    const [input] = await ingestInputs(f.deps, ["https://images.example/sign.png"], f.settings.maxPixels);
    expect(asked).toEqual(["https://images.example/sign.png"]);
    expect(input!.ref.id).toBe("img_0");
  });
});

describe("input limits", () => {
  it("refuses more input images than maxImagesInContext before reading any or calling the model", async () => {
    const f = await nodeFixture({ settings: { maxImagesInContext: 2 } });
    const asked: string[] = [];
    f.deps.readImage = async (source) => (asked.push(source), halfBlankPng());
    const sources = ["https://images.example/a.png", "https://images.example/b.png", "https://images.example/c.png"];
    const toolbox = createToolbox([], "rel1000");
    const started = startConversation(f.deps, agentState({ imageSources: sources }), f.settings, toolbox);
    await expect(started).rejects.toThrow(ImageInputError);
    await expect(started).rejects.toThrow(/^3 input images, over the limit of 2 images in one conversation \(LOUPE_MAX_IMAGES\)/);
    expect(asked).toEqual([]);
    expect(f.model.requests).toEqual([]);
    // The plan graph's make_plan node (no run context of its own) is held to the server's setting.
    await expect(ingestInputs(f.deps, sources, f.settings.maxPixels)).rejects.toThrow(/over the limit of 2 images/);
  });

  it("refuses inputs whose pixels add up to over the total budget, from their headers, before storing or decoding any", async () => {
    const f = await nodeFixture();
    const store = new ImageStore(join(f.dir, "small-store"), { maxInputPixels: 1_000_000 });
    f.deps.images = store;
    const png = await sharp({ create: { width: 1000, height: 800, channels: 3, background: "#808080" } }).png().toBuffer();
    f.deps.readImage = async () => png;
    const read = ingestInputs(f.deps, ["a", "b", "c"], f.settings.maxPixels);
    await expect(read).rejects.toThrow(ImageInputError);
    await expect(read).rejects.toThrow(
      /^the 3 input images hold 2,400,000 pixels in all, over the limit of 2,000,000 pixels for one question \(twice LOUPE_MAX_INPUT_PIXELS\)/,
    );
    const decode = vi.spyOn(store, "decoded");
    const ingest = vi.spyOn(store, "ingest");
    await expect(ingestInputs(f.deps, ["a", "b", "c"], f.settings.maxPixels)).rejects.toThrow(ImageInputError);
    expect(decode).not.toHaveBeenCalled();
    expect(ingest).not.toHaveBeenCalled();
    // Two of them fit.
    expect(await ingestInputs(f.deps, ["a", "b"], f.settings.maxPixels)).toHaveLength(2);
  });

  it("names a data: URL input by its type and size, never its bytes", async () => {
    const f = await nodeFixture();
    const payload = Buffer.alloc(3000, 7).toString("base64");
    const source = `data:image/png;base64,${payload}`;
    const read = ingestInputs(f.deps, [source], f.settings.maxPixels);
    await expect(read).rejects.toThrow(ImageInputError);
    const message = await read.catch((err: Error) => err.message);
    expect(message).toMatch(/^image \(data:image\/png URL, 3,000 bytes\): not a readable image/);
    expect(message).not.toContain(payload.slice(0, 40));
    expect(message.length).toBeLessThan(300);
  });
});

describe("makePlan", () => {
  async function plan(f: NodeFixture) {
    const specs = createToolbox([], "rel1000").specs;
    return makePlan(f.deps, f.settings, "What is on the sign?", [], specs, { ...EMPTY_USAGE });
  }

  it("reads a fenced JSON plan, ignoring brackets in the thinking", async () => {
    const f = await nodeFixture({ script: [modelReply({ content: `<think>maybe [crop] first</think>\n\`\`\`json\n${JSON.stringify(PLAN)}\n\`\`\`` })] });
    const made = await plan(f);
    expect(made.steps).toEqual(PLAN);
    expect(made.usage).toEqual({ ...EMPTY_USAGE, turns: 1, promptTokens: 10, completionTokens: 5, modelMs: 7 });
    expect(f.model.requests).toHaveLength(1);
    expect(f.model.requests[0]!.turns[1]).toEqual(userTurn("What is on the sign?"));
  });

  it("asks once more, saying what was wrong, when the plan does not fit the schema", async () => {
    const f = await nodeFixture({ script: [modelReply({ content: '[{"description": "crop"}]' }), modelReply({ content: JSON.stringify(PLAN) })] });
    const made = await plan(f);
    expect(made.steps).toEqual(PLAN);
    expect(made.usage.turns).toBe(2);
    const retry = f.model.requests[1]!.turns;
    expect(retry).toHaveLength(4);
    expect(retry[2]).toEqual({ role: "assistant", text: '[{"description": "crop"}]' });
    const complaint = retry[3]!;
    expect(complaint.role === "user" && complaint.parts[0]!.type === "text" && complaint.parts[0]!.text).toMatch(
      /^That plan is not valid \(0\.tool_name: .*; 0\.parameters: .*\)\. Output only the JSON array of steps\.$/,
    );
  });

  it("gives null after two bad plans, and asks no third time", async () => {
    const f = await nodeFixture({ script: [modelReply({ content: "no plan" }), modelReply({ content: "[]" }), modelReply({ content: JSON.stringify(PLAN) })] });
    const made = await plan(f);
    expect(made.steps).toBeNull();
    expect(made.usage.turns).toBe(2);
    expect(f.model.requests).toHaveLength(2);
  });
});

describe("formatPlan", () => {
  it("numbers the steps and shows each tool with its parameters when it has any", () => {
    expect(formatPlan(PLAN)).toBe('1. Crop the sign [crop {"image":"img_0"}]\n2. Verify [none]');
  });
});
