// A recorded 15-tool-call trajectory (crops of crops interleaved with searches) in both dialects, for tests and the demo.
import sharp from "sharp";
import type { FakeSearchResult } from "./fake-tavily-server.js";
import type { ScriptEntry, ScriptedTurn } from "./scripted-model-server.js";
import type { RecordedRequest } from "./http-recording.js";

export type Dialect = "tools" | "tags";

export const SIGN_PAGE_URL = "https://example.org/harbour-signs";
export const SEARCH_PAGE_URL = "https://example.org/loupe-codes";

/** Search results and pages the fake Tavily server serves for this trajectory. */
export const TRAJECTORY_SEARCH: Record<string, FakeSearchResult[]> = {
  "blue harbour sign white lettering": [
    { title: "Harbour signs of the old port", url: SIGN_PAGE_URL, content: "The blue signs along the harbour carry inspection codes." },
    { title: "Port authority notices", url: "https://example.org/port-notices", content: "Notices are posted in white on blue." },
  ],
  "harbour sign inspection code format": [
    { title: "Inspection code formats", url: SEARCH_PAGE_URL, content: "Codes have the form WORD-NN." },
  ],
  "LOUPE-42 harbour code meaning": [
    { title: "LOUPE-42", url: SEARCH_PAGE_URL, content: "LOUPE-42 marks the north pier lighthouse." },
  ],
};
export const TRAJECTORY_PAGES: Record<string, string> = {
  [SIGN_PAGE_URL]: "Harbour signs\n\nEach blue sign shows the inspection code of its pier. The north pier sign reads LOUPE-42.",
};

/** One model action of the trajectory; `calls` of more than one run in parallel in the tools dialect. */
interface Action {
  think: string;
  calls: Array<{ name: string; arguments: Record<string, unknown> }>;
}

export const TRAJECTORY_ACTIONS: Action[] = [
  { think: "The sign is in the upper left quarter. Crop it.", calls: [{ name: "crop", arguments: { image: "img_0", bbox: [250, 250, 500, 500] } }] },
  { think: "Closer: the top-left part of that crop.", calls: [{ name: "crop", arguments: { image: "img_1", bbox: [0, 0, 500, 500] } }] },
  { think: "What kind of sign is this?", calls: [{ name: "text_search", arguments: { queries: ["blue harbour sign white lettering"] } }] },
  { think: "Zoom into the lettering.", calls: [{ name: "zoom", arguments: { image: "img_2", bbox: [0, 0, 500, 500], factor: 2 } }] },
  {
    think: "Check the lower right for a second sign, and look up the code format.",
    calls: [
      { name: "crop", arguments: { image: "img_0", bbox: [0.5, 0.5, 0.75, 0.75], coords: "norm1" } },
      { name: "text_search", arguments: { queries: ["harbour sign inspection code format"] } },
    ],
  },
  { think: "A small patch of that region in pixels.", calls: [{ name: "crop", arguments: { image: "img_4", bbox: [100, 100, 400, 300], coords: "pixel" } }] },
  { think: "Read the harbour page for the code.", calls: [{ name: "web_visit", arguments: { urls: [SIGN_PAGE_URL], goal: "the code on the north pier sign" } }] },
  { think: "Enhance the patch.", calls: [{ name: "adjust", arguments: { image: "img_5", contrast: 1.5, sharpen: true } }] },
  { think: "The text may be sideways; rotate.", calls: [{ name: "rotate", arguments: { image: "img_6", degrees: 90 } }] },
  { think: "Top half of the rotated patch.", calls: [{ name: "crop", arguments: { image: "img_7", bbox: [0, 0, 1000, 500] } }] },
  { think: "Mirror it to compare.", calls: [{ name: "flip", arguments: { image: "img_8", axis: "horizontal" } }] },
  {
    think: "Mark both signs on the full image.",
    calls: [{ name: "annotate", arguments: { image: "img_0", shapes: [{ type: "box", bbox: [250, 250, 500, 500], label: "sign" }, { type: "point", point: [600, 600], label: "pier" }] } }],
  },
  { think: "A smaller copy of the zoomed lettering.", calls: [{ name: "resize", arguments: { image: "img_3", width: 250 } }] },
  { think: "Confirm what the code means.", calls: [{ name: "text_search", arguments: { queries: ["LOUPE-42 harbour code meaning"] } }] },
];

export const TRAJECTORY_TOOL_CALLS = TRAJECTORY_ACTIONS.reduce((n, a) => n + a.calls.length, 0);
export const TRAJECTORY_ANSWER = "LOUPE-42";

/** Expected pixel size of each image the trajectory makes, img_1 … (the crops of crops check their boxes). */
export const TRAJECTORY_IMAGE_SIZES: Record<string, [number, number]> = {
  img_1: [1000, 750], // rel1000 [250,250,500,500] of 4000×3000
  img_2: [500, 375], // rel1000 [0,0,500,500] of img_1
  img_3: [500, 376], // zoom ×2 of rel1000 [0,0,500,500] of img_2 (250×188)
  img_4: [1000, 750], // norm1 [0.5,0.5,0.75,0.75] of img_0
  img_5: [300, 200], // pixel [100,100,400,300] of img_4
  img_6: [300, 200],
  img_7: [200, 300],
  img_8: [200, 150],
  img_9: [200, 150],
  img_10: [4000, 3000],
  img_11: [250, 188],
};

function finalAnswer(dialect: Dialect) {
  return (req: RecordedRequest): ScriptedTurn => {
    // Answer from what the observations actually said, so a lost observation shows up as a wrong answer.
    const seen = JSON.stringify(req.body?.messages ?? []);
    const code = /sign reads (LOUPE-\d+)/.exec(seen)?.[1] ?? "unknown";
    const confirmed = seen.includes("north pier lighthouse");
    const think = `<think>The page says the north pier sign reads ${code}${confirmed ? ", and the search confirms it" : ""}.</think>`;
    return { content: `${think}\n<answer>${code}</answer>` };
  };
}

function toolsTurn(action: Action): ScriptedTurn {
  return { content: `<think>${action.think}</think>`, toolCalls: action.calls.map((c) => ({ name: c.name, arguments: c.arguments })) };
}

function tagsTurn(think: string, call: Action["calls"][number]): ScriptedTurn {
  return { content: `<think>${think}</think>\n<tool_call>${JSON.stringify({ name: call.name, arguments: call.arguments })}</tool_call>\nignored text after the stop` };
}

/** The script of model turns, ending with the answer. */
export function trajectoryScript(dialect: Dialect): ScriptEntry[] {
  const turns: ScriptEntry[] = [];
  for (const action of TRAJECTORY_ACTIONS) {
    if (dialect === "tools") turns.push(toolsTurn(action));
    else for (const call of action.calls) turns.push(tagsTurn(action.think, call));
  }
  turns.push(finalAnswer(dialect));
  return turns;
}

/** A 4000×3000 JPEG: a harbour-like gradient with a blue sign carrying white lettering. */
export async function harbourImage(width = 4000, height = 3000): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
  <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#87a9c9"/><stop offset="1" stop-color="#2c4a38"/></linearGradient></defs>
  <rect width="100%" height="100%" fill="url(#g)"/>
  <rect x="${width * 0.27}" y="${height * 0.27}" width="${width * 0.2}" height="${height * 0.12}" fill="#1f4fa8"/>
  <text x="${width * 0.29}" y="${height * 0.35}" font-size="${height * 0.06}" font-family="sans-serif" fill="white">LOUPE-42</text>
  <rect x="${width * 0.55}" y="${height * 0.55}" width="${width * 0.1}" height="${height * 0.1}" fill="#d04020"/>
  <circle cx="${width * 0.8}" cy="${height * 0.2}" r="${height * 0.05}" fill="#f0e060"/>
</svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 85 }).toBuffer();
}
