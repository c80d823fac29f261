// Turns a fetched document (HTML, PDF, plain text or markdown) into its readable text, keeping paragraph breaks.
import { definePDFJSModule, extractText, getDocumentProxy } from "unpdf";

/** The document is of a kind that has no readable text (an image, an archive, …). */
export class UnreadableContentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnreadableContentError";
  }
}

export interface ReadableText {
  title?: string;
  text: string;
}

type Kind = "html" | "pdf" | "text";

function mimeOf(contentType: string): string {
  return contentType.split(";")[0]!.trim().toLowerCase();
}

function kindOf(body: Buffer, contentType: string): Kind | undefined {
  const mime = mimeOf(contentType);
  if (mime === "application/pdf" || body.subarray(0, 1024).includes("%PDF-")) return "pdf";
  if (mime === "text/html" || mime === "application/xhtml+xml") return "html";
  if (mime.startsWith("text/") || /^application\/(json|xml|ld\+json|x-ndjson|javascript)$/.test(mime) || /\+(json|xml)$/.test(mime)) return "text";
  if (mime && mime !== "application/octet-stream" && mime !== "binary/octet-stream") return undefined;
  // No useful type: look at the bytes, as a browser would.
  const head = body.subarray(0, 1024);
  if (head.includes(0)) return undefined;
  return /^\s*(<!doctype html|<html|<head|<body|<!--)/i.test(head.toString("latin1")) ? "html" : "text";
}

/** The declared charset: the Content-Type's, else a <meta> one, else UTF-8 (and a BOM wins over both). */
function decode(body: Buffer, contentType: string, kind: Kind): string {
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) return body.subarray(3).toString("utf8");
  let charset = /charset\s*=\s*["']?([\w.:-]+)/i.exec(contentType)?.[1];
  if (!charset && kind === "html") {
    const head = body.subarray(0, 4096).toString("latin1");
    charset = /<meta[^>]+charset\s*=\s*["']?([\w.:-]+)/i.exec(head)?.[1];
  }
  try {
    return new TextDecoder(charset ?? "utf-8").decode(body);
  } catch {
    return body.toString("utf8");
  }
}

/** Spaces collapsed within lines, at most one blank line between paragraphs. */
function tidy(text: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .replace(/[ \t\f\v\u00a0]+/g, " ")
    .replace(/ *\n */g, "\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

interface DomNode {
  nodeType: number;
  nodeName: string;
  textContent: string | null;
  childNodes: ArrayLike<DomNode>;
}

const SKIPPED = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "SVG", "IFRAME", "OBJECT", "EMBED", "CANVAS", "HEAD"]);
const LINE = new Set(["LI", "TR", "DT", "DD", "CAPTION", "FIGCAPTION", "OPTION"]);
const PARAGRAPH = new Set([
  "P", "DIV", "SECTION", "ARTICLE", "MAIN", "HEADER", "FOOTER", "ASIDE", "NAV", "BLOCKQUOTE", "PRE", "UL", "OL", "DL",
  "TABLE", "FIGURE", "FORM", "FIELDSET", "ADDRESS", "DETAILS", "SUMMARY", "HR", "H1", "H2", "H3", "H4", "H5", "H6",
]);

/** Text of a DOM subtree with block elements as paragraphs and list items and table rows as lines. */
function blockText(root: DomNode): string {
  const out: string[] = [];
  const walk = (node: DomNode): void => {
    if (node.nodeType === 3) {
      out.push((node.textContent ?? "").replace(/\s+/g, " "));
      return;
    }
    if (node.nodeType !== 1 && node.nodeType !== 9 && node.nodeType !== 11) return;
    const tag = node.nodeName.toUpperCase();
    if (SKIPPED.has(tag)) return;
    if (tag === "BR") {
      out.push("\n");
      return;
    }
    // A line element only starts a line: ending one too would leave a blank line between list items.
    const paragraph = PARAGRAPH.has(tag) ? "\n\n" : "";
    out.push(paragraph || (LINE.has(tag) ? "\n" : ""));
    if (tag === "LI") out.push("- ");
    if (tag === "TD" || tag === "TH") out.push(" ");
    for (const child of Array.from(node.childNodes)) walk(child);
    if (tag === "TD" || tag === "TH") out.push(" |");
    out.push(paragraph);
  };
  walk(root);
  return tidy(out.join(""));
}

/** Elements that are page furniture rather than content, dropped when Readability finds no article. */
const FURNITURE = "script, style, noscript, template, nav, header, footer, aside, form, iframe, svg, [role=navigation], [role=banner], [role=contentinfo], [aria-hidden=true]";

interface HtmlDocument {
  title?: string;
  body?: DomNode & { querySelectorAll(selector: string): ArrayLike<{ remove(): void }> };
}

/**
 * HTML beyond this many characters is not parsed: parsing and Readability run synchronously, at
 * about a second per megabyte, and would hold up every other run meanwhile. Pages this long are
 * almost all markup; their text is far longer than any observation anyway.
 */
const MAX_HTML_CHARS = 3_000_000;

/** linkedom and Readability, loaded with the first HTML page (not by every process that could read one). */
const htmlLibraries = async () => ({ Readability: (await import("@mozilla/readability")).Readability, DOMParser: (await import("linkedom")).DOMParser });

function htmlText(fullHtml: string, { Readability, DOMParser }: Awaited<ReturnType<typeof htmlLibraries>>): ReadableText {
  const html = fullHtml.length > MAX_HTML_CHARS ? fullHtml.slice(0, MAX_HTML_CHARS) : fullHtml;
  // linkedom puts a fragment without <html> in the wrong place; give it a document to live in.
  const source = /<html[\s>]/i.test(html) ? html : `<!doctype html><html><head></head><body>${html}</body></html>`;
  const parse = () => new DOMParser().parseFromString(source, "text/html") as unknown as HtmlDocument;
  const document = parse();
  const pageTitle = document.title?.trim() || undefined;
  let article: { title?: string | null; content?: DomNode | null } | null = null;
  try {
    article = new Readability<DomNode>(document as never, { serializer: (node) => node as unknown as DomNode }).parse();
  } catch {
    article = null;
  }
  const articleText = article?.content ? blockText(article.content) : "";
  if (articleText.length >= 200) return { title: article?.title?.trim() || pageTitle, text: articleText };
  // No article stands out (a list page, a short page): the body without its furniture. Readability
  // has taken the document apart, so this reads a fresh one.
  const body = parse().body;
  if (!body) return { title: pageTitle, text: articleText };
  for (const el of Array.from(body.querySelectorAll(FURNITURE))) el.remove();
  return { title: pageTitle, text: blockText(body) || articleText };
}

let pdfjsReady: Promise<void> | undefined;

/**
 * Loads the PDF.js build unpdf ships. unpdf 1.0.0's own loader expects a `resolvePDFJS` export its
 * bundle does not have ("PDF.js package not available"), so the bundle is handed to it directly.
 * Loading it prints a browser-build warning with console.log, which would land in `--json` output.
 */
function loadPdfjs(): Promise<void> {
  pdfjsReady ??= (async () => {
    const log = console.log;
    console.log = (...args: unknown[]) => {
      if (typeof args[0] === "string" && args[0].startsWith("Warning: Please use the `legacy` build")) return;
      log(...args);
    };
    try {
      await definePDFJSModule(() => import("unpdf/pdfjs") as never);
    } finally {
      console.log = log;
    }
  })().catch((err: unknown) => {
    pdfjsReady = undefined;
    throw err;
  });
  return pdfjsReady;
}

async function pdfText(body: Buffer): Promise<ReadableText> {
  let result: { text: string };
  try {
    await loadPdfjs();
    // A copy: PDF.js takes ownership of (detaches) the buffer it is given. Verbosity 0 keeps its
    // warnings about odd fonts off stdout.
    const document = await getDocumentProxy(new Uint8Array(body), { verbosity: 0 });
    try {
      result = await extractText(document, { mergePages: true });
    } finally {
      await document.destroy();
    }
  } catch (err) {
    throw new UnreadableContentError(`the PDF could not be read: ${(err as Error).message.split("\n")[0]}`);
  }
  const text = tidy(result.text);
  if (!text) throw new UnreadableContentError("the PDF has no text layer (it may be scanned images)");
  return { text };
}

function plainText(text: string, contentType: string, url: string): ReadableText {
  const mime = mimeOf(contentType);
  const markdown = mime === "text/markdown" || mime === "text/x-markdown" || /\.(md|markdown)([?#]|$)/i.test(url);
  const markdownTitle = markdown ? /^#\s+(.+)$/m.exec(text)?.[1]?.trim() : undefined;
  return { title: markdownTitle, text: tidy(text) };
}

/**
 * The readable text of a fetched document: an HTML page's main article (Readability), or its body
 * without navigation, scripts and styles when no article stands out; a PDF's text layer; text and
 * markdown as they are. Throws UnreadableContentError for documents with no text (images, archives).
 */
export async function readableText(body: Buffer, contentType: string, url: string): Promise<ReadableText> {
  const kind = kindOf(body, contentType);
  if (!kind) {
    const kindName = mimeOf(contentType) || "binary";
    throw new UnreadableContentError(`it is ${/^[aeiou]/i.test(kindName) ? "an" : "a"} ${kindName} file, not a page with text`);
  }
  if (kind === "pdf") return pdfText(body);
  const text = decode(body, contentType, kind);
  return kind === "html" ? htmlText(text, await htmlLibraries()) : plainText(text, contentType, url);
}
