// The toolbox: which tools the model is offered, and validation of a call before it runs.
import { describeIssues } from "../src/core/issues.js";
import type { ToolSpec } from "../src/core/protocol.js";
import type { PendingCall, RawToolCall } from "../src/core/state.js";
import type { Coords } from "../src/core/config.js";
import { buildImageToolSpecs, IMAGE_TOOL_NAMES, imageToolSchemas, type ImageToolName } from "./image-ops.js";
import {
  availableSearchTools,
  SEARCH_TOOL_NAMES,
  searchToolSchemas,
  searchToolSpecs,
  type SearchProvider,
  type SearchToolName,
} from "./search/provider.js";

export interface Toolbox {
  specs: ToolSpec[];
  names: string[];
  validate(call: RawToolCall, index: number, imageIds: Set<string>): PendingCall;
}

function isImageTool(name: string): name is ImageToolName {
  return (IMAGE_TOOL_NAMES as readonly string[]).includes(name);
}

function isSearchTool(name: string): name is SearchToolName {
  return (SEARCH_TOOL_NAMES as readonly string[]).includes(name);
}

// Building a spec runs z.toJSONSchema, about half a millisecond for the whole set: the specs are
// built once per (names, coords) and the toolbox once per (providers, coords). Both are deterministic,
// so a cached spec is byte-for-byte the one a rebuild would make. Treat them as read-only.
const specCache = new Map<string, ToolSpec[]>();
const toolboxCache = new WeakMap<SearchProvider[], Map<Coords, Toolbox>>();

/** Specs of the named tools, as offered to the model; deterministic, so a prompt can be rebuilt from the names. */
export function toolSpecs(names: string[], coords: Coords): ToolSpec[] {
  const key = `${coords}\u0000${names.join("\u0000")}`;
  let specs = specCache.get(key);
  if (!specs) {
    const image = buildImageToolSpecs(coords).filter((s) => names.includes(s.name));
    const search = searchToolSpecs(SEARCH_TOOL_NAMES.filter((n) => names.includes(n)));
    specs = [...image, ...search];
    specCache.set(key, specs);
  }
  return specs;
}

/** Image tools are always offered (R1V4 "General" mode); search tools only when a provider serves them. */
export function createToolbox(providers: SearchProvider[], coords: Coords): Toolbox {
  let byCoords = toolboxCache.get(providers);
  if (!byCoords) toolboxCache.set(providers, (byCoords = new Map()));
  let toolbox = byCoords.get(coords);
  if (!toolbox) byCoords.set(coords, (toolbox = buildToolbox(providers, coords)));
  return toolbox;
}

function buildToolbox(providers: SearchProvider[], coords: Coords): Toolbox {
  const specs = toolSpecs([...IMAGE_TOOL_NAMES, ...availableSearchTools(providers)], coords);
  const names = specs.map((s) => s.name);
  return {
    specs,
    names,
    validate(call, index, imageIds) {
      const base = { index, callId: call.id, name: call.name };
      const invalid = (error: string): PendingCall => ({ ...base, args: null, kind: "invalid", error });
      if (!names.includes(call.name)) {
        if (isSearchTool(call.name)) {
          return invalid(`${call.name} is not configured: no search provider for it is set up. Available tools: ${names.join(", ")}.`);
        }
        return invalid(`unknown tool "${call.name}". Available tools: ${names.join(", ")}.`);
      }
      let args: unknown;
      try {
        args = call.arguments.trim() === "" ? {} : JSON.parse(call.arguments);
      } catch (err) {
        return invalid(`the arguments of ${call.name} are not valid JSON (${(err as Error).message}): ${call.arguments.slice(0, 200)}`);
      }
      if (!args || typeof args !== "object" || Array.isArray(args)) {
        return invalid(`the arguments of ${call.name} must be a JSON object.`);
      }
      const schema = isImageTool(call.name) ? imageToolSchemas[call.name] : searchToolSchemas[call.name as SearchToolName];
      const parsed = schema.safeParse(args);
      if (!parsed.success) {
        const problems = describeIssues(parsed.error.issues, { root: "(arguments)" });
        const spec = specs.find((s) => s.name === call.name)!;
        return invalid(`wrong arguments for ${call.name} (${problems}). Expected: ${JSON.stringify(spec.parameters)}`);
      }
      const parsedArgs = parsed.data as Record<string, unknown>;
      const referenced = isImageTool(call.name)
        ? [parsedArgs.image as string]
        : call.name === "image_search"
          ? (parsedArgs.image_paths as string[])
          : [];
      const missing = referenced.filter((id) => !imageIds.has(id));
      if (missing.length) {
        return invalid(
          `no image named ${missing.join(", ")}. Existing images: ${[...imageIds].join(", ") || "none"}.`,
        );
      }
      return { ...base, args: args as Record<string, unknown>, kind: isImageTool(call.name) ? "image" : "search" };
    },
  };
}
