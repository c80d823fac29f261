// Prints the agent graph as a Mermaid diagram, drawn from the real graph (pasted into the README).
import { createAgent } from "../graphs/agent.js";
import { resolveConfig } from "../src/core/config.js";
import { createDeps } from "../src/runtime/deps.js";

const agent = createAgent({ deps: createDeps(resolveConfig({}, {}), {}) });
const drawable = await agent.getGraphAsync();
process.stdout.write(`${drawable.drawMermaid()}\n`);
