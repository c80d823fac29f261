import { writeFile } from "node:fs/promises";
import { ask } from "./src/run/ask.js";
import { startFakeTavilyServer, FAKE_TAVILY_API_KEY } from "./src/cli/demo/fake-tavily-server.js";
import { startScriptedModelServer } from "./src/cli/demo/scripted-model-server.js";
import { harbourImage, TRAJECTORY_PAGES, TRAJECTORY_SEARCH, trajectoryScript } from "./src/cli/demo/trajectory.js";
import { tempDir, testAgent, testSettings, writeImage } from "./test/helpers.js";
for (const dialect of ["tools", "tags"] as const) {
  const t0 = Date.now();
  const tmp = await tempDir();
  const model = await startScriptedModelServer({ script: trajectoryScript(dialect) });
  const tavily = await startFakeTavilyServer({ search: TRAJECTORY_SEARCH, pages: TRAJECTORY_PAGES });
  const image = await writeImage(tmp.dir, "harbour.jpg", await harbourImage());
  const settings = testSettings({ modelUrl: model.url, dataDir: tmp.dir, dialect, tavilyUrl: tavily.url, stream: dialect === "tools" });
  const { agent, close } = testAgent(settings, { tavilyApiKey: FAKE_TAVILY_API_KEY });
  const result = await ask(agent, { settings, question: "What code is written on the north pier sign, and what does it mark?", images: [image] });
  close();
  const chats = model.chatRequests();
  console.log(dialect, result.answer, chats.length, Date.now() - t0, "ms");
  const strip = (s: string) => s.replace(/data:image\/[a-z]+;base64,[A-Za-z0-9+/=]+/g, "data:IMG");
  await writeFile(`/tmp/req-${dialect}.json`, strip(JSON.stringify(chats.map((c) => c.body), null, 1)));
  await model.close(); await tavily.close(); await tmp.cleanup();
}
