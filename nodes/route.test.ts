// Routing on its own: pure functions of state, so these tests need no store and no model.
import { Send } from "@langchain/langgraph";
import { describe, expect, it } from "vitest";
import type { ImageRef, PendingCall } from "../src/core/state.js";
import { imagesNamedBy, routeAfterApproval, routeAfterPlanner, routeAfterReflect } from "./route.js";
import { agentState, pendingCall } from "../test/node-fakes.js";

const image = (id: string): ImageRef => ({ id, sha256: `sha-${id}`, mime: "image/png", width: 10, height: 10, parent: null, op: null });
const IMAGES = ["img_0", "img_1", "img_2", "img_3"].map(image);
const calls = { kind: "calls", think: "" } as const;
const crop = pendingCall("c1", "crop", { image: "img_2", bbox: [0, 0, 1, 1] }, "image");
const reverse = pendingCall("c2", "image_search", { image_paths: ["img_3", "img_0"] }, "search");
const text = pendingCall("c3", "text_search", { queries: ["q"] }, "search");
const invalid = pendingCall("c4", "magnify", null, "invalid", { error: "unknown tool" });

function sends(route: unknown): Array<{ node: string; args: unknown }> {
  expect(Array.isArray(route)).toBe(true);
  return (route as Send[]).map((s) => {
    expect(s).toBeInstanceOf(Send);
    return { node: s.node, args: s.args };
  });
}

describe("routeAfterPlanner", () => {
  it("a plan waiting for review goes to approve_plan, whatever the reply", () => {
    expect(routeAfterPlanner(agentState({ planReview: { status: "pending" }, reply: { kind: "answer", think: "", answer: "x" } }))).toBe("approve_plan");
  });

  it("an answer goes to answer", () => {
    expect(routeAfterPlanner(agentState({ planReview: { status: "approved" }, reply: { kind: "answer", think: "", answer: "x" } }))).toBe("answer");
  });

  it("a call that needs a person's approval goes to approve_calls", () => {
    const waiting: PendingCall = { ...text, approval: "required" };
    expect(routeAfterPlanner(agentState({ reply: calls, images: IMAGES, pending: [crop, waiting] }))).toBe("approve_calls");
  });

  it("runnable calls fan out with Send, each to its tool node carrying only the images it names", () => {
    const route = routeAfterPlanner(agentState({ reply: calls, images: IMAGES, pending: [crop, reverse, invalid, text] }));
    expect(sends(route)).toEqual([
      { node: "image_tool", args: { call: crop, images: [image("img_2")] } },
      { node: "search", args: { call: reverse, images: [image("img_0"), image("img_3")] } },
      { node: "search", args: { call: text, images: [] } },
    ]);
  });

  it("only invalid calls, or a malformed reply, go to reflect", () => {
    expect(routeAfterPlanner(agentState({ reply: calls, pending: [invalid] }))).toBe("reflect");
    expect(routeAfterPlanner(agentState({ reply: { kind: "malformed", think: "", problem: "empty" }, pending: [] }))).toBe("reflect");
  });
});

describe("routeAfterApproval", () => {
  it("approved calls run; when every call was denied, reflect shows the model why", () => {
    const approved: PendingCall = { ...text, approval: "approved" };
    expect(sends(routeAfterApproval(agentState({ reply: calls, images: IMAGES, pending: [approved] })))).toEqual([{ node: "search", args: { call: approved, images: [] } }]);
    const denied: PendingCall = { ...text, kind: "invalid", error: "the person supervising this agent did not allow this text_search call." };
    expect(routeAfterApproval(agentState({ reply: calls, pending: [denied] }))).toBe("reflect");
  });
});

describe("routeAfterReflect", () => {
  it("an exhausted budget goes to answer, else back to the planner", () => {
    expect(routeAfterReflect(agentState({ exhausted: "You have used all 3 turns." }))).toBe("answer");
    expect(routeAfterReflect(agentState({ exhausted: null }))).toBe("planner");
  });
});

describe("imagesNamedBy", () => {
  it("finds the images named by `image` or `image_paths`, in the order the run made them", () => {
    expect(imagesNamedBy(reverse, IMAGES).map((i) => i.id)).toEqual(["img_0", "img_3"]);
    expect(imagesNamedBy(crop, IMAGES).map((i) => i.id)).toEqual(["img_2"]);
  });

  it("names nothing for a call without arguments, or with image_paths that is not a list", () => {
    expect(imagesNamedBy(invalid, IMAGES)).toEqual([]);
    expect(imagesNamedBy(pendingCall("c", "image_search", { image_paths: "img_1" }, "search"), IMAGES)).toEqual([]);
    expect(imagesNamedBy(pendingCall("c", "crop", { image: "img_9" }, "image"), IMAGES)).toEqual([]);
  });
});
