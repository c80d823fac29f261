// The search tools' argument contract (text_search, image_search, web_visit), and the SearchProvider port they run on (src/core).
import { z } from "zod/v4";

export {
  SearchProviderError,
  type PageContent,
  type PageFailure,
  type RelatedImage,
  type ResultScreenshot,
  type SearchHit,
  type SearchProvider,
  type SearchRequestOptions,
} from "../../src/core/search-provider.js";
import type { SearchProvider } from "../../src/core/search-provider.js";

export const searchToolSchemas = {
  text_search: z.object({
    queries: z.array(z.string().min(1)).min(1).max(5).describe("One to five search queries"),
  }),
  web_visit: z.object({
    urls: z.array(z.string().url()).min(1).max(5).describe("One to five page URLs to read"),
    goal: z.string().optional().describe("What you want to learn from the pages"),
  }),
  image_search: z.object({
    image_paths: z.array(z.string()).min(1).max(3).describe("Image ids to reverse-search, e.g. [\"img_0\"] or a crop [\"img_3\"]; a sandbox path of the code tool (/mnt/data/images/img_3.jpg, /mnt/data/temp_processed_images/…) works too"),
  }),
} as const;
export type SearchToolName = keyof typeof searchToolSchemas;
export const SEARCH_TOOL_NAMES = Object.keys(searchToolSchemas) as SearchToolName[];

const DESCRIPTIONS: Record<SearchToolName, string> = {
  text_search: "Search the web. Returns numbered results with title, URL and snippet, and related images.",
  web_visit: "Read web pages. Returns the readable text of each page (with its URL, for citing); give a goal to focus on what you need. An image URL (a related image or a reverse-search match) is fetched as a new image you can look at and crop.",
  image_search: "Reverse image search: find web pages that contain an image or a crop of it (e.g. to identify a landmark, product or person).",
};

export function searchToolSpecs(names: SearchToolName[]) {
  return names.map((name) => {
    const { $schema: _ignored, ...parameters } = z.toJSONSchema(searchToolSchemas[name]) as Record<string, unknown>;
    return { name, description: DESCRIPTIONS[name], parameters };
  });
}

/** The search tools a set of providers can serve; with none, the model is not offered search at all. */
export function availableSearchTools(providers: SearchProvider[]): SearchToolName[] {
  const names: SearchToolName[] = [];
  if (providers.some((p) => p.textSearch)) names.push("text_search");
  if (providers.some((p) => p.webVisit)) names.push("web_visit");
  if (providers.some((p) => p.imageSearch)) names.push("image_search");
  return names;
}
