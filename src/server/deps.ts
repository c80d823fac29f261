// What the LangGraph server's graphs and HTTP routes share: one set of dependencies per server process, from the environment.
import { commaList, loadDotEnv, resolveConfig, resolveSecrets } from "../core/config.js";
import { createDeps, type RuntimeDeps } from "../runtime/deps.js";
import { urlImageReader } from "../core/image-sources.js";

let served: RuntimeDeps | undefined;

/**
 * The served dependencies (built on first use). Clients give images as URLs or data: URLs only:
 * the server never reads its own files for them, and fetches URLs through the SSRF guard.
 */
export function servedDeps(): RuntimeDeps {
  if (!served) {
    loadDotEnv();
    const config = resolveConfig();
    const allowHosts = commaList(config.webAllowHosts);
    served = createDeps(config, resolveSecrets(), { readImage: urlImageReader({ allowHosts }) });
  }
  return served;
}
