// The toolbox: which tools the model is offered, and validation of a call before it runs.
import { describeIssues } from "../src/core/issues.js";
import type { ToolSpec } from "../src/core/protocol.js";
import type { ImageRef, PendingCall, RawToolCall } from "../src/core/state.js";
import type { Coords } from "../src/core/config.js";
import { CODE_TOOL_NAME, codeSchema, codeToolSpec, imageAtPath } from "./code/tool.js";
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
  /** Checks a call against the tools and the run's images; image_search's paths become image ids. */
  validate(call: RawToolCall, index: number, images: ImageRef[]): PendingCall;
}

export interface ToolboxOptions {
  /** Offer the code tool (where the sandbox works and the run allows it). */
  code?: boolean;
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
const toolboxCache = new WeakMap<SearchProvider[], Map<string, Toolbox>>();

/** Specs of the named tools, as offered to the model; deterministic, so a prompt can be rebuilt from the names. */
export function toolSpecs(names: string[], coords: Coords): ToolSpec[] {
  const key = `${coords}\u0000${names.join("\u0000")}`;
  let specs = specCache.get(key);
  if (!specs) {
    const image = buildImageToolSpecs(coords).filter((s) => names.includes(s.name));
    const code = names.includes(CODE_TOOL_NAME) ? [codeToolSpec()] : [];
    const search = searchToolSpecs(SEARCH_TOOL_NAMES.filter((n) => names.includes(n)));
    specs = [...image, ...code, ...search];
    specCache.set(key, specs);
  }
  return specs;
}

/**
 * Image tools are always offered (R1V4 "General" mode); the code tool when asked for; search tools
 * only when a provider serves them.
 */
export function createToolbox(providers: SearchProvider[], coords: Coords, options: ToolboxOptions = {}): Toolbox {
  let byKey = toolboxCache.get(providers);
  if (!byKey) toolboxCache.set(providers, (byKey = new Map()));
  const key = `${coords}${options.code ? "+code" : ""}`;
  let toolbox = byKey.get(key);
  if (!toolbox) byKey.set(key, (toolbox = buildToolbox(providers, coords, Boolean(options.code))));
  return toolbox;
}

/** The toolbox a conversation was started with: the code tool when its system turn offers it. */
export function toolboxOfConversation(providers: SearchProvider[], coords: Coords, conversation: ReadonlyArray<{ role: string; tools?: string[] }>): Toolbox {
  const system = conversation.find((t) => t.role === "system");
  return createToolbox(providers, coords, { code: Boolean(system?.tools?.includes(CODE_TOOL_NAME)) });
}

function schemaOf(name: string) {
  if (isImageTool(name)) return imageToolSchemas[name];
  if (name === CODE_TOOL_NAME) return codeSchema;
  return searchToolSchemas[name as SearchToolName];
}

/**
 * image_search's image_paths as image ids: an id as it is, a sandbox path (/mnt/data/images/img_3.jpg,
 * /mnt/data/temp_processed_images/x.jpg) or an input's path as the image it names; unknown ones stay.
 */
function withImageIds(name: string, args: Record<string, unknown>, images: ImageRef[]): Record<string, unknown> {
  if (name !== "image_search" || !Array.isArray(args.image_paths)) return args;
  const ids = (args.image_paths as string[]).map((p) => (images.some((i) => i.id === p) ? p : (imageAtPath(images, p)?.id ?? p)));
  return { ...args, image_paths: ids };
}

function kindOf(name: string): PendingCall["kind"] {
  return isImageTool(name) ? "image" : name === CODE_TOOL_NAME ? "code" : "search";
}

function buildToolbox(providers: SearchProvider[], coords: Coords, code: boolean): Toolbox {
  const specs = toolSpecs([...IMAGE_TOOL_NAMES, ...(code ? [CODE_TOOL_NAME] : []), ...availableSearchTools(providers)], coords);
  const names = specs.map((s) => s.name);
  return {
    specs,
    names,
    validate(call, index, images) {
      const base = { index, callId: call.id, name: call.name };
      const invalid = (error: string): PendingCall => ({ ...base, args: null, kind: "invalid", error });
      if (!names.includes(call.name)) {
        if (isSearchTool(call.name)) {
          return invalid(`${call.name} is not configured: no search provider for it is set up. Available tools: ${names.join(", ")}.`);
        }
        if (call.name === CODE_TOOL_NAME) {
          return invalid(`the code tool is not available in this run (its sandbox is off or cannot run here). Use the image tools instead: ${names.join(", ")}.`);
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
      const parsed = schemaOf(call.name).safeParse(args);
      if (!parsed.success) {
        const problems = describeIssues(parsed.error.issues, { root: "(arguments)" });
        const spec = specs.find((s) => s.name === call.name)!;
        return invalid(`wrong arguments for ${call.name} (${problems}). Expected: ${JSON.stringify(spec.parameters)}`);
      }
      const checked = withImageIds(call.name, args as Record<string, unknown>, images);
      const parsedArgs = parsed.data as Record<string, unknown>;
      const referenced = isImageTool(call.name)
        ? [parsedArgs.image as string]
        : call.name === "image_search"
          ? (checked.image_paths as string[])
          : [];
      const missing = referenced.filter((id) => !images.some((i) => i.id === id));
      if (missing.length) {
        const known = images.map((i) => i.id).join(", ") || "none";
        return invalid(`no image named ${missing.join(", ")}. Existing images: ${known}${code ? ` (in the code sandbox at /mnt/data/images/img_N.<ext>)` : ""}.`);
      }
      return { ...base, args: checked, kind: kindOf(call.name) };
    },
  };
}
