// The reflect node on its own: results joined into observation turns in both dialects, the step checks R1V4 filtered its data with, and the budgets.
import { Overwrite } from "@langchain/langgraph";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import type { AgentStateValue, PendingCall, ToolResult, Turn } from "../src/core/state.js";
import type { PixelBox } from "../tools/image-ops.js";
import { createImageToolNode } from "./image-tool.js";
import { createReflectNode } from "./reflect.js";
import { agentState, halfBlankPng, nodeFixture, pendingCall, storedInput, toolResult, userTurn, written, type NodeFixture, type NodeFixtureOptions } from "../test/node-fakes.js";

type MadeImage = ToolResult["images"][number];

/** An image a crop of img_0 made: stored for real, with the box and std dev the image tool reports. */
async function cropMade(f: NodeFixture, box: PixelBox, stdev = 40, parent = "img_0"): Promise<MadeImage> {
  const stored = await f.store.put(await sharp(await halfBlankPng()).extract(box).png().toBuffer());
  return { ...stored, op: `crop [${box.left},${box.top},${box.left + box.width},${box.top + box.height}]`, parent, box, stdev };
}

const crop = (callId: string, bbox = [0, 0, 500, 500]) => pendingCall(callId, "crop", { image: "img_0", bbox }, "image");
const search = (callId: string, query = "harbour") => pendingCall(callId, "text_search", { queries: [query] }, "search");
const QUARTER: PixelBox = { left: 0, top: 0, width: 200, height: 150 };

/** A fixture and the state after a calls turn (turn 1) on img_0, with the given calls and results. */
async function afterCalls(options: NodeFixtureOptions, make: (f: NodeFixture) => Promise<{ pending: PendingCall[]; results: ToolResult[]; values?: Partial<AgentStateValue> }>) {
  const f = await nodeFixture(options);
  const img0 = await storedInput(f);
  const { pending, results, values } = await make(f);
  const state = agentState({
    images: [img0],
    pending,
    results,
    reply: { kind: "calls", think: "" },
    ...values,
    usage: { ...agentState().usage, turns: 1, imagesInContext: 1, ...values?.usage },
  });
  const update = await createReflectNode(f.deps)(state, f.config);
  return { f, update, state };
}

/** A user turn's parts (what a tool message carries after its text). */
const partsOf = (turn: Turn) => (turn as Extract<Turn, { role: "user" }>).parts;

/** The text parts of the conversation the update appends, joined. */
function told(update: { conversation?: unknown }): string {
  return ((update.conversation ?? []) as Array<{ text?: string; parts?: Array<{ text?: string }> }>)
    .map((t) => [t.text ?? "", ...(t.parts ?? []).map((p) => p.text ?? "")].filter(Boolean).join("\n"))
    .join("\n");
}

describe("reflect: observations", () => {
  it("tools dialect: one tool message per call in call order, each with its own images (the notes in the last)", async () => {
    let made!: MadeImage;
    const { update } = await afterCalls({}, async (f) => {
      made = await cropMade(f, QUARTER);
      return {
        pending: [crop("c1"), search("c2")],
        results: [toolResult("c2", { text: "nothing", resultCount: 0 }), toolResult("c1", { text: "crop of img_0 done: crop [0,0,200,150]", images: [made] })],
      };
    });
    expect(update.conversation).toEqual([
      { role: "tool", toolCallId: "c1", text: "crop of img_0 done: crop [0,0,200,150]", parts: partsOf(userTurn("img_1 (200×150; crop [0,0,200,150]):", { ...made, id: "img_1" })) },
      { role: "tool", toolCallId: "c2", text: "nothing", parts: [{ type: "text", text: "Note: text_search found nothing; try other wording or another approach." }] },
    ]);
  });

  it("tools dialect with LOUPE_TOOL_IMAGES=user: one tool message per call in call order, then a user turn with the new images", async () => {
    let made!: MadeImage;
    const { update } = await afterCalls({ settings: { toolImages: "user" } }, async (f) => {
      made = await cropMade(f, QUARTER);
      return {
        pending: [crop("c1"), search("c2")],
        // Results arrive in whatever order the tool nodes finished.
        results: [
          toolResult("c2", { text: 'Results for "harbour":\n[1] A\nhttps://a.example/', urls: [{ url: "https://a.example/", title: "A" }], resultCount: 1 }),
          toolResult("c1", { text: "crop of img_0 done: crop [0,0,200,150]", images: [made] }),
        ],
      };
    });
    expect(update.conversation).toEqual([
      { role: "tool", toolCallId: "c1", text: "crop of img_0 done: crop [0,0,200,150]" },
      { role: "tool", toolCallId: "c2", text: 'Results for "harbour":\n[1] A\nhttps://a.example/' },
      userTurn("img_1 (200×150; crop [0,0,200,150]):", { ...made, id: "img_1" }),
    ]);
    expect(update.images).toEqual([{ id: "img_1", sha256: made.sha256, mime: "image/png", width: 200, height: 150, parent: "img_0", op: "crop [0,0,200,150]" }]);
    expect(update.toolCalls).toEqual([
      { step: 1, turn: 0, name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] }, ok: true, ms: 3, images: ["img_1"], urls: [] },
      { step: 2, turn: 0, name: "text_search", arguments: { queries: ["harbour"] }, ok: true, ms: 3, images: [], urls: [{ url: "https://a.example/", title: "A" }] },
    ]);
    expect(update.usage).toMatchObject({ toolCalls: 2, consecutiveErrors: 0, imagesInContext: 2 });
  });

  it("tools dialect: tool messages answer the ids the assistant turn carries, when Loupe renamed a shared one", async () => {
    const { update } = await afterCalls({}, async () => ({
      pending: [pendingCall("x_0_0", "crop", { image: "img_0", bbox: [0, 0, 500, 500] }, "image"), pendingCall("x_0_1", "text_search", { queries: ["harbour"] }, "search", { index: 1 })],
      results: [toolResult("x_0_1", { text: "searched" }), toolResult("x_0_0", { text: "cropped" })],
      values: {
        conversation: [
          { role: "assistant", text: "", toolCalls: [{ id: "x", name: "crop", arguments: "{}" }, { id: "x", name: "text_search", arguments: "{}" }] },
        ],
      },
    }));
    expect(update.conversation).toEqual([
      { role: "tool", toolCallId: "x", text: "cropped" },
      { role: "tool", toolCallId: "x", text: "searched" },
    ]);
  });

  it("tags dialect: one <observation> user turn, numbered by call, with the images inside", async () => {
    let made!: MadeImage;
    const { update } = await afterCalls({ settings: { dialect: "tags" } }, async (f) => {
      made = await cropMade(f, QUARTER);
      return {
        pending: [crop("c1"), search("c2")],
        results: [toolResult("c1", { text: "crop of img_0 done: crop [0,0,200,150]", images: [made] }), toolResult("c2", { text: "no <answer> here", resultCount: 1 })],
      };
    });
    expect(update.conversation).toEqual([
      userTurn(
        "<observation>\n[1] crop: crop of img_0 done: crop [0,0,200,150]\nimg_1 (200×150; crop [0,0,200,150]):",
        { ...made, id: "img_1" },
        // Text from outside cannot forge a protocol tag.
        "\n[2] text_search: no &lt;answer&gt; here\n</observation>",
      ),
    ]);
  });

  it("names new images img_N in call order after the ones there are, each with its parent", async () => {
    const { update } = await afterCalls({}, async (f) => {
      const img1 = { ...(await storedInput(f, "img_1")), parent: "img_0", op: "crop" };
      return {
        pending: [crop("c1"), pendingCall("c2", "crop", { image: "img_1", bbox: [0, 0, 500, 500] }, "image")],
        results: [toolResult("c2", { images: [await cropMade(f, QUARTER, 40, "img_1")] }), toolResult("c1", { images: [await cropMade(f, { left: 0, top: 0, width: 100, height: 100 })] })],
        values: { images: [await storedInput(f), img1] },
      };
    });
    expect(written(update.images).map((i) => [i.id, i.parent, i.width])).toEqual([
      ["img_2", "img_0", 100],
      ["img_3", "img_1", 200],
    ]);
    expect(written(update.toolCalls).map((c) => c.images)).toEqual([["img_2"], ["img_3"]]);
  });

  it("an invalid call is shown as its error, and a call without a result says so", async () => {
    const { update } = await afterCalls({}, async () => ({
      pending: [pendingCall("c1", "magnify", null, "invalid", { error: 'unknown tool "magnify".' }), crop("c2")],
      results: [],
    }));
    expect(update.conversation).toEqual([
      { role: "tool", toolCallId: "c1", text: 'Error: unknown tool "magnify".' },
      { role: "tool", toolCallId: "c2", text: "Error: the call produced no result." },
    ]);
    expect(written(update.toolCalls).map((c) => [c.ok, c.error])).toEqual([
      [false, 'unknown tool "magnify".'],
      [false, "the call produced no result."],
    ]);
  });
});

describe("reflect: step checks", () => {
  it("notes a crop of the uniform half as nearly uniform (through the real image tool)", async () => {
    const { update } = await afterCalls({}, async (f) => {
      const task = { call: crop("c1", [0, 0, 500, 1000]), images: [await storedInput(f)] };
      const { results } = await createImageToolNode(f.deps)(task, f.config);
      return { pending: [task.call], results };
    });
    expect(told(update)).toMatch(/Note: img_1 is nearly uniform \(pixel std dev 0\.0\): the box probably missed what you were looking for; check the coordinates \(rel1000 by default\)\./);
  });

  it("notes a box that selects almost nothing", async () => {
    const { update } = await afterCalls({}, async (f) => ({ pending: [crop("c1")], results: [toolResult("c1", { images: [await cropMade(f, { left: 10, top: 10, width: 5, height: 6 })] })] }));
    expect(told(update)).toContain("the box for img_1 selects almost nothing (5×6 px of img_0's 400×300); make sure the box uses the right coordinate convention.");
    expect(told(update)).not.toMatch(/nearly uniform/);
  });

  it("notes a search that found nothing", async () => {
    const { update } = await afterCalls({}, async () => ({ pending: [search("c1")], results: [toolResult("c1", { text: "(no results)", resultCount: 0 })] }));
    expect(told(update)).toContain("Note: text_search found nothing; try other wording or another approach.");
  });

  it("notes a call that repeats an earlier step exactly, whatever its key order", async () => {
    const { update } = await afterCalls({}, async () => ({
      pending: [pendingCall("c2", "crop", { bbox: [0, 0, 500, 500], image: "img_0" }, "image")],
      results: [toolResult("c2")],
      values: { toolCalls: [{ step: 1, turn: 0, name: "crop", arguments: { image: "img_0", bbox: [0, 0, 500, 500] }, ok: true, ms: 1, images: ["img_1"], urls: [] }] },
    }));
    expect(told(update)).toContain("call 2 repeats step 1 exactly; its result is above, so change something instead of repeating it.");
    expect(written(update.toolCalls)[0]!.step).toBe(2);
  });

  it("makes images beyond maxImagesInContext but does not show them", async () => {
    let made: MadeImage[] = [];
    const { update } = await afterCalls({ settings: { maxImagesInContext: 2 } }, async (f) => {
      made = [await cropMade(f, QUARTER), await cropMade(f, { left: 200, top: 0, width: 200, height: 150 })];
      return { pending: [crop("c1"), crop("c2", [500, 0, 1000, 500])], results: [toolResult("c1", { images: [made[0]!] }), toolResult("c2", { images: [made[1]!] })] };
    });
    expect(written(update.images).map((i) => i.id)).toEqual(["img_1", "img_2"]);
    const shown = (written(update.conversation) as Array<{ parts?: Array<{ type: string; id?: string }> }>).flatMap((t) => t.parts ?? []).filter((p) => p.type === "image");
    expect(shown.map((p) => p.id)).toEqual(["img_1"]);
    expect(told(update)).toContain("img_2 was made but is not shown: the conversation already holds 2 images. Answer from what you have seen, or search.");
    expect(update.usage!.imagesInContext).toBe(2);
  });

  it("after three failed steps in a row, tells the model to change its approach; a success resets the count", async () => {
    const failing = await afterCalls({}, async () => ({ pending: [crop("c1")], results: [toolResult("c1", { ok: false, text: "Error: crop failed" })], values: { usage: { ...agentState().usage, consecutiveErrors: 2 } } }));
    expect(failing.update.usage!.consecutiveErrors).toBe(3);
    expect(told(failing.update)).toContain("3 failed steps in a row: re-read the tool descriptions and the error messages, and change your approach.");
    const twoOfThree = await afterCalls({}, async () => ({ pending: [crop("c1"), crop("c2", [0, 0, 9, 9])], results: [toolResult("c1", { ok: false }), toolResult("c2", { ok: false })] }));
    expect(twoOfThree.update.usage!.consecutiveErrors).toBe(2);
    expect(told(twoOfThree.update)).not.toMatch(/in a row/);
    const mixed = await afterCalls({}, async () => ({ pending: [crop("c1"), crop("c2", [0, 0, 9, 9])], results: [toolResult("c1", { ok: false }), toolResult("c2")], values: { usage: { ...agentState().usage, consecutiveErrors: 5 } } }));
    expect(mixed.update.usage!.consecutiveErrors).toBe(0);
  });

  it("says how many tool calls are left when two or one remain", async () => {
    const two = await afterCalls({ settings: { maxToolCalls: 5 } }, async () => ({ pending: [crop("c1")], results: [toolResult("c1")], values: { usage: { ...agentState().usage, toolCalls: 2 } } }));
    expect(told(two.update)).toContain("2 tool calls left before you must answer.");
    const one = await afterCalls({ settings: { maxToolCalls: 5 } }, async () => ({ pending: [crop("c1")], results: [toolResult("c1")], values: { usage: { ...agentState().usage, toolCalls: 3 } } }));
    expect(told(one.update)).toContain("1 tool call left before you must answer.");
    const three = await afterCalls({ settings: { maxToolCalls: 5 } }, async () => ({ pending: [crop("c1")], results: [toolResult("c1")], values: { usage: { ...agentState().usage, toolCalls: 1 } } }));
    expect(told(three.update)).not.toMatch(/left before/);
  });
});

describe("reflect: budgets", () => {
  const refused = (callId: string) => pendingCall(callId, "crop", null, "invalid", { error: "not run: the budget of 2 tool calls is used up." });

  it("records budget refusals but does not count them, and is exhausted once the calls reach the budget", async () => {
    const { update } = await afterCalls({ settings: { maxToolCalls: 2 } }, async () => ({
      pending: [crop("c1"), refused("c2"), refused("c3")],
      results: [toolResult("c1")],
      values: { usage: { ...agentState().usage, toolCalls: 1 } },
    }));
    expect(update.usage!.toolCalls).toBe(2);
    expect(written(update.toolCalls).map((c) => [c.ok, c.error])).toEqual([
      [true, undefined],
      [false, "not run: the budget of 2 tool calls is used up."],
      [false, "not run: the budget of 2 tool calls is used up."],
    ]);
    expect(told(update)).toContain("Error: not run: the budget of 2 tool calls is used up.");
    expect(update.exhausted).toBe("You have used all 2 tool calls.");
  });

  it("is not exhausted while calls remain", async () => {
    const { update } = await afterCalls({ settings: { maxToolCalls: 3 } }, async () => ({ pending: [crop("c1")], results: [toolResult("c1")], values: { usage: { ...agentState().usage, toolCalls: 1 } } }));
    expect(update.usage!.toolCalls).toBe(2);
    expect(update.exhausted).toBeNull();
  });

  it("is exhausted when the turns reach maxTurns", async () => {
    const { update } = await afterCalls({ settings: { maxTurns: 3 } }, async () => ({ pending: [crop("c1")], results: [toolResult("c1")], values: { usage: { ...agentState().usage, turns: 3 } } }));
    expect(update.exhausted).toBe("You have used all 3 turns.");
    expect(written(update.toolCalls)[0]!.turn).toBe(2);
  });

  it("a used-up tool budget after a malformed reply does not end the run (the last reply called no tools)", async () => {
    const { update } = await afterCalls({ settings: { maxToolCalls: 2 } }, async () => ({
      pending: [],
      results: [],
      values: { reply: { kind: "malformed", think: "", problem: "your reply was empty." }, usage: { ...agentState().usage, toolCalls: 2 } },
    }));
    expect(update.exhausted).toBeNull();
  });
});

describe("reflect: a malformed reply and the turn's end", () => {
  it.each(["tools", "tags"] as const)("%s dialect: a malformed reply becomes a format-error turn and counts as an error", async (dialect) => {
    const problem = "your reply was cut off because it reached the token limit before it was complete.";
    const { update } = await afterCalls({ settings: { dialect } }, async () => ({
      pending: [],
      results: [],
      values: { reply: { kind: "malformed", think: "", problem }, usage: { ...agentState().usage, consecutiveErrors: 1 } },
    }));
    const text = dialect === "tags" ? `<observation>\nFormat error: ${problem}\n</observation>` : `<tool_response>\nFormat error: ${problem}\n</tool_response>`;
    expect(update.conversation).toEqual([userTurn(text)]);
    expect(update.usage!.consecutiveErrors).toBe(2);
    expect(update.toolCalls).toEqual([]);
    expect(update.images).toEqual([]);
  });

  it("clears the results, empties pending and the reply, and emits tool_result with the named images", async () => {
    let made!: MadeImage;
    const { f, update } = await afterCalls({}, async (fx) => {
      made = await cropMade(fx, QUARTER);
      return { pending: [crop("c1"), search("c2")], results: [toolResult("c1", { images: [made] }), toolResult("c2", { ok: false, text: "Error: text_search failed: quota" })] };
    });
    expect(update.results).toBeInstanceOf(Overwrite);
    expect((update.results as unknown as Overwrite<ToolResult[]>).value).toEqual([]);
    expect(update.pending).toEqual([]);
    expect(update.reply).toBeNull();
    expect(f.events).toEqual([
      {
        event: "tool_result",
        callId: "c1",
        name: "crop",
        step: 1,
        ok: true,
        images: [{ id: "img_1", sha256: made.sha256, mime: "image/png", width: 200, height: 150, parent: "img_0", op: "crop [0,0,200,150]" }],
      },
      { event: "tool_result", callId: "c2", name: "text_search", step: 2, ok: false, images: [] },
    ]);
  });
});

describe("reflect: code cells", () => {
  const code = (callId: string, source = "print(1)") => pendingCall(callId, "code", { code: source }, "code");
  const JSON_RESULT = '{"result": "/mnt/data/temp_processed_images/c_1.png\\n", "type": "code"}';

  async function savedByCode(f: NodeFixture): Promise<MadeImage> {
    const made = await cropMade(f, QUARTER);
    return { ...made, op: "code", box: undefined, path: "/mnt/data/temp_processed_images/c_1.png" };
  }

  it("tags dialect: a lone code call is R1V4's exact observation, then each saved image with its id and sandbox path", async () => {
    let made!: MadeImage;
    const { update } = await afterCalls({ settings: { dialect: "tags" } }, async (f) => {
      made = await savedByCode(f);
      return { pending: [code("c1")], results: [toolResult("c1", { text: JSON_RESULT, images: [made], notes: ["a note from the tool"] })] };
    });
    expect(update.conversation).toEqual([
      userTurn(`<observation>${JSON_RESULT}</observation>\nimg_1 at /mnt/data/temp_processed_images/c_1.png (200×150; code):`, { ...made, id: "img_1" }, "Note: a note from the tool"),
    ]);
    expect(update.images).toEqual([expect.objectContaining({ id: "img_1", op: "code", parent: "img_0", path: "/mnt/data/temp_processed_images/c_1.png" })]);
  });

  it("tools dialect: the tool message is the JSON, with the saved image after it", async () => {
    let made!: MadeImage;
    const { update } = await afterCalls({}, async (f) => {
      made = await savedByCode(f);
      return { pending: [code("c1")], results: [toolResult("c1", { text: JSON_RESULT, images: [made] })] };
    });
    expect(update.conversation).toEqual([
      { role: "tool", toolCallId: "c1", text: JSON_RESULT, parts: partsOf(userTurn("img_1 at /mnt/data/temp_processed_images/c_1.png (200×150; code):", { ...made, id: "img_1" })) },
    ]);
  });

  it("a failed cell, a blank saved image and an exact repeat of earlier code each get their note", async () => {
    const failed = '{"result": "Traceback (most recent call last):\\nNameError: x", "type": "code"}';
    const { update } = await afterCalls({ settings: { dialect: "tags" } }, async (f) => {
      const blank = { ...(await savedByCode(f)), stdev: 0.4 };
      return {
        pending: [code("c1", "print(x)"), code("c2", "save()")],
        results: [toolResult("c1", { ok: false, text: failed }), toolResult("c2", { text: "{}", images: [blank] })],
        values: { toolCalls: [{ step: 1, turn: 0, name: "code", arguments: { code: "print(x)" }, ok: true, ms: 1, images: [], urls: [] }] },
      };
    });
    const text = told(update);
    expect(text).toContain("the code of call 2 failed; read the error above, fix the code and run it again");
    expect(text).toContain("call 2 repeats step 1 exactly");
    expect(text).toMatch(/img_1 is nearly uniform \(pixel std dev 0\.4\)/);
    expect(written(update.toolCalls)[0]).toMatchObject({ name: "code", ok: false, error: expect.stringContaining("NameError: x") });
  });
});

describe("reflect: a call a person edited", () => {
  it("tells the model the arguments it ran with", async () => {
    const { update } = await afterCalls({}, async () => ({
      pending: [pendingCall("c1", "text_search", { queries: ["harbour office"] }, "search", { edited: true, approval: "approved" })],
      results: [toolResult("c1", { text: "found", resultCount: 1 })],
    }));
    expect(told(update)).toContain('the person reviewing call 1 (text_search) changed its arguments: it ran with {"queries":["harbour office"]}.');
  });
});
