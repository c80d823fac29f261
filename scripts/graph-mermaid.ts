// Prints the agent graph as a Mermaid diagram, drawn from the real graph (pasted into the README).
import { createAgent } from "../graphs/build.js";
import { resolveConfig } from "../src/config.js";
import { createDeps } from "../src/deps.js";

const agent = createAgent({ deps: createDeps(resolveConfig({}, {}), {}) });
const drawable = await agent.getGraphAsync();
process.stdout.write(`${drawable.drawMermaid()}\n`);
