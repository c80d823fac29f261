// Image tools the vision model calls to think with images: argument schemas, tool specs, and the sharp operations.
import sharp, { type Sharp } from "sharp";
import { z } from "zod";
import { COORDS, type Coords } from "../src/core/config.ts";
import type { DecodedImage, ImageMime, ImageStore, StoredImage } from "../src/core/images.ts";

/**
 * How bbox/point numbers are read (Coords):
 * - `pixel`: absolute pixels of the image the call refers to;
 * - `norm1`: fractions 0–1 of width/height;
 * - `rel1000`: 0–1000 relative to width/height (Qwen3-VL's native grounding convention, the default).
 */
export const DEFAULT_COORDS: Coords = "rel1000";
export const DEFAULT_MAX_OUTPUT_PIXELS = 16_000_000;

/** The model called an image tool with bad arguments; the message is written for the model to fix its call. */
export class ToolArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ToolArgumentError";
  }
}

export interface PixelBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

// ---------------------------------------------------------------------------------------------
// Schemas (public contract: tool and field names are what the model is prompted with)
// ---------------------------------------------------------------------------------------------

const coordsSchema = z
  .enum(COORDS)
  .describe(
    'How to read the coordinates: "rel1000" = 0–1000 relative to the image width/height, "norm1" = 0–1 fractions, "pixel" = absolute pixels of this image. Omit to use the default given in the tool description.',
  );

const imageIdSchema = z
  .string()
  .min(1)
  .describe('Id of the image to use, e.g. "img_0" (the input image) or "img_3" (an image an earlier tool call produced).');

const bboxSchema = z
  .array(z.number())
  .length(4)
  .describe("[x1, y1, x2, y2]: top-left corner then bottom-right corner, with x1 < x2 and y1 < y2.");

const pointSchema = z.array(z.number()).length(2).describe("[x, y]");

// Colour names librsvg draws; an unknown name would silently draw nothing, so the list is closed.
const COLOUR_NAMES = [
  "red", "green", "blue", "yellow", "orange", "purple", "magenta", "fuchsia", "cyan", "aqua", "lime",
  "pink", "hotpink", "white", "black", "gray", "grey", "silver", "brown", "gold", "violet", "navy",
  "teal", "maroon", "olive", "crimson", "coral", "salmon", "orangered", "deepskyblue", "dodgerblue",
  "turquoise", "springgreen", "chartreuse", "indigo", "khaki",
] as const;
const COLOUR_SET = new Set<string>(COLOUR_NAMES);
const HEX_COLOUR = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i;

const colourSchema = z
  .string()
  .refine((c) => HEX_COLOUR.test(c.trim()) || COLOUR_SET.has(c.trim().toLowerCase()), {
    message: `unknown colour; use "#rrggbb" hex or one of: ${COLOUR_NAMES.join(", ")}`,
  })
  .describe('Colour as "#rrggbb" or a basic name such as "red", "lime", "cyan", "yellow", "magenta".');

const labelSchema = z.string().max(200).describe("Short text drawn next to the shape.");

export const cropSchema = z.object({
  image: imageIdSchema,
  bbox: bboxSchema,
  coords: coordsSchema.optional(),
});

export const zoomSchema = z.object({
  image: imageIdSchema,
  bbox: bboxSchema,
  factor: z
    .number()
    .min(1)
    .max(16)
    .optional()
    .describe(
      "Enlargement factor (1–16). Default: enough to bring the region's longer side to about 1024 px, but at least 2× and at most 8×.",
    ),
  coords: coordsSchema.optional(),
});

export const rotateSchema = z.object({
  image: imageIdSchema,
  degrees: z
    .number()
    .describe("Clockwise rotation in degrees; negative turns counter-clockwise. Any angle; 90, 180 and 270 are exact."),
});

export const flipSchema = z.object({
  image: imageIdSchema,
  axis: z
    .enum(["horizontal", "vertical"])
    .describe('"horizontal" mirrors left↔right, "vertical" mirrors top↔bottom.'),
});

export const adjustSchema = z
  .object({
    image: imageIdSchema,
    brightness: z.number().gt(0).max(10).optional().describe("Brightness multiplier: 1 = unchanged, 1.5 = brighter, 0.7 = darker."),
    contrast: z.number().gt(0).max(10).optional().describe("Contrast multiplier around mid-grey: 1 = unchanged, 1.5 = more contrast, 0.7 = less."),
    sharpen: z
      .union([z.boolean(), z.number().min(0.3).max(10)])
      .optional()
      .describe("true for a mild sharpen, or a Gaussian sigma (0.3–10) for a stronger one."),
    grayscale: z.boolean().optional().describe("Convert to grayscale."),
    normalize: z.boolean().optional().describe("Stretch contrast automatically to the full range (good for faded or dark images)."),
  })
  .refine(
    (a) =>
      (a.brightness !== undefined && a.brightness !== 1) ||
      (a.contrast !== undefined && a.contrast !== 1) ||
      (a.sharpen !== undefined && a.sharpen !== false) ||
      a.grayscale === true ||
      a.normalize === true,
    {
      message:
        "no adjustment requested; give at least one of brightness (≠ 1), contrast (≠ 1), sharpen, grayscale: true, normalize: true",
    },
  );

const shapeBase = { label: labelSchema.optional(), color: colourSchema.optional() };

export const annotateSchema = z.object({
  image: imageIdSchema,
  shapes: z
    .array(
      z.discriminatedUnion("type", [
        z.object({ type: z.literal("box"), bbox: bboxSchema, ...shapeBase }),
        z.object({ type: z.literal("point"), point: pointSchema, ...shapeBase }),
        z.object({ type: z.literal("line"), from: pointSchema, to: pointSchema, ...shapeBase }),
      ]),
    )
    .min(1)
    .max(100)
    .describe("Shapes to draw (1–100)."),
  coords: coordsSchema.optional(),
});

export const resizeSchema = z
  .object({
    image: imageIdSchema,
    width: z.number().int().min(1).max(16384).optional().describe("Target width in pixels."),
    height: z.number().int().min(1).max(16384).optional().describe("Target height in pixels."),
  })
  .refine((a) => a.width !== undefined || a.height !== undefined, {
    message: "give width, height, or both (in pixels)",
  });

export const imageToolSchemas = {
  crop: cropSchema,
  zoom: zoomSchema,
  rotate: rotateSchema,
  flip: flipSchema,
  adjust: adjustSchema,
  annotate: annotateSchema,
  resize: resizeSchema,
} as const;

export type ImageToolName = keyof typeof imageToolSchemas;
export const IMAGE_TOOL_NAMES = Object.keys(imageToolSchemas) as ImageToolName[];

export type CropArgs = z.infer<typeof cropSchema>;
export type ZoomArgs = z.infer<typeof zoomSchema>;
export type RotateArgs = z.infer<typeof rotateSchema>;
export type FlipArgs = z.infer<typeof flipSchema>;
export type AdjustArgs = z.infer<typeof adjustSchema>;
export type AnnotateArgs = z.infer<typeof annotateSchema>;
export type ResizeArgs = z.infer<typeof resizeSchema>;

// Shown to the model when its arguments fail validation, so it can copy the shape.
const EXPECTED_SHAPE: Record<ImageToolName, string> = {
  crop: '{"image": "img_0", "bbox": [x1, y1, x2, y2], "coords"?: "rel1000" | "norm1" | "pixel"}',
  zoom: '{"image": "img_0", "bbox": [x1, y1, x2, y2], "factor"?: number 1–16, "coords"?: "rel1000" | "norm1" | "pixel"}',
  rotate: '{"image": "img_0", "degrees": number (clockwise)}',
  flip: '{"image": "img_0", "axis": "horizontal" | "vertical"}',
  adjust:
    '{"image": "img_0", "brightness"?: number, "contrast"?: number, "sharpen"?: true | sigma, "grayscale"?: true, "normalize"?: true} with at least one adjustment',
  annotate:
    '{"image": "img_0", "shapes": [{"type": "box", "bbox": [x1, y1, x2, y2], "label"?: "…", "color"?: "red"}, {"type": "point", "point": [x, y]}, {"type": "line", "from": [x, y], "to": [x, y]}], "coords"?: "rel1000" | "norm1" | "pixel"}',
  resize: '{"image": "img_0", "width"?: integer, "height"?: integer} with at least one of width/height',
};

function coordsHelp(defaultCoords: Coords): string {
  const def =
    defaultCoords === "rel1000"
      ? "0–1000 relative to the image (0 = left/top edge, 1000 = right/bottom edge), whatever its pixel size"
      : defaultCoords === "norm1"
        ? "0–1 fractions of the image width/height"
        : "absolute pixels of that image";
  return `Coordinates are by default ${def}; set coords to "rel1000", "norm1" or "pixel" to use another convention. They always refer to the image named in "image".`;
}

const RESULT_HELP =
  'The result is a new image with its own id (img_N), which you can look at and pass to any image tool again (e.g. crop a crop); coordinates in later calls refer to that new image.';

/** Tool specs for the model, with descriptions stating `defaultCoords` as the default convention. */
export function buildImageToolSpecs(
  defaultCoords: Coords = DEFAULT_COORDS,
): Array<{ name: ImageToolName; description: string; parameters: Record<string, unknown> }> {
  const coords = coordsHelp(defaultCoords);
  const descriptions: Record<ImageToolName, string> = {
    crop: `Cut a rectangular region out of an image at its full resolution, to inspect a detail. bbox is [x1, y1, x2, y2] (top-left and bottom-right corners). ${coords} ${RESULT_HELP}`,
    zoom: `Crop a region and enlarge it (Lanczos) so small text, digits or distant objects become legible. By default the region's longer side is enlarged to about 1024 px (at least 2×, at most 8×); give factor to choose. ${coords} ${RESULT_HELP}`,
    rotate: `Rotate an image clockwise by degrees (negative = counter-clockwise), e.g. to read sideways or upside-down text or straighten a tilted document. 90/180/270 are exact; other angles enlarge the canvas and fill the corners with white (transparent if the image has transparency). ${RESULT_HELP}`,
    flip: `Mirror an image: "horizontal" swaps left and right, "vertical" swaps top and bottom (e.g. for mirrored text). ${RESULT_HELP}`,
    adjust: `Change brightness or contrast, sharpen, convert to grayscale or auto-normalize contrast, to bring out detail in dark, faded or blurry images. Give at least one adjustment. ${RESULT_HELP}`,
    annotate: `Draw boxes, points and lines (optionally labelled) on a copy of an image, to mark what you found, count objects or check alignment. ${coords} ${RESULT_HELP}`,
    resize: `Scale a whole image to a width and/or height in pixels. With only one of them the aspect ratio is kept; with both, the image is fitted inside width×height keeping its aspect ratio. ${RESULT_HELP}`,
  };
  return IMAGE_TOOL_NAMES.map((name) => {
    const { $schema: _ignored, ...parameters } = z.toJSONSchema(imageToolSchemas[name]) as Record<string, unknown>;
    return { name, description: descriptions[name], parameters };
  });
}

export const imageToolSpecs = buildImageToolSpecs(DEFAULT_COORDS);

// ---------------------------------------------------------------------------------------------
// Coordinates
// ---------------------------------------------------------------------------------------------

// Boxes a little past the edge are model imprecision, not intent: accept and clamp them.
const EDGE_TOLERANCE = 0.005;
// 0.3 * 4000 = 1200.0000000000002 must not ceil to 1201.
const FLOAT_SNAP = 1e-6;

function snap(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - r) < FLOAT_SNAP ? r : v;
}

function scaleOf(coords: Coords, width: number, height: number): { sx: number; sy: number } {
  if (coords === "pixel") return { sx: 1, sy: 1 };
  if (coords === "norm1") return { sx: width, sy: height };
  return { sx: width / 1000, sy: height / 1000 };
}

function rangeText(coords: Coords, width: number, height: number): string {
  if (coords === "rel1000") return "rel1000 coordinates must be within 0–1000";
  if (coords === "norm1") return "norm1 coordinates must be within 0–1";
  return `pixel coordinates must be within 0–${width} for x and 0–${height} for y`;
}

function fmtList(values: readonly number[]): string {
  return `[${values.map((v) => String(v)).join(", ")}]`;
}

/** Suggests the convention the model probably meant when its numbers do not fit the one in force. */
function conventionHint(values: readonly number[], coords: Coords, width: number, height: number): string {
  const max = Math.max(...values);
  const min = Math.min(...values);
  if (min < 0) return "";
  if (coords !== "pixel" && max > (coords === "norm1" ? 1 : 1000) && max <= Math.max(width, height)) {
    return ' If these are pixel coordinates, also pass coords: "pixel".';
  }
  if (coords === "norm1" && max <= 1000) return ' If these are 0–1000 relative coordinates, pass coords: "rel1000".';
  return "";
}

/**
 * Converts a model-supplied [x1, y1, x2, y2] into an integer pixel rectangle of an image of
 * `width`×`height`: starts are floored and ends ceiled so the region asked for is never cut.
 */
export function toPixelBox(bbox: number[], coords: Coords, width: number, height: number, imageId: string): PixelBox {
  const shapeHelp = "Give [x1, y1, x2, y2] with x1 < x2 and y1 < y2.";
  if (!Array.isArray(bbox) || bbox.length !== 4 || bbox.some((v) => typeof v !== "number" || !Number.isFinite(v))) {
    throw new ToolArgumentError(
      `bbox ${Array.isArray(bbox) ? fmtList(bbox) : JSON.stringify(bbox)} is not 4 finite numbers. ${shapeHelp}`,
    );
  }
  const [x1, y1, x2, y2] = bbox as [number, number, number, number];
  if (x1 >= x2 || y1 >= y2) {
    throw new ToolArgumentError(
      `bbox ${fmtList(bbox)} is empty or reversed: ${x1 >= x2 ? `x2 (${x2}) must be greater than x1 (${x1})` : `y2 (${y2}) must be greater than y1 (${y1})`}. The box is two corners [x1, y1, x2, y2], not [x, y, width, height]. ${shapeHelp}`,
    );
  }
  const { sx, sy } = scaleOf(coords, width, height);
  const px1 = snap(x1 * sx);
  const py1 = snap(y1 * sy);
  const px2 = snap(x2 * sx);
  const py2 = snap(y2 * sy);
  const tolX = width * EDGE_TOLERANCE;
  const tolY = height * EDGE_TOLERANCE;
  if (px1 < -tolX || py1 < -tolY || px2 > width + tolX || py2 > height + tolY) {
    throw new ToolArgumentError(
      `bbox ${fmtList(bbox)} goes outside ${imageId} (${rangeText(coords, width, height)}; ${imageId} is ${width}×${height} pixels). ${shapeHelp}${conventionHint(bbox, coords, width, height)}`,
    );
  }
  const cx1 = Math.max(0, px1);
  const cy1 = Math.max(0, py1);
  const cx2 = Math.min(width, px2);
  const cy2 = Math.min(height, py2);
  if (cx2 - cx1 < 1 || cy2 - cy1 < 1) {
    const hint =
      coords === "rel1000" && Math.max(...bbox) <= 1
        ? ' These look like 0–1 fractions: pass coords: "norm1", or multiply by 1000.'
        : "";
    throw new ToolArgumentError(
      `bbox ${fmtList(bbox)} covers less than one pixel of ${imageId} (${imageId} is ${width}×${height} pixels). Give a larger box.${hint}`,
    );
  }
  const left = Math.min(width - 1, Math.floor(cx1));
  const top = Math.min(height - 1, Math.floor(cy1));
  const right = Math.max(left + 1, Math.min(width, Math.ceil(cx2)));
  const bottom = Math.max(top + 1, Math.min(height, Math.ceil(cy2)));
  return { left, top, width: right - left, height: bottom - top };
}

function toPixelPoint(
  point: number[],
  coords: Coords,
  width: number,
  height: number,
  imageId: string,
  what: string,
): { x: number; y: number } {
  const [x, y] = point as [number, number];
  const { sx, sy } = scaleOf(coords, width, height);
  const px = snap(x * sx);
  const py = snap(y * sy);
  if (px < -width * EDGE_TOLERANCE || py < -height * EDGE_TOLERANCE || px > width * (1 + EDGE_TOLERANCE) || py > height * (1 + EDGE_TOLERANCE)) {
    throw new ToolArgumentError(
      `${what} ${fmtList(point)} is outside ${imageId} (${rangeText(coords, width, height)}; ${imageId} is ${width}×${height} pixels). Give [x, y] inside the image.${conventionHint(point, coords, width, height)}`,
    );
  }
  return { x: Math.min(width, Math.max(0, px)), y: Math.min(height, Math.max(0, py)) };
}

// ---------------------------------------------------------------------------------------------
// Running an operation
// ---------------------------------------------------------------------------------------------

export interface ImageOpOptions {
  /** The id the model used for the source image; only used in messages. */
  imageId: string;
  defaultCoords?: Coords;
  maxOutputPixels?: number;
}

export interface ImageOpResult {
  image: StoredImage;
  /** Short description for ImageRef.op, e.g. `crop [1000,750,3000,2250]`. */
  op: string;
  /** The source pixel rectangle, for crop and zoom. */
  box?: PixelBox;
  /** Pixel statistics of the result, for blank-crop detection (see {@link ImageStats}). */
  stats: ImageStats;
}

/** Mean and standard deviation (0–255) averaged over colour channels, ignoring alpha. */
export interface ImageStats {
  mean: number;
  stdev: number;
}

// Fixed encoder settings so the same operation on the same source always yields the same bytes
// (and so the same sha256 in the store). Huffman-table optimisation is off: it is an extra pass
// over the coefficients that doubled the encode time of a 1536×864 crop for files ~25% smaller
// (see BENCHMARKS.md, image work); the output stays deterministic either way.
export const JPEG_OPTIONS = {
  quality: 92,
  mozjpeg: false,
  progressive: false,
  chromaSubsampling: "4:4:4", // small coloured text smears under 4:2:0
  trellisQuantisation: false,
  overshootDeringing: false,
  optimiseScans: false,
  optimiseCoding: false,
  quantisationTable: 0,
} as const;
const PNG_OPTIONS = { compressionLevel: 6, adaptiveFiltering: false, progressive: false, palette: false } as const;

interface OpContext {
  source: StoredImage;
  decoded: DecodedImage;
  imageId: string;
  coords: Coords;
  maxOutputPixels: number;
}

interface Planned {
  pipeline: Sharp;
  op: string;
  box?: PixelBox;
  /** Draws in colour, so a grayscale source must become RGB. */
  addsColour?: boolean;
}

function fromRaw(d: DecodedImage): Sharp {
  // The store already enforced its pixel limit when it decoded the source.
  return sharp(d.data, { raw: { width: d.width, height: d.height, channels: d.channels }, limitInputPixels: false });
}

function hasAlpha(d: DecodedImage): boolean {
  return d.channels === 2 || d.channels === 4;
}

function fmtNum(n: number): string {
  return String(Math.round(n * 100) / 100);
}

function boxText(b: PixelBox): string {
  return `[${b.left},${b.top},${b.left + b.width},${b.top + b.height}]`;
}

function planCrop(a: CropArgs, ctx: OpContext): Planned {
  const box = toPixelBox(a.bbox, a.coords ?? ctx.coords, ctx.decoded.width, ctx.decoded.height, ctx.imageId);
  return { pipeline: fromRaw(ctx.decoded).extract(box), op: `crop ${boxText(box)}`, box };
}

function planZoom(a: ZoomArgs, ctx: OpContext): Planned {
  const box = toPixelBox(a.bbox, a.coords ?? ctx.coords, ctx.decoded.width, ctx.decoded.height, ctx.imageId);
  // Enough magnification to matter to a vision encoder, without inventing a huge blurry canvas.
  let factor = a.factor ?? Math.min(8, Math.max(2, 1024 / Math.max(box.width, box.height)));
  let outW = Math.max(1, Math.round(box.width * factor));
  let outH = Math.max(1, Math.round(box.height * factor));
  if (outW * outH > ctx.maxOutputPixels) {
    factor = Math.sqrt(ctx.maxOutputPixels / (box.width * box.height));
    outW = Math.max(1, Math.floor(box.width * factor));
    outH = Math.max(1, Math.floor(box.height * factor));
  }
  const pipeline = fromRaw(ctx.decoded)
    .extract(box)
    .resize(outW, outH, { fit: "fill", kernel: "lanczos3" });
  return { pipeline, op: `zoom ${boxText(box)} ×${fmtNum(outW / box.width)}`, box };
}

/** The canvas a rotation by `degrees` (0–360) needs: exact for right angles, an upper bound otherwise. */
function rotatedSize(width: number, height: number, degrees: number): { width: number; height: number } {
  if (degrees % 180 === 0) return { width, height };
  if (degrees % 90 === 0) return { width: height, height: width };
  const rad = (degrees * Math.PI) / 180;
  const cos = Math.abs(Math.cos(rad));
  const sin = Math.abs(Math.sin(rad));
  return { width: Math.ceil(width * cos + height * sin), height: Math.ceil(width * sin + height * cos) };
}

/**
 * The source scaled so that its rotation fits `limit` pixels (found before anything is allocated),
 * or undefined when it fits as it is.
 */
function rotationScale(width: number, height: number, degrees: number, limit: number): { width: number; height: number; scale: number } | undefined {
  const canvas = rotatedSize(width, height, degrees);
  if (canvas.width * canvas.height <= limit) return undefined;
  let scale = Math.sqrt(limit / (canvas.width * canvas.height));
  for (;;) {
    const w = Math.max(1, Math.floor(width * scale));
    const h = Math.max(1, Math.floor(height * scale));
    const scaled = rotatedSize(w, h, degrees);
    if (scaled.width * scaled.height <= limit || (w === 1 && h === 1)) return { width: w, height: h, scale: w / width };
    scale *= 0.99;
  }
}

async function planRotate(a: RotateArgs, ctx: OpContext): Promise<Planned> {
  let degrees = ((a.degrees % 360) + 360) % 360;
  if (Math.abs(degrees - Math.round(degrees)) < 1e-9) degrees = Math.round(degrees) % 360;
  const background = hasAlpha(ctx.decoded)
    ? { r: 255, g: 255, b: 255, alpha: 0 }
    : { r: 255, g: 255, b: 255, alpha: 1 };
  const op = `rotate ${fmtNum(a.degrees)}°`;
  // Like zoom, the canvas is held to maxOutputPixels; a right angle never needs more pixels than its
  // source, which the store has already accepted, so the source's own size is always allowed.
  const limit = Math.max(ctx.maxOutputPixels, ctx.decoded.width * ctx.decoded.height);
  const fit = rotationScale(ctx.decoded.width, ctx.decoded.height, degrees, limit);
  if (!fit) return { pipeline: fromRaw(ctx.decoded).rotate(degrees, { background }), op };
  // Downscaled first, in a pipeline of its own, so the full-size canvas is never allocated.
  const { data, info } = await fromRaw(ctx.decoded)
    .resize(fit.width, fit.height, { fit: "fill", kernel: "lanczos3" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const scaled: DecodedImage = { data, width: info.width, height: info.height, channels: info.channels as DecodedImage["channels"] };
  return {
    pipeline: fromRaw(scaled).rotate(degrees, { background }),
    op: `${op} (scaled ×${Number(fit.scale.toPrecision(2))} to keep within ${limit.toLocaleString("en-US")} pixels: crop the part you need first to rotate it at full size)`,
  };
}

function planFlip(a: FlipArgs, ctx: OpContext): Planned {
  const base = fromRaw(ctx.decoded);
  // sharp's flip() is top↔bottom and flop() is left↔right.
  return { pipeline: a.axis === "horizontal" ? base.flop() : base.flip(), op: `flip ${a.axis}` };
}

function planAdjust(a: AdjustArgs, ctx: OpContext): Planned {
  let p = fromRaw(ctx.decoded);
  const parts: string[] = [];
  if (a.grayscale) {
    // Without b-w output sharp writes three identical channels.
    p = p.grayscale().toColourspace("b-w");
    parts.push("grayscale");
  }
  if (a.brightness !== undefined && a.brightness !== 1) {
    p = p.modulate({ brightness: a.brightness });
    parts.push(`brightness×${fmtNum(a.brightness)}`);
  }
  if (a.contrast !== undefined && a.contrast !== 1) {
    // Pivot on mid-grey so contrast does not also shift brightness.
    p = p.linear(a.contrast, 128 * (1 - a.contrast));
    parts.push(`contrast×${fmtNum(a.contrast)}`);
  }
  if (a.normalize) {
    p = p.normalise();
    parts.push("normalize");
  }
  if (a.sharpen !== undefined && a.sharpen !== false) {
    p = a.sharpen === true ? p.sharpen() : p.sharpen({ sigma: a.sharpen });
    parts.push(a.sharpen === true ? "sharpen" : `sharpen σ${fmtNum(a.sharpen)}`);
  }
  return { pipeline: p, op: `adjust ${parts.join(" ")}` };
}

// Deterministic, high-visibility defaults so several unlabelled shapes stay distinguishable.
const DEFAULT_COLOURS: readonly [string, ...string[]] = ["red", "lime", "cyan", "yellow", "magenta", "orange", "dodgerblue", "white"];

function escapeXml(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, "")
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

type AnnotationShape = AnnotateArgs["shapes"][number];

/** How marks are drawn on one image: stroke and label sizes scale with its shorter side. */
interface AnnotationStyle {
  W: number;
  H: number;
  stroke: number;
  fontSize: number;
  outline: number;
}

function annotationStyle(W: number, H: number): AnnotationStyle {
  const short = Math.min(W, H);
  const fontSize = Math.min(96, Math.max(12, Math.round(short / 32)));
  return { W, H, stroke: Math.max(2, Math.round(short / 250)), fontSize, outline: Math.max(1, Math.round(fontSize / 8)) };
}

/** Rough advance width; only used to keep labels inside the image. */
function textWidth(style: AnnotationStyle, text: string): number {
  return 0.62 * style.fontSize * text.length;
}

/** A label at (x, y), moved inside the image; nothing when there is no text. */
function labelSvg(style: AnnotationStyle, text: string | undefined, x: number, y: number, colour: string, anchor: "start" | "end" = "start"): string[] {
  if (!text) return [];
  const { W, H, fontSize, outline } = style;
  const est = textWidth(style, text);
  const tx = anchor === "start" ? Math.max(2, Math.min(x, W - est - 2)) : Math.min(W - 2, Math.max(x, est + 2));
  const ty = Math.max(fontSize, Math.min(y, H - 2));
  return [
    `<text x="${fmtNum(tx)}" y="${fmtNum(ty)}" text-anchor="${anchor}" font-family="DejaVu Sans, Arial, sans-serif" font-size="${fontSize}" font-weight="bold" fill="${colour}" stroke="black" stroke-width="${outline}" paint-order="stroke">${escapeXml(text)}</text>`,
  ];
}

/** One shape and its label as SVG elements, in the image's pixels. */
function shapeSvg(shape: AnnotationShape, colour: string, style: AnnotationStyle, coords: Coords, imageId: string): string[] {
  const { W, H, stroke, fontSize } = style;
  if (shape.type === "box") {
    const b = toPixelBox(shape.bbox, coords, W, H, imageId);
    const above = b.top - stroke - 2 >= fontSize;
    return [
      `<rect x="${b.left + stroke / 2}" y="${b.top + stroke / 2}" width="${Math.max(1, b.width - stroke)}" height="${Math.max(1, b.height - stroke)}" fill="none" stroke="${colour}" stroke-width="${stroke}"/>`,
      ...labelSvg(style, shape.label, b.left, above ? b.top - stroke - 2 : b.top + stroke + fontSize, colour),
    ];
  }
  if (shape.type === "point") {
    const p = toPixelPoint(shape.point, coords, W, H, imageId, "point");
    const r = stroke * 3;
    // Put the label on whichever side of the point it fits, so it never covers the point.
    const fitsRight = shape.label === undefined || p.x + r + 2 + textWidth(style, shape.label) <= W;
    return [
      `<circle cx="${fmtNum(p.x)}" cy="${fmtNum(p.y)}" r="${r}" fill="${colour}" stroke="black" stroke-width="${Math.max(1, stroke / 2)}"/>`,
      ...labelSvg(style, shape.label, fitsRight ? p.x + r + 2 : p.x - r - 2, p.y + fontSize / 3, colour, fitsRight ? "start" : "end"),
    ];
  }
  const from = toPixelPoint(shape.from, coords, W, H, imageId, "from");
  const to = toPixelPoint(shape.to, coords, W, H, imageId, "to");
  return [
    `<line x1="${fmtNum(from.x)}" y1="${fmtNum(from.y)}" x2="${fmtNum(to.x)}" y2="${fmtNum(to.y)}" stroke="${colour}" stroke-width="${stroke}" stroke-linecap="round"/>`,
    ...labelSvg(style, shape.label, (from.x + to.x) / 2 + stroke, (from.y + to.y) / 2 - stroke, colour),
  ];
}

function planAnnotate(a: AnnotateArgs, ctx: OpContext): Planned {
  const { width: W, height: H } = ctx.decoded;
  const coords = a.coords ?? ctx.coords;
  const style = annotationStyle(W, H);
  const elements = a.shapes.flatMap((shape, i) => {
    const colour = (shape.color ?? DEFAULT_COLOURS[i % DEFAULT_COLOURS.length] ?? DEFAULT_COLOURS[0]).trim().toLowerCase();
    try {
      return shapeSvg(shape, colour, style, coords, ctx.imageId);
    } catch (err) {
      if (err instanceof ToolArgumentError) throw new ToolArgumentError(`shapes[${i}]: ${err.message}`);
      throw err;
    }
  });

  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${elements.join("")}</svg>`;
  let pipeline = fromRaw(ctx.decoded).composite([{ input: Buffer.from(svg, "utf8"), top: 0, left: 0 }]);
  // Compositing adds an alpha channel; an opaque source should stay opaque.
  if (!hasAlpha(ctx.decoded)) pipeline = pipeline.removeAlpha();
  const n = a.shapes.length;
  return { pipeline, op: `annotate ${n} shape${n === 1 ? "" : "s"}`, addsColour: true };
}

function planResize(a: ResizeArgs, ctx: OpContext): Planned {
  const { width: W, height: H } = ctx.decoded;
  let outW: number;
  let outH: number;
  if (a.width !== undefined && a.height !== undefined) {
    const scale = Math.min(a.width / W, a.height / H);
    outW = Math.max(1, Math.round(W * scale));
    outH = Math.max(1, Math.round(H * scale));
  } else if (a.width !== undefined) {
    outW = a.width;
    outH = Math.max(1, Math.round((H * a.width) / W));
  } else {
    outH = a.height!;
    outW = Math.max(1, Math.round((W * outH) / H));
  }
  if (outW * outH > ctx.maxOutputPixels) {
    throw new ToolArgumentError(
      `resize of ${ctx.imageId} (${W}×${H}) to ${outW}×${outH} would make ${(outW * outH).toLocaleString("en-US")} pixels, over the limit of ${ctx.maxOutputPixels.toLocaleString("en-US")}. Ask for a smaller width/height, or crop or zoom into the region you need instead.`,
    );
  }
  const pipeline = fromRaw(ctx.decoded).resize(outW, outH, { fit: "fill", kernel: "lanczos3" });
  return { pipeline, op: `resize ${outW}×${outH}` };
}

const PLANNERS: { [K in ImageToolName]: (args: z.infer<(typeof imageToolSchemas)[K]>, ctx: OpContext) => Planned | Promise<Planned> } = {
  crop: planCrop,
  zoom: planZoom,
  rotate: planRotate,
  flip: planFlip,
  adjust: planAdjust,
  annotate: planAnnotate,
  resize: planResize,
};

function pathText(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || "(arguments)";
}

/**
 * The image tools' own wording of zod's issues (not describeIssues): the model reads a bulleted list
 * with array indexes as [i], size checks on a value of the wrong type dropped, unknown arguments named,
 * and the expected shape, which is what it needs to fix a call.
 */
function formatIssues(name: ImageToolName, issues: readonly z.core.$ZodIssue[], args: unknown): string {
  // zod also reports size checks on a value whose type is already wrong; those only add noise.
  const typeFailed = new Set(issues.filter((i) => i.code === "invalid_type").map((i) => pathText(i.path)));
  const lines = issues
    .filter((i) => i.code === "invalid_type" || !typeFailed.has(pathText(i.path)))
    .map((i) => {
      const message =
        i.code === "invalid_type" && /received undefined$/.test(i.message)
          ? `missing (required, expected ${i.expected})`
          : i.message;
      return `- ${pathText(i.path)}: ${message}`;
    });
  let unknown = "";
  if (args && typeof args === "object" && !Array.isArray(args)) {
    const shape = (imageToolSchemas[name] as unknown as { shape?: Record<string, unknown> }).shape ?? {};
    const extra = Object.keys(args).filter((k) => !(k in shape));
    if (extra.length) unknown = `\nUnknown argument${extra.length === 1 ? "" : "s"} ignored: ${extra.join(", ")}.`;
  }
  return `Invalid arguments for ${name}:\n${lines.join("\n")}${unknown}\nExpected: ${EXPECTED_SHAPE[name]}`;
}

/** Parses the model's arguments for an image tool, throwing a ToolArgumentError the model can act on. */
export function parseImageToolArgs<K extends ImageToolName>(name: K, args: unknown): z.infer<(typeof imageToolSchemas)[K]> {
  const schema = imageToolSchemas[name];
  if (!schema) {
    throw new ToolArgumentError(`unknown image tool "${String(name)}"; available: ${IMAGE_TOOL_NAMES.join(", ")}`);
  }
  const parsed = schema.safeParse(args);
  if (!parsed.success) throw new ToolArgumentError(formatIssues(name, parsed.error.issues, args));
  return parsed.data as z.infer<(typeof imageToolSchemas)[K]>;
}

async function encode(pipeline: Sharp, source: StoredImage, alpha: boolean): Promise<{ data: Buffer; mime: ImageMime; width: number; height: number }> {
  const jpeg = source.mime === "image/jpeg" && !alpha;
  const out = jpeg ? pipeline.jpeg(JPEG_OPTIONS) : pipeline.png(PNG_OPTIONS);
  const { data, info } = await out.toBuffer({ resolveWithObject: true });
  return { data, mime: jpeg ? "image/jpeg" : "image/png", width: info.width, height: info.height };
}

/**
 * Runs one image tool on `source` and stores the result. Works from the store's decoded-pixel
 * cache, so many crops of one large photo decode it only once.
 */
export async function runImageOp(
  store: ImageStore,
  name: ImageToolName,
  args: unknown,
  source: StoredImage,
  options: ImageOpOptions,
): Promise<ImageOpResult> {
  const parsed = parseImageToolArgs(name, args);
  const decoded = await store.decoded(source);
  const ctx: OpContext = {
    source,
    decoded,
    imageId: options.imageId,
    coords: options.defaultCoords ?? DEFAULT_COORDS,
    maxOutputPixels: options.maxOutputPixels ?? DEFAULT_MAX_OUTPUT_PIXELS,
  };
  const planner = PLANNERS[name] as (args: unknown, ctx: OpContext) => Planned | Promise<Planned>;
  const planned = await planner(parsed, ctx);
  let pipeline = planned.pipeline;
  // sharp writes a grayscale source as three identical channels unless told otherwise.
  if (!planned.addsColour && decoded.channels <= 2) pipeline = pipeline.toColourspace("b-w");
  const encoded = await encode(pipeline, source, hasAlpha(decoded));
  const image = await store.put(encoded.data, { mime: encoded.mime, width: encoded.width, height: encoded.height });
  if (planned.box) {
    // A crop or zoom shows the source's pixels in the box: their statistics come from the pixels in
    // hand, with no second decode of the result.
    return { image, op: planned.op, box: planned.box, stats: regionStats(decoded, planned.box) };
  }
  return { image, op: planned.op, stats: await bufferStats(encoded.data, store.maxInputPixels) };
}

/** At most about this many pixels are sampled for a region's statistics. */
const STATS_SAMPLES = 1 << 14;

/**
 * Statistics of a rectangle of decoded pixels, read on a regular grid of at most ~16k pixels
 * (every pixel of a box up to 128×128): plenty to tell a blank crop (std dev under 3) from one with
 * detail, at a fixed, small cost whatever the box's size; deterministic. Population standard
 * deviation per colour channel, averaged over the colour channels.
 */
export function regionStats(d: DecodedImage, box: PixelBox): ImageStats {
  const colour = hasAlpha(d) ? d.channels - 1 : d.channels;
  const step = Math.max(1, Math.ceil(Math.sqrt((box.width * box.height) / STATS_SAMPLES)));
  const data = d.data;
  const channels = d.channels;
  const pixelStep = step * channels;
  let n = 0;
  // Sums and sums of squares of the (up to three) colour channels.
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let q0 = 0;
  let q1 = 0;
  let q2 = 0;
  for (let y = box.top; y < box.top + box.height; y += step) {
    const rowStart = (y * d.width + box.left) * channels;
    const rowEnd = rowStart + box.width * channels;
    for (let i = rowStart; i < rowEnd; i += pixelStep) {
      const a = data[i]!;
      s0 += a;
      q0 += a * a;
      if (colour > 1) {
        const b = data[i + 1]!;
        const c = data[i + 2]!;
        s1 += b;
        q1 += b * b;
        s2 += c;
        q2 += c * c;
      }
      n++;
    }
  }
  const sums = colour > 1 ? [s0, s1, s2] : [s0];
  const squares = colour > 1 ? [q0, q1, q2] : [q0];
  let mean = 0;
  let stdev = 0;
  for (let c = 0; c < sums.length; c++) {
    const m = sums[c]! / n;
    mean += m;
    stdev += Math.sqrt(Math.max(0, squares[c]! / n - m * m));
  }
  return { mean: mean / sums.length, stdev: stdev / sums.length };
}

/** Mean and standard deviation (0–255) of encoded image bytes, as imageStats computes them. */
export async function bufferStats(bytes: Buffer, maxInputPixels: number): Promise<ImageStats> {
  const img = sharp(bytes, { limitInputPixels: maxInputPixels });
  const [meta, stats] = await Promise.all([img.metadata(), img.stats()]);
  let channels = stats.channels;
  if (meta.hasAlpha && channels.length > 1) channels = channels.slice(0, -1);
  const mean = channels.reduce((s, c) => s + c.mean, 0) / channels.length;
  const stdev = channels.reduce((s, c) => s + c.stdev, 0) / channels.length;
  return { mean, stdev };
}

/**
 * Mean and standard deviation (0–255) of a stored image, averaged over colour channels, ignoring
 * alpha; a very low stdev means a crop is blank or uniform and probably missed its target.
 * (runImageOp returns these for its result already; this reads and decodes the image.)
 */
export async function imageStats(store: ImageStore, image: StoredImage): Promise<ImageStats> {
  return bufferStats(await store.read(image), store.maxInputPixels);
}
