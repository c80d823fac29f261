// `loupe export`: a run's (or some threads') trajectories as fine-tuning data, optionally only the R1V4-consistent ones.
import { toolSpecs } from "../../tools/index.js";
import { resolve } from "node:path";
import { commaList, LoupeConfigSchema, type LoupeConfig } from "../core/config.js";
import type { ImageStore } from "../core/images.js";
import { OpenAICompatibleModel } from "../core/model.js";
import { exportTrajectories, formatExportReport, type ExportFormat } from "../eval/export.js";
import { UsageError } from "./errors.js";
import { readerSettings, runManifest, withStoredThreads } from "./stored-threads.js";

/** `loupe export`'s flags as commander parses them. */
export type ExportFlags = {
  threads?: string[];
  format: ExportFormat;
  filter: "consistent" | "none";
  out: string;
  checkModelUrl?: string;
  checkModel?: string;
  checkApiKey?: string;
  dataDir?: string;
};

export async function runExport(runDir: string | undefined, flags: ExportFlags): Promise<void> {
  const threads = (flags.threads ?? []).flatMap(commaList);
  if (!runDir && !threads.length) throw new UsageError("give a run directory or --threads ID...");
  if (runDir && threads.length) throw new UsageError("give either a run directory or --threads, not both");
  const settings = readerSettings(flags.dataDir ?? (runDir ? runManifest(runDir).dataDir : undefined));
  const report = await withStoredThreads(settings, (stored) =>
    exportTrajectories({
      runDir: runDir ? resolve(runDir) : undefined,
      threads: runDir ? undefined : threads,
      format: flags.format,
      filter: flags.filter,
      out: flags.out,
      reader: stored.reader,
      images: stored.images,
      checkModel: checkModelFrom(flags, settings, stored.images),
    }),
  );
  process.stderr.write(`${formatExportReport(report, flags.filter)}\n`);
}

/** The vision model of --check-model-url, asked short, deterministic questions; none without the flag. */
function checkModelFrom(flags: ExportFlags, settings: LoupeConfig, images: ImageStore): OpenAICompatibleModel | undefined {
  if (!flags.checkModelUrl) return undefined;
  return new OpenAICompatibleModel({
    config: LoupeConfigSchema.parse({ ...settings, modelUrl: flags.checkModelUrl, model: flags.checkModel, temperature: 0, maxTokens: 64, stream: false }),
    apiKey: flags.checkApiKey ?? process.env.LOUPE_CHECK_API_KEY,
    images,
    toolSpecs,
  });
}
