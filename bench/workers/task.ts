// Child process: runs one exported benchmark task alone, then reports its result, peak RSS and CPU time.
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { peakRssBytes, ROOT } from "../lib/common.js";

// If the benchmark runner goes away, so does this process.
process.on("disconnect", () => process.exit(0));

process.once("message", async (msg: { type: "run"; module: string; fn: string; args: unknown }) => {
  try {
    const mod = (await import(pathToFileURL(join(ROOT, msg.module)).href)) as Record<string, (args: unknown) => Promise<object>>;
    const task = mod[msg.fn];
    if (typeof task !== "function") throw new Error(`${msg.module} exports no function ${msg.fn}`);
    const cpu0 = process.cpuUsage();
    const result = await task(msg.args);
    const cpu = process.cpuUsage(cpu0);
    const measure = { maxRssBytes: peakRssBytes(), cpuMs: (cpu.user + cpu.system) / 1000 };
    process.send!({ type: "result", result: { ...result, ...measure } }, () => process.exit(0));
  } catch (err) {
    process.send!({ type: "error", message: (err as Error).stack ?? String(err) }, () => process.exit(1));
  }
});
