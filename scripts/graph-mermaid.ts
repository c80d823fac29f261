// Prints the agent graph as a Mermaid diagram, drawn from the real graph (the README's "The graph" holds it; test/readme.test.ts checks it is current).
import { pathToFileURL } from "node:url";
import { createAgent } from "../graphs/agent.js";
import { resolveConfig } from "../src/core/config.js";
import { ImageStore } from "../src/core/images.js";

/** The agent graph as Mermaid. Drawing needs only the wiring: the dependencies are never called. */
export async function agentMermaid(): Promise<string> {
  const unused = () => {
    throw new Error("not called while drawing the graph");
  };
  const deps = { defaults: resolveConfig({}, {}), images: new ImageStore("/nonexistent"), search: [], model: unused, close: () => {} };
  const drawable = await createAgent({ deps }).getGraphAsync();
  return drawable.drawMermaid();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.stdout.write(`${await agentMermaid()}\n`);
}
