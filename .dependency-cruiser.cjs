// The layers' import rules (README, "Architecture"), checked by test/layers.test.ts as part of `npm test`:
// src/core <- tools <- nodes <- graphs, src/runtime beside them, src/run above both, the faces on top.
const OUTSIDE = "^(graphs|nodes|tools|src|test|bench|scripts|examples|bin)/";
const TESTS = "(^test/|\\.test\\.ts$)";

/** A rule: files under `from` (tests aside) may import project files only under `allowed`. */
const layer = (name, from, allowed, comment) => ({
  name,
  comment,
  severity: "error",
  from: { path: from, pathNot: TESTS },
  to: { path: OUTSIDE, pathNot: allowed },
});

module.exports = {
  forbidden: [
    layer("core-imports-only-core", "^src/core/", "^src/core/", "src/core is what everything shares: it imports nothing of the project above it"),
    layer("tools-import-only-core", "^tools/", "^(tools|src/core)/", "tools/ (the actions) import only src/core"),
    layer("nodes-import-tools-and-core", "^nodes/", "^(nodes|tools|src/core)/", "nodes/ import tools/ and src/core"),
    layer("graphs-import-nodes-and-core", "^graphs/", "^(graphs|nodes|src/core)/", "graphs/ only wire nodes: they import nodes/ and src/core"),
    layer("runtime-imports-tools-and-core", "^src/runtime/", "^(tools|src/core|src/runtime)/", "src/runtime (the composition root) imports tools/ and src/core"),
    layer("run-imports-below-faces", "^src/run/", "^(graphs|nodes|tools|src/core|src/runtime|src/run)/", "src/run (running an agent) sits under the faces"),
    layer("eval-not-other-faces", "^src/eval/", "^(graphs|nodes|tools|src/core|src/runtime|src/run|src/eval)/", "src/eval imports what is below the faces, not the CLI or the server"),
    layer("server-not-other-faces", "^src/server/", "^(graphs|nodes|tools|src/core|src/runtime|src/run|src/server)/", "src/server imports what is below the faces, not the CLI or evaluation"),
    layer("ui-imports-nothing-of-the-project", "^src/ui/", "^src/ui/", "src/ui is the live page's browser code (bundled for /ui): it reaches the server over HTTP only, and imports nothing of the project"),
    {
      name: "package-face-imported-by-no-one",
      comment: "src/index.ts is the package's face for other projects; Loupe's own code imports the layers themselves (the CLI may use every layer, and starts the server's image route for serve-images)",
      severity: "error",
      from: { path: "^(graphs|nodes|tools|src)/", pathNot: TESTS },
      to: { path: "^src/index[.]ts$" },
    },
    {
      name: "known-layers-only",
      comment: "code under src/ lives in one of the layers (or is src/index.ts), so a rule above covers it",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(core|runtime|run|cli|server|eval|ui)/|^src/index\\.ts$" },
      to: {},
    },
    {
      name: "imports-resolve",
      comment: "a relative import that cannot be resolved (a typo in a path) would escape every rule",
      severity: "error",
      from: {},
      to: { couldNotResolve: true, path: "^[.]{1,2}/" },
    },
    {
      name: "shipped-code-never-imports-tests",
      severity: "error",
      from: { path: "^(graphs|nodes|tools|src|bin|scripts|examples)/", pathNot: TESTS },
      to: { path: "^test/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
  },
};
