// Where each crop lies on the input image: image refs' `op` ("crop [x1,y1,x2,y2]", "zoom [x1,y1,x2,y2] ×2") are boxes
// in the parent's pixels; crops of crops are mapped back through their parents. Pure code, no DOM.

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export interface ImageNode {
  id: string;
  width: number;
  height: number;
  parent: string | null;
  op: string | null;
}

/** The box an op cut from its parent (crop, zoom), in the parent's pixels; undefined for other ops. */
export function opBox(op: string | null | undefined): Box | undefined {
  const m = /^(?:crop|zoom)\s*\[\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\]/.exec(op ?? "");
  if (!m) return undefined;
  const [x1, y1, x2, y2] = m.slice(1, 5).map(Number) as [number, number, number, number];
  return { x1, y1, x2, y2 };
}

/** Ops whose output covers the whole of its parent, the same way up (a crop of it maps straight back). */
const SAME_REGION = /^(adjust|annotate|resize)\b/;

export interface Placement {
  /** The input image (parent null) the box is on. */
  root: string;
  /** The region in the root's pixels. */
  box: Box;
  /** Whether this image was cut (crop/zoom) rather than derived as a whole. */
  cut: boolean;
}

/**
 * Each image's region on its input image, when its chain of ops allows it (rotations and flips break
 * the chain: their crops are shown on their own parents only).
 */
export function placements(images: readonly ImageNode[]): Map<string, Placement> {
  const byId = new Map(images.map((i) => [i.id, i]));
  const out = new Map<string, Placement | null>();
  const place = (image: ImageNode, depth = 0): Placement | null => {
    if (out.has(image.id)) return out.get(image.id)!;
    let result: Placement | null = null;
    if (image.parent === null) result = { root: image.id, box: { x1: 0, y1: 0, x2: image.width, y2: image.height }, cut: false };
    else {
      const parent = byId.get(image.parent);
      const above = parent && depth < 64 ? place(parent, depth + 1) : null;
      if (parent && above) {
        const sx = (above.box.x2 - above.box.x1) / parent.width;
        const sy = (above.box.y2 - above.box.y1) / parent.height;
        const cut = opBox(image.op);
        if (cut) {
          result = { root: above.root, cut: true, box: { x1: above.box.x1 + cut.x1 * sx, y1: above.box.y1 + cut.y1 * sy, x2: above.box.x1 + cut.x2 * sx, y2: above.box.y1 + cut.y2 * sy } };
        } else if (SAME_REGION.test(image.op ?? "")) result = { ...above, cut: false };
      }
    }
    out.set(image.id, result);
    return result;
  };
  for (const image of images) place(image);
  return new Map([...out].filter((e): e is [string, Placement] => e[1] !== null));
}

/** The images as a forest: children by parent id, in order. */
export function childrenOf(images: readonly ImageNode[]): Map<string | null, ImageNode[]> {
  const known = new Set(images.map((i) => i.id));
  const map = new Map<string | null, ImageNode[]>();
  for (const image of images) {
    const key = image.parent !== null && known.has(image.parent) ? image.parent : null;
    map.set(key, [...(map.get(key) ?? []), image]);
  }
  return map;
}
