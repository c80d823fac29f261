// The live page at /ui (issue 15): a framework-free page (src/ui/) on @langchain/langgraph-sdk's Client, served by
// the graph API's own app (same origin, no CDN). It serves the prebuilt bundle (dist/ui/, `npm run build`) when it is
// there and not older than the sources; else it bundles src/ui/main.ts with esbuild on first request and keeps it.
import { existsSync, readdirSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Hono } from "hono";

/** esbuild's options for the page, the same as the build step's (`esbuild src/ui/main.ts --bundle --format=esm --platform=browser --target=es2022 --minify --outdir=dist/ui --entry-names=app`). */
export const UI_BUILD_OPTIONS = { bundle: true, format: "esm", platform: "browser", target: "es2022", minify: true, entryNames: "app", legalComments: "none" } as const;

interface Bundle {
  js: string;
  css: string;
}

const here = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
/** src/server/ui-route.ts → src/ui; dist/src/server/ui-route.js → src/ui is absent (the package ships the bundle). */
const SOURCE_DIR = here("../ui/");
/** The prebuilt bundle: dist/ui beside src/ (from the sources) or beside dist/src (compiled). */
const BUILT_DIRS = [here("../../dist/ui/"), here("../../ui/")];

function newestSource(): number {
  if (!existsSync(SOURCE_DIR)) return 0;
  return Math.max(0, ...readdirSync(SOURCE_DIR).filter((f) => /\.(ts|css)$/.test(f)).map((f) => statSync(`${SOURCE_DIR}${f}`).mtimeMs));
}

async function prebuilt(): Promise<Bundle | undefined> {
  for (const dir of BUILT_DIRS) {
    const js = `${dir}app.js`;
    if (!existsSync(js)) continue;
    if (statSync(js).mtimeMs < newestSource()) continue; // older than the sources: bundle them instead
    const css = existsSync(`${dir}app.css`) ? await readFile(`${dir}app.css`, "utf8") : "";
    return { js: await readFile(js, "utf8"), css };
  }
  return undefined;
}

async function bundleSources(): Promise<Bundle> {
  const esbuild = await import("esbuild");
  const result = await esbuild.build({ ...UI_BUILD_OPTIONS, entryPoints: [`${SOURCE_DIR}main.ts`], outdir: "/ui-out", write: false, logLevel: "silent" });
  const file = (ext: string) => result.outputFiles.find((f) => f.path.endsWith(ext))?.text ?? "";
  return { js: file(".js"), css: file(".css") };
}

let loading: Promise<Bundle> | undefined;
/** The page's script and style, built once per process. */
export function uiBundle(): Promise<Bundle> {
  loading ??= (async () => (await prebuilt()) ?? (await bundleSources()))();
  loading.catch(() => (loading = undefined)); // a failed build is tried again on the next request
  return loading;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Loupe: watch it think</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/app.css">
<script type="module" src="/ui/app.js"></script>
</head>
<body>
<noscript>This page needs JavaScript.</noscript>
<div id="app"></div>
</body>
</html>
`;

const SECURITY = {
  "x-content-type-options": "nosniff",
  // Same origin only: the page reaches nothing else (no CDN, no fonts); images come from this server's /images route.
  "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'",
};

/** Adds GET /ui (the page), /ui/app.js and /ui/app.css to an app (the LangGraph server's `http.app`). */
export function registerUiRoutes(app: Hono): Hono {
  app.get("/ui", (c) => c.body(PAGE, 200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache", ...SECURITY }));
  app.get("/ui/", (c) => c.redirect("/ui"));
  for (const [path, key, type] of [["/ui/app.js", "js", "text/javascript"], ["/ui/app.css", "css", "text/css"]] as const) {
    app.get(path, async (c) => {
      try {
        const bundle = await uiBundle();
        return c.body(bundle[key], 200, { "content-type": `${type}; charset=utf-8`, "cache-control": "no-cache", ...SECURITY });
      } catch (err) {
        return c.text(`loupe: the page could not be built: ${(err as Error).message}\n`, 500);
      }
    });
  }
  return app;
}
