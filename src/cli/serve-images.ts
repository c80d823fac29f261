// `loupe serve-images`: the image route on its own HTTP port, for reverse image search (put it behind
// the URL in LOUPE_PUBLIC_IMAGE_BASE_URL) and for clients fetching a run's sub-images.
import { resolveConfig, resolveSecrets, type LoupeConfig, type LoupeSecrets } from "../core/config.js";
import { imageStoreFor } from "../runtime/deps.js";
import { imageRouteSecret } from "../core/image-urls.js";
import { createImageRoute, serveImageRoute } from "../server/image-route.js";
import { LoupeDatabase } from "../core/postgres.js";
import { untilInterrupted } from "./signals.js";

export type ServeImagesFlags = { port: number; host: string; dataDir?: string };

/** The command: serves the configured image store until Ctrl-C or SIGTERM. */
export async function runServeImages(flags: ServeImagesFlags): Promise<void> {
  const settings = resolveConfig({ dataDir: flags.dataDir });
  const served = await startImageServer(settings, resolveSecrets(), { port: flags.port, host: flags.host }, (line) => process.stderr.write(`${line}\n`));
  await untilInterrupted();
  await served.close();
}

/** Starts serving; the returned `close()` stops the server and the database connection. */
export async function startImageServer(
  settings: LoupeConfig,
  secrets: LoupeSecrets,
  listen: { port: number; host: string },
  log: (line: string) => void,
): Promise<{ url: string; close(): Promise<void> }> {
  const database = settings.databaseUrl ? new LoupeDatabase(settings.databaseUrl) : undefined;
  const store = imageStoreFor(settings, database);
  const route = createImageRoute({ store, secret: imageRouteSecret(settings.dataDir, secrets.publicImageSecret) });
  const served = await serveImageRoute(route, listen);
  log(`loupe: serving images from ${database ? database.where : store.dir} at ${served.url}${route.prefix}/`);
  if (settings.publicImageBaseUrl) {
    log(`loupe: public base URL ${settings.publicImageBaseUrl} must forward ${route.prefix}/ to this address`);
  } else {
    log("loupe: LOUPE_PUBLIC_IMAGE_BASE_URL is not set; reverse image search needs it to be this server's public address");
  }
  return {
    url: served.url,
    close: async () => {
      await served.close();
      await database?.end();
    },
  };
}
