#!/usr/bin/env node
// Entry point of `npm run demo`: runs the offline demo (src/cli/demo/index.ts) through tsx's loader.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/demo/index.ts");
