import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { minimalPdf } from "../../test/fixtures/pdf.js";
import { buildCorpusIndex, createCorpusProvider, ftsQuery, runIndexCommand, splitPassages, type CorpusProvider } from "./corpus.js";

const MARKDOWN = `---
title: Tidepool Field Guide
source: https://wiki.example.org/Tidepools
---
# Tidepools of the north shore

Tidepool anemones close when the tide goes out. A tidepool anemone can live for decades.

## Visiting

Walk on bare rock. Tidepool anemones and [sea stars](https://example.org/stars) are fragile.
`;

const TEXT = `Field notes, spring.

Saw one anemone near the harbour wall, but mostly gulls and a seal on the breakwater.
`;

const HTML = `<!doctype html>
<html><head>
<title>The Quuxlamp Lighthouse</title>
<link rel="canonical" href="https://example.org/lighthouses/quuxlamp">
</head><body>
<nav><a href="/">Home</a> <a href="/subscribe">Subscribe to our newsletter</a> <a href="/shop">Gift shop</a></nav>
<main><article>
<h1>The Quuxlamp Lighthouse</h1>
<p>The quuxlamp lantern was lit for the first time in 1871 and could be seen from thirty kilometres out at sea.</p>
<p>Keepers rotated every fortnight; their log books survive in the harbour museum, along with the original lens.</p>
<p>Only the zorblatt survey of 1932 mentions the quuxlamp lantern's second lens, which was lost in a storm.</p>
</article></main>
<footer>Copyright 2024 Lighthouse Society. Cookie settings.</footer>
</body></html>`;

const PDF = minimalPdf([
  "The zorblatt moraine advanced twelve metres in 2023.",
  "Measurements were taken at the quuxlamp ridge station.",
], "Glacier Survey 2023");

describe("local corpus", () => {
  let dir: string;
  let docs: string;
  let dbPath: string;
  let corpus: CorpusProvider;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "loupe-corpus-"));
    docs = join(dir, "docs");
    mkdirSync(join(docs, "nested"), { recursive: true });
    mkdirSync(join(docs, ".hidden"));
    writeFileSync(join(docs, "tidepools.md"), MARKDOWN);
    writeFileSync(join(docs, "notes.txt"), TEXT);
    writeFileSync(join(docs, "nested", "lighthouse.html"), HTML);
    writeFileSync(join(docs, "nested", "glacier-report.pdf"), PDF);
    writeFileSync(join(docs, "photo.png"), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    writeFileSync(join(docs, ".hidden", "secret.md"), "# Secret\n\nzorblatt password");
    dbPath = join(dir, "data", "corpus.sqlite");
    const progress: number[] = [];
    const result = await buildCorpusIndex(docs, dbPath, { onProgress: (done) => progress.push(done) });
    expect(result).toMatchObject({ files: 4, added: 4, updated: 0, unchanged: 0, removed: 0, skipped: [] });
    expect(result.passages).toBeGreaterThanOrEqual(4);
    expect(progress).toEqual([1, 2, 3, 4]);
    corpus = createCorpusProvider(dbPath);
  });

  afterAll(() => {
    corpus?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("finds a phrase that only the PDF holds, with the PDF's metadata title and file URL", async () => {
    const { hits } = await corpus.textSearch!("zorblatt moraine", { maxResults: 5 });
    expect(hits[0]).toMatchObject({
      title: "Glacier Survey 2023",
      url: pathToFileURL(join(docs, "nested", "glacier-report.pdf")).href,
    });
    expect(hits[0]!.snippet).toContain("zorblatt moraine advanced");
  });

  it("finds a phrase that only the HTML holds, cited by its canonical URL, without navigation noise", async () => {
    const { hits } = await corpus.textSearch!("when was the lantern first lit", { maxResults: 5 });
    expect(hits[0]).toMatchObject({ title: "The Quuxlamp Lighthouse", url: "https://example.org/lighthouses/quuxlamp" });
    expect(hits[0]!.snippet).toContain("lit for the first time in 1871");
    const { pages } = await corpus.webVisit!([hits[0]!.url], {});
    expect(pages[0]!.text).toContain("original lens");
    expect(pages[0]!.text).not.toMatch(/newsletter|Gift shop|Cookie settings/);
  });

  it("uses Markdown front matter for the title and source URL", async () => {
    const { hits } = await corpus.textSearch!("tidepool", { maxResults: 5 });
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ title: "Tidepool Field Guide", url: "https://wiki.example.org/Tidepools" });
  });

  it("ranks the more relevant document first (BM25), one hit per document", async () => {
    const { hits } = await corpus.textSearch!("anemone", { maxResults: 5 });
    expect(hits.map((h) => h.title)).toEqual(["Tidepool Field Guide", "notes.txt"]);
    const quux = await corpus.textSearch!("quuxlamp", { maxResults: 5 });
    expect(quux.hits.map((h) => h.title)).toEqual(["The Quuxlamp Lighthouse", "Glacier Survey 2023"]);
    const one = await corpus.textSearch!("quuxlamp", { maxResults: 1 });
    expect(one.hits).toHaveLength(1);
  });

  it("treats FTS syntax in a query as plain words", async () => {
    for (const query of ['"AND (', "NEAR*", "title:zorblatt", "zorblatt OR", "-quuxlamp ^lens", "NOT", "a AND b)", '"', "***", "()"]) {
      await expect(corpus.textSearch!(query, { maxResults: 3 })).resolves.toBeDefined();
    }
    expect((await corpus.textSearch!("NEAR* moraine", { maxResults: 3 })).hits[0]?.title).toBe("Glacier Survey 2023");
    expect((await corpus.textSearch!("***", { maxResults: 3 })).hits).toEqual([]);
    expect(ftsQuery('"AND (')).toBe('"and"');
    expect(ftsQuery("the lantern's lens")).toBe('"lantern s" OR "lens" OR "the lantern s lens"');
  });

  it("reads a document by its result URL, file URL or path; anything else is not in the corpus", async () => {
    const pdfPath = join(docs, "nested", "glacier-report.pdf");
    const { pages, failed } = await corpus.webVisit!(
      [pathToFileURL(pdfPath).href, join(docs, "notes.txt"), "https://wiki.example.org/Tidepools#Visiting", "https://example.com/elsewhere"],
      {},
    );
    expect(pages.map((p) => p.title)).toEqual(["Glacier Survey 2023", "notes.txt", "Tidepool Field Guide"]);
    expect(pages[0]!.text).toContain("The zorblatt moraine advanced twelve metres in 2023.");
    expect(pages[1]!.url).toBe(pathToFileURL(join(docs, "notes.txt")).href);
    expect(pages[2]!.text).toContain("Tidepool anemones and sea stars are fragile.");
    expect(pages[2]!.text).not.toContain("source:");
    expect(failed).toEqual([{ url: "https://example.com/elsewhere", error: "not in the local corpus" }]);
    expect(corpus.holds("https://example.org/lighthouses/quuxlamp")).toBe(true);
    expect(corpus.holds("file:///nowhere.md")).toBe(false);
  });

  it("re-indexes incrementally: unchanged files skipped, modified re-read, deleted removed", async () => {
    const again = await buildCorpusIndex(docs, dbPath);
    expect(again).toMatchObject({ files: 4, added: 0, updated: 0, unchanged: 4, removed: 0 });

    writeFileSync(join(docs, "notes.txt"), `${TEXT}\nA frobnicator washed up on the beach.\n`);
    unlinkSync(join(docs, "nested", "glacier-report.pdf"));
    const lines: string[] = [];
    expect(await runIndexCommand(docs, dbPath, (l) => lines.push(l))).toBe(0);
    expect(lines.at(-1)).toMatch(/^loupe index: 3 files, \d+ passages in .*corpus\.sqlite \(0 new, 1 updated, 2 unchanged, 1 removed\)/);
    expect(lines).toContain("  [3/3] tidepools.md");

    // The open provider sees the new index at once.
    expect((await corpus.textSearch!("frobnicator", { maxResults: 5 })).hits.map((h) => h.title)).toEqual(["notes.txt"]);
    expect((await corpus.textSearch!("moraine", { maxResults: 5 })).hits).toEqual([]);
    const visit = await corpus.webVisit!([pathToFileURL(join(docs, "nested", "glacier-report.pdf")).href], {});
    expect(visit.failed).toHaveLength(1);
    const quux = await corpus.textSearch!("quuxlamp", { maxResults: 5 });
    expect(quux.hits.map((h) => h.title)).toEqual(["The Quuxlamp Lighthouse"]);
  });

  it("loupe index fails clearly on a missing folder or one with nothing to index", async () => {
    const lines: string[] = [];
    expect(await runIndexCommand(join(dir, "missing"), dbPath, (l) => lines.push(l))).toBe(2);
    expect(lines.at(-1)).toMatch(/no such folder/);
    const empty = join(dir, "empty");
    mkdirSync(empty);
    writeFileSync(join(empty, "picture.jpg"), "not a document");
    expect(await runIndexCommand(empty, dbPath, (l) => lines.push(l))).toBe(1);
    expect(lines.at(-1)).toMatch(/nothing indexed .* no \.md, \.markdown, \.txt, \.html, \.htm, \.pdf files/);
    expect(() => createCorpusProvider(join(dir, "none.sqlite"))).toThrow(/loupe index/);
  });
});

describe("splitPassages", () => {
  it("cuts on paragraph boundaries, keeps passages under the limit and overlaps them a little", () => {
    const paragraphs = Array.from({ length: 12 }, (_, i) => `Paragraph ${i} ${"word ".repeat(30).trim()}.`);
    const passages = splitPassages(paragraphs.join("\n\n"), 400);
    expect(passages.length).toBeGreaterThan(3);
    for (const p of passages) expect(p.length).toBeLessThanOrEqual(400);
    expect(passages[1]!.startsWith("Paragraph")).toBe(false);
    for (const paragraph of paragraphs) expect(passages.some((p) => p.includes(paragraph))).toBe(true);
    const long = splitPassages(`${"A sentence of some length here. ".repeat(100)}`, 300);
    for (const p of long) expect(p.length).toBeLessThanOrEqual(300);
    expect(splitPassages("   \n\n  ")).toEqual([]);
  });
});
