// The README's graph is the real graph's drawing, and its architecture section names the served graph's nodes.
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { agentMermaid } from "../scripts/graph-mermaid.js";

const README = resolve(import.meta.dirname, "..", "README.md");

describe("README", () => {
  it("holds the graph as `npm run graph` draws it now", async () => {
    const readme = await readFile(README, "utf8");
    const block = /## The graph[\s\S]*?```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, "no mermaid block under '## The graph'").toBeDefined();
    expect(block!.trimEnd()).toBe((await agentMermaid()).trimEnd());
  });

  it("draws the design card's nodes: planner, image_tool, search, reflect, answer, and the approval nodes", async () => {
    const nodes = [...(await agentMermaid()).matchAll(/^\t(\w+)\(\1\)$/gm)].map((m) => m[1]);
    expect(nodes.sort()).toEqual(["answer", "approve_calls", "approve_plan", "image_tool", "planner", "reflect", "search"]);
  });
});
