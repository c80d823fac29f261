// Turns a local corpus file (Markdown, plain text, HTML, PDF) into a title, a citation URL and plain text with paragraph breaks.
import { getDocumentProxy, getMeta } from "unpdf";
import { readableText } from "./readable.js";

export const CORPUS_FILE_KINDS = {
  ".md": "markdown",
  ".markdown": "markdown",
  ".txt": "text",
  ".html": "html",
  ".htm": "html",
  ".pdf": "pdf",
} as const;
export type CorpusFileKind = (typeof CORPUS_FILE_KINDS)[keyof typeof CORPUS_FILE_KINDS];

export interface ExtractedDocument {
  /** Absent when the file names none; the indexer then uses the file name. */
  title?: string;
  /** The document's own address (front-matter `source:`, canonical link, og:url), when it names one. */
  url?: string;
  text: string;
}

/**
 * Title, citation URL and text of a corpus file. HTML and PDF go through the same readableText as
 * pages fetched from the web; Markdown and text are decoded here, since their front matter and
 * headings are what name them.
 */
export async function extractCorpusDocument(bytes: Buffer, kind: CorpusFileKind, path: string): Promise<ExtractedDocument> {
  if (kind === "markdown" || kind === "text") {
    const { fields, body } = splitFrontMatter(decodeUtf8(bytes));
    const text = kind === "markdown" ? plainMarkdown(body) : body;
    return {
      title: fields.title || (kind === "markdown" ? firstMarkdownHeading(body) : undefined),
      url: absoluteUrl(fields.source ?? fields.url ?? fields.canonical),
      text: tidy(text),
    };
  }
  if (kind === "html") {
    const page = await readableText(bytes, "text/html", path);
    return { title: page.title, url: canonicalUrl(bytes, (await import("linkedom")).parseHTML), text: page.text };
  }
  const pdf = await readableText(bytes, "application/pdf", path);
  return { title: pdf.title ?? (await pdfTitle(bytes)), text: pdf.text };
}

function splitFrontMatter(source: string): { fields: Record<string, string>; body: string } {
  const match = /^---[ \t]*\r?\n([\s\S]*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|$)/.exec(source);
  if (!match) return { fields: {}, body: source };
  const fields: Record<string, string> = {};
  for (const line of match[1]!.split(/\r?\n/)) {
    const kv = /^([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$/.exec(line);
    if (kv && kv[2]) fields[kv[1]!.toLowerCase()] = kv[2].replace(/^(["'])(.*)\1$/, "$2");
  }
  return { fields, body: source.slice(match[0].length) };
}

function firstMarkdownHeading(markdown: string): string | undefined {
  const lines = markdown.split(/\r?\n/);
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s{0,3}(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const atx = /^\s{0,3}#{1,6}\s+(.+?)(?:\s+#+)?\s*$/.exec(line);
    if (atx) return plainMarkdown(atx[1]!).trim();
    if (line.trim() && /^\s{0,3}=+\s*$/.test(lines[i + 1] ?? "")) return plainMarkdown(line).trim();
  }
  return undefined;
}

/** Link targets and image sources would only add noise to the index and to what the model reads. */
function plainMarkdown(markdown: string): string {
  return markdown
    .replace(/<!--[\s\S]*?-->/g, "")
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/\[([^\]]+)\]\([^)]*\)/g, "$1");
}

/** The page's own address from <link rel=canonical> or og:url; only the head is parsed. */
function canonicalUrl(bytes: Buffer, parseHTML: typeof import("linkedom").parseHTML): string | undefined {
  const source = bytes.toString("latin1");
  const end = source.search(/<\/head\s*>/i);
  const head = end < 0 ? source.slice(0, 65536) : source.slice(0, end);
  const { document } = parseHTML(`${head}</head><body></body></html>`);
  return absoluteUrl(
    document.querySelector('link[rel~="canonical"]')?.getAttribute("href") ??
      document.querySelector('meta[property="og:url"]')?.getAttribute("content") ??
      undefined,
  );
}

/** The PDF's Info title; readableText has loaded PDF.js by the time this runs. */
async function pdfTitle(bytes: Buffer): Promise<string | undefined> {
  try {
    const pdf = await getDocumentProxy(new Uint8Array(bytes), { verbosity: 0 });
    try {
      const title = (await getMeta(pdf)).info?.Title;
      return typeof title === "string" && title.trim() ? title.trim() : undefined;
    } finally {
      await pdf.destroy();
    }
  } catch {
    return undefined;
  }
}

function decodeUtf8(bytes: Buffer): string {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder("utf-16le").decode(bytes);
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder("utf-16be").decode(bytes);
  return new TextDecoder("utf-8").decode(bytes);
}

function tidy(text: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .replace(/\u0000/g, "")
    .replace(/[ \t\u00a0]+\n/g, "\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

function absoluteUrl(value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    const url = new URL(value.trim());
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : undefined;
  } catch {
    return undefined;
  }
}
