// Child process: the scripted model server, answering each request by its step in a crop scenario.
import { sha256 } from "../lib/common.js";
import { scenarioEntry, type CropScenario } from "../lib/scenarios.js";
import { startScriptedModelServer, type ScriptedModelServerOptions } from "../../src/cli/demo/scripted-model-server.js";

interface StartMessage {
  type: "start";
  scenario: CropScenario;
  options: Pick<ScriptedModelServerOptions, "latencyMs" | "ttftMs" | "tokensPerSecond">;
  record: "hash" | "none";
}

// If the benchmark runner goes away, so does this process.
process.on("disconnect", () => process.exit(0));

process.once("message", async (msg: StartMessage) => {
  try {
    const server = await startScriptedModelServer({
      ...msg.options,
      script: [scenarioEntry(msg.scenario)],
      onExhausted: "repeat-last",
    });
    const hashes: string[] = [];
    // The fixture keeps every request; drop them as they come so memory stays flat.
    const drain = () => {
      for (const r of server.requests.splice(0)) {
        if (msg.record === "hash" && r.method === "POST" && r.path === "/v1/chat/completions") hashes.push(sha256(r.rawBody));
      }
    };
    const timer = setInterval(drain, 20);
    process.on("message", async (m: { type: string }) => {
      if (m.type === "hashes") {
        drain();
        process.send!({ type: "hashes", hashes: hashes.splice(0) });
      } else if (m.type === "close") {
        clearInterval(timer);
        await server.close();
        process.disconnect();
      }
    });
    process.send!({ type: "ready", url: server.url });
  } catch (err) {
    process.send!({ type: "error", message: (err as Error).stack ?? String(err) }, () => process.exit(1));
  }
});
