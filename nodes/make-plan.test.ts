// The plan graph's make_plan node on its own: the inputs stored, the plan asked for, nothing executed.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { SearchProvider } from "../src/core/search-provider.js";
import { EMPTY_USAGE, type PlanOnlyStateValue } from "../src/core/state.js";
import { createMakePlanNode } from "./make-plan.js";
import { halfBlankFile, halfBlankPng, imageRef, modelReply, nodeFixture, userTurn, type NodeFixture } from "../test/node-fakes.js";

const PLAN = [
  { description: "Search for the landmark", tool_name: "text_search", parameters: { query: "harbour tower" } },
  { description: "Verify", tool_name: "none", parameters: {} },
];

async function planOnly(f: NodeFixture, values: Partial<PlanOnlyStateValue> = {}) {
  const state: PlanOnlyStateValue = { question: "Which harbour is this?", imageSources: [await halfBlankFile(f)], images: [], plan: null, usage: { ...EMPTY_USAGE }, ...values };
  return createMakePlanNode(f.deps)(state, f.config);
}

describe("make_plan", () => {
  it("returns the stored inputs, the plan and the usage, asking the model once with the tools it could use", async () => {
    const search: SearchProvider = { name: "fake", textSearch: async () => ({ hits: [], images: [] }) };
    const f = await nodeFixture({ search: [search], script: [modelReply({ content: JSON.stringify(PLAN) })] });
    const update = await planOnly(f);
    const stored = await f.store.ingest(await halfBlankPng());
    expect(update).toEqual({
      images: [imageRef("img_0", stored, null, null, join(f.dir, "half.png"))],
      plan: PLAN,
      usage: { ...EMPTY_USAGE, turns: 1, promptTokens: 10, completionTokens: 5, modelMs: 7, imagesInContext: 1 },
    });
    expect(f.model.requests).toHaveLength(1);
    const [system, question] = f.model.requests[0]!.turns;
    expect(system!.role === "system_text" && system!.text).toMatch(/where tool_name is one of: crop, zoom, rotate, flip, adjust, annotate, resize, text_search, none\./);
    expect(question).toEqual(userTurn("img_0 (400×300):", update.images[0]!, "Which harbour is this?"));
  });

  it("gives plan null after two malformed plans", async () => {
    const f = await nodeFixture({ script: [modelReply({ content: "crop, then search" }), modelReply({ content: "still no JSON" })] });
    const update = await planOnly(f);
    expect(update.plan).toBeNull();
    expect(update.usage.turns).toBe(2);
    expect(update.images).toHaveLength(1);
  });

  it("an empty question throws before anything is read or asked", async () => {
    const f = await nodeFixture();
    await expect(planOnly(f, { question: " \n", imageSources: ["/no/such/file.png"] })).rejects.toThrow("the question is empty: pass the question to plan for");
    expect(f.model.requests).toHaveLength(0);
  });
});
