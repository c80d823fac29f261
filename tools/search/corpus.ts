// The local corpus: `loupe index DIR` builds a SQLite FTS5 index of a folder's documents, and the "corpus" provider searches and reads it with no key and no network.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, statSync, type Stats } from "node:fs";
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { CORPUS_FILE_KINDS, extractCorpusDocument, type CorpusFileKind } from "./corpus-extract.js";
import { SearchProviderError, type PageContent, type PageFailure, type SearchHit, type SearchProvider } from "./provider.js";

/** Bumped when what is stored per document changes, so an old index is rebuilt rather than misread. */
const INDEX_FORMAT = "1";
const DEFAULT_PASSAGE_CHARS = 1200;
const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** Files per transaction: one commit per file would make a large first index slow. */
const COMMIT_EVERY = 200;

export const CORPUS_EXTENSIONS = Object.keys(CORPUS_FILE_KINDS);

export interface CorpusIndexOptions {
  onProgress?: (done: number, total: number, file: string) => void;
  /** Longest passage, in characters; passages are cut on paragraph boundaries with a small overlap. */
  passageChars?: number;
}

export interface CorpusIndexResult {
  /** Indexable files under the folder that are now in the index. */
  files: number;
  /** Passages those files have in the index. */
  passages: number;
  added: number;
  updated: number;
  unchanged: number;
  /** Documents dropped because their file was deleted, became unreadable or lost its text. */
  removed: number;
  skipped: Array<{ file: string; reason: string }>;
}

interface StoredDocument {
  id: number;
  path: string;
  sha256: string;
  mtime: number;
  size: number;
  first_passage: number;
  passage_count: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS corpus_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  url TEXT NOT NULL,
  title TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  mtime REAL NOT NULL,
  size INTEGER NOT NULL,
  text TEXT NOT NULL,
  first_passage INTEGER NOT NULL,
  passage_count INTEGER NOT NULL,
  indexed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_url ON documents (url);
CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(title, body, doc_id UNINDEXED, tokenize = 'porter unicode61');
`;

function openForWriting(dbPath: string): Database.Database {
  mkdirSync(dirname(resolve(dbPath)), { recursive: true });
  const db = new Database(dbPath);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.exec(SCHEMA);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** Indexable files under root, sorted; hidden files and folders are left out, symlinks followed once. */
async function listCorpusFiles(root: string): Promise<string[]> {
  const files: string[] = [];
  const visited = new Set<string>();
  const walk = async (dir: string) => {
    const real = await realpath(dir);
    if (visited.has(real)) return;
    visited.add(real);
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith(".")) continue;
      const path = join(dir, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(path).catch(() => undefined);
        isDir = Boolean(target?.isDirectory());
        isFile = Boolean(target?.isFile());
      }
      if (isDir) await walk(path);
      else if (isFile && kindOf(path)) files.push(path);
    }
  };
  await walk(root);
  return files;
}

function kindOf(path: string): CorpusFileKind | undefined {
  return (CORPUS_FILE_KINDS as Record<string, CorpusFileKind>)[extname(path).toLowerCase()];
}

/**
 * Splits text into passages of at most maxChars, on paragraph boundaries where it can (then
 * sentences, then words). Each passage after the first starts with the end of the one before, so
 * a fact that straddles a boundary can still be found in one passage.
 */
export function splitPassages(text: string, maxChars = DEFAULT_PASSAGE_CHARS): string[] {
  const overlapChars = Math.floor(maxChars / 8);
  const pieces: string[] = [];
  for (const paragraph of text.split(/\n[ \t]*\n/)) {
    const p = paragraph.trim();
    if (!p) continue;
    if (p.length <= maxChars) pieces.push(p);
    else pieces.push(...splitLong(p, maxChars));
  }
  const passages: string[] = [];
  let current = "";
  let last = "";
  for (const piece of pieces) {
    if (!current) current = piece;
    else if (current.length + 2 + piece.length <= maxChars) current += `\n\n${piece}`;
    else {
      passages.push(current);
      const overlap = tail(last, overlapChars);
      current = overlap && overlap.length + 2 + piece.length <= maxChars ? `${overlap}\n\n${piece}` : piece;
    }
    last = piece;
  }
  if (current) passages.push(current);
  return passages;
}

function splitLong(paragraph: string, maxChars: number): string[] {
  const sentences = paragraph.split(/(?<=[.!?。！？])\s+|\n/);
  const out: string[] = [];
  let current = "";
  for (const raw of sentences) {
    const sentence = raw.trim();
    if (!sentence) continue;
    for (const part of sentence.length <= maxChars ? [sentence] : splitWords(sentence, maxChars)) {
      if (!current) current = part;
      else if (current.length + 1 + part.length <= maxChars) current += ` ${part}`;
      else {
        out.push(current);
        current = part;
      }
    }
  }
  if (current) out.push(current);
  return out;
}

function splitWords(text: string, maxChars: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > maxChars) {
    let cut = rest.lastIndexOf(" ", maxChars);
    if (cut < maxChars / 2) cut = maxChars;
    out.push(rest.slice(0, cut).trim());
    rest = rest.slice(cut).trim();
  }
  if (rest) out.push(rest);
  return out;
}

function tail(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const cut = text.indexOf(" ", text.length - maxChars);
  return cut < 0 ? "" : `…${text.slice(cut + 1)}`;
}

function isUnder(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

function message(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).split("\n")[0]!;
}

/** The statements an indexing pass writes documents and passages with. */
function corpusStatements(db: Database.Database) {
  return {
    insertDocument: db.prepare(
      `INSERT INTO documents (path, url, title, sha256, mtime, size, text, first_passage, passage_count, indexed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    ),
    updateDocument: db.prepare(
      `UPDATE documents SET url = ?, title = ?, sha256 = ?, mtime = ?, size = ?, text = ?, first_passage = ?, passage_count = ?, indexed_at = ?
       WHERE id = ?`,
    ),
    touchDocument: db.prepare("UPDATE documents SET mtime = ?, size = ? WHERE id = ?"),
    deleteDocument: db.prepare("DELETE FROM documents WHERE id = ?"),
    insertPassage: db.prepare("INSERT INTO passages (rowid, title, body, doc_id) VALUES (?, ?, ?, ?)"),
    deletePassages: db.prepare("DELETE FROM passages WHERE rowid BETWEEN ? AND ?"),
    setMeta: db.prepare("INSERT INTO corpus_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
  };
}

/** Whether every stored passage must be cut again; refuses an index written by a newer Loupe. */
function mustResplitAll(db: Database.Database, dbPath: string, passageChars: number): boolean {
  const meta = db.prepare("SELECT value FROM corpus_meta WHERE key = ?");
  const format = (meta.get("format") as { value: string } | undefined)?.value;
  const storedChars = (meta.get("passage_chars") as { value: string } | undefined)?.value;
  if (format && Number(format) > Number(INDEX_FORMAT)) {
    throw new Error(`${dbPath} was written by a newer Loupe (index format ${format}); upgrade Loupe or index into a new file`);
  }
  // A different passage size or format means every stored passage must be cut again.
  return format !== INDEX_FORMAT || storedChars !== String(passageChars);
}

/** A document's text as it will be stored: its passages, and what a hit shows. */
interface SplitDocument {
  url: string;
  title: string;
  sha256: string;
  text: string;
  passages: string[];
}

/**
 * One indexing pass over a folder: each file is kept, (re)indexed or skipped, and the documents
 * of files that are gone are dropped. Other folders' documents in the same database are left alone.
 */
class CorpusIndexPass {
  readonly result: CorpusIndexResult = { files: 0, passages: 0, added: 0, updated: 0, unchanged: 0, removed: 0, skipped: [] };
  private readonly statements: ReturnType<typeof corpusStatements>;
  /** Documents of the folder not yet seen in this pass, by path. */
  private readonly known = new Map<string, StoredDocument>();
  /** Each document's passages occupy a contiguous block of rowids, so replacing them is a range delete, not a scan. */
  private nextRowid: number;

  constructor(
    db: Database.Database,
    root: string,
    private readonly passageChars: number,
    private readonly resplitAll: boolean,
  ) {
    this.statements = corpusStatements(db);
    for (const row of db.prepare("SELECT id, path, sha256, mtime, size, first_passage, passage_count FROM documents").all() as StoredDocument[]) {
      if (isUnder(row.path, root)) this.known.set(row.path, row);
    }
    this.nextRowid = ((db.prepare("SELECT rowid AS id FROM passages ORDER BY rowid DESC LIMIT 1").get() as { id: number } | undefined)?.id ?? 0) + 1;
  }

  /** Indexes one file, unless it is unchanged; one that cannot be read or has no text is skipped and its old document dropped. */
  async indexFile(file: string): Promise<void> {
    const prior = this.known.get(file);
    this.known.delete(file);
    try {
      const info = await stat(file);
      if (info.size > MAX_FILE_BYTES) {
        this.skip(file, prior, `larger than ${MAX_FILE_BYTES / 1024 / 1024} MB`);
      } else if (prior && !this.resplitAll && prior.mtime === info.mtimeMs && prior.size === info.size) {
        this.keep(prior);
      } else {
        await this.readChanged(file, prior, info);
      }
    } catch (err) {
      this.skip(file, prior, message(err));
    }
  }

  /** Drops the documents whose files are gone from the folder, and records how passages were cut. */
  finish(): void {
    for (const gone of this.known.values()) this.drop(gone);
    this.statements.setMeta.run("format", INDEX_FORMAT);
    this.statements.setMeta.run("passage_chars", String(this.passageChars));
  }

  /** A file whose mtime or size changed: the same bytes (by sha256) keep their passages, others are split again. */
  private async readChanged(file: string, prior: StoredDocument | undefined, info: Stats): Promise<void> {
    const bytes = await readFile(file);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    if (prior && !this.resplitAll && prior.sha256 === sha256) {
      this.statements.touchDocument.run(info.mtimeMs, info.size, prior.id);
      this.keep(prior);
      return;
    }
    const kind = kindOf(file)!;
    const doc = await extractCorpusDocument(bytes, kind, file);
    const passages = splitPassages(doc.text, this.passageChars);
    if (passages.length === 0) {
      this.skip(file, prior, kind === "pdf" ? "no text layer (a scanned PDF needs OCR first)" : "no text");
      return;
    }
    const title = doc.title?.trim() || basename(file);
    const url = doc.url ?? pathToFileURL(file).href;
    this.store(file, prior, info, { url, title, sha256, text: doc.text, passages });
  }

  /** Writes the document (over its prior version, whose passages are deleted) and its passages. */
  private store(file: string, prior: StoredDocument | undefined, info: Stats, doc: SplitDocument): void {
    const { insertDocument, updateDocument, insertPassage } = this.statements;
    const now = new Date().toISOString();
    const first = this.nextRowid;
    const count = doc.passages.length;
    let id: number;
    if (prior) {
      this.deletePassagesOf(prior);
      updateDocument.run(doc.url, doc.title, doc.sha256, info.mtimeMs, info.size, doc.text, first, count, now, prior.id);
      id = prior.id;
      this.result.updated++;
    } else {
      id = (insertDocument.get(file, doc.url, doc.title, doc.sha256, info.mtimeMs, info.size, doc.text, first, count, now) as { id: number }).id;
      this.result.added++;
    }
    for (const passage of doc.passages) insertPassage.run(this.nextRowid++, doc.title, passage, id);
    this.result.files++;
    this.result.passages += count;
  }

  private keep(prior: StoredDocument): void {
    this.result.unchanged++;
    this.result.files++;
    this.result.passages += prior.passage_count;
  }

  private skip(file: string, prior: StoredDocument | undefined, reason: string): void {
    this.result.skipped.push({ file, reason });
    if (prior) this.drop(prior);
  }

  private drop(doc: StoredDocument): void {
    this.deletePassagesOf(doc);
    this.statements.deleteDocument.run(doc.id);
    this.result.removed++;
  }

  private deletePassagesOf(doc: StoredDocument): void {
    if (doc.passage_count > 0) this.statements.deletePassages.run(doc.first_passage, doc.first_passage + doc.passage_count - 1);
  }
}

/**
 * Runs work in a write transaction that the `fileDone` it is given commits every COMMIT_EVERY
 * files; the open transaction is rolled back when work fails.
 */
async function inFileBatches(db: Database.Database, work: (fileDone: () => void) => Promise<void>): Promise<void> {
  let pending = 0;
  const fileDone = () => {
    if (++pending < COMMIT_EVERY) return;
    db.exec("COMMIT");
    db.exec("BEGIN IMMEDIATE");
    pending = 0;
  };
  db.exec("BEGIN IMMEDIATE");
  try {
    await work(fileDone);
    db.exec("COMMIT");
  } catch (err) {
    if (db.inTransaction) db.exec("ROLLBACK");
    throw err;
  }
}

/**
 * Indexes the .md, .markdown, .txt, .html, .htm and .pdf files under dir into the SQLite database
 * at dbPath. Incremental: unchanged files (same mtime and size, or same sha256) are not re-read or
 * re-split, and documents whose files are gone from dir are removed. One database can hold
 * several folders; re-indexing one leaves the others alone.
 */
export async function buildCorpusIndex(dir: string, dbPath: string, options: CorpusIndexOptions = {}): Promise<CorpusIndexResult> {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new Error(`${dir} is not a directory`);
  const passageChars = Math.max(200, options.passageChars ?? DEFAULT_PASSAGE_CHARS);
  const files = await listCorpusFiles(root);
  const db = openForWriting(dbPath);
  try {
    const pass = new CorpusIndexPass(db, root, passageChars, mustResplitAll(db, dbPath, passageChars));
    await inFileBatches(db, async (fileDone) => {
      for (const [i, file] of files.entries()) {
        await pass.indexFile(file);
        options.onProgress?.(i + 1, files.length, file);
        fileDone();
      }
      pass.finish();
    });
    return pass.result;
  } finally {
    db.close();
  }
}

// --- searching ---

/** Words that match nearly every passage; dropped from a query unless nothing else is left. */
const STOPWORDS = new Set(
  "a an and are as at be but by did do does for from had has have how i in is it its of on or that the this to was were what when where which who whom whose why will with".split(" "),
);
const TOKEN = /[\p{L}\p{N}\p{M}\p{Co}]+/gu;

function quote(phrase: string): string {
  return `"${phrase.replaceAll('"', '""')}"`;
}

/**
 * An FTS5 query for free text: every word (or "quoted phrase") becomes a quoted string, so no user
 * text is read as FTS syntax (AND, NEAR, *, parentheses, column filters), and the strings are
 * OR-ed so BM25 ranks passages by how many of them they contain and how rare they are. The whole
 * query as one phrase is added too, so an exact match ranks first. Undefined when there is no word.
 */
export function ftsQuery(text: string): string | undefined {
  const phrases: string[] = [];
  const rest = text.replace(/"([^"]*)"/g, (_match, inner: string) => {
    const tokens = inner.match(TOKEN);
    if (tokens) phrases.push(tokens.join(" "));
    return " ";
  });
  const words = rest
    .split(/\s+/)
    .map((chunk) => chunk.match(TOKEN)?.join(" "))
    .filter((w): w is string => Boolean(w));
  const content = words.filter((w) => !STOPWORDS.has(w.toLowerCase()));
  const terms = [...new Set([...phrases, ...(content.length || phrases.length ? content : words)].map((t) => t.toLowerCase()))].slice(0, 32);
  if (terms.length === 0) return undefined;
  const clauses = terms.map(quote);
  const all = text.match(TOKEN) ?? [];
  if (terms.length > 1 && all.length <= 12) clauses.push(quote(all.join(" ").toLowerCase()));
  return clauses.join(" OR ");
}

export interface CorpusProvider extends SearchProvider {
  /** Whether a URL (a result's url, a file:// URL or an absolute path) names a document in the index. */
  holds(url: string): boolean;
  close(): void;
}

interface DocumentRow {
  id: number;
  url: string;
  title: string;
  text: string;
}

/** Parses a URL, or undefined when ref is not one. */
function parsedUrl(ref: string): URL | undefined {
  try {
    return new URL(ref);
  } catch {
    return undefined;
  }
}

/** Looks a document of the index up by its url (a fragment and a trailing slash aside), a file:// URL or an absolute path. */
function documentFinder(db: Database.Database): (ref: string) => DocumentRow | undefined {
  const byUrl = db.prepare("SELECT id, url, title, text FROM documents WHERE url = ? ORDER BY id LIMIT 1");
  const byPath = db.prepare("SELECT id, url, title, text FROM documents WHERE path = ?");
  const byFileUrl = (url: URL): DocumentRow | undefined => {
    try {
      return byPath.get(fileURLToPath(url)) as DocumentRow | undefined;
    } catch {
      return undefined;
    }
  };
  const byWebUrl = (url: URL): DocumentRow | undefined => {
    url.hash = "";
    const href = url.href;
    const variants = [href, href.endsWith("/") ? href.slice(0, -1) : `${href}/`];
    for (const candidate of variants) {
      const row = byUrl.get(candidate) as DocumentRow | undefined;
      if (row) return row;
    }
    return undefined;
  };
  return (ref) => {
    const raw = ref.trim();
    if (!raw) return undefined;
    if (isAbsolute(raw) && !raw.startsWith("//")) return byPath.get(resolve(raw)) as DocumentRow | undefined;
    const direct = byUrl.get(raw) as DocumentRow | undefined;
    if (direct) return direct;
    const url = parsedUrl(raw);
    if (!url) return undefined;
    return url.protocol === "file:" ? byFileUrl(url) : byWebUrl(url);
  };
}

/** text_search over the index: passages ranked with BM25 (title weighted 5x), one hit per document. */
function passageSearch(db: Database.Database): NonNullable<SearchProvider["textSearch"]> {
  const search = db.prepare(
    `SELECT doc_id AS docId, snippet(passages, 1, '', '', '…', 64) AS snippet
     FROM passages WHERE passages MATCH ? ORDER BY bm25(passages, 5.0, 1.0) LIMIT ?`,
  );
  const headerById = db.prepare("SELECT title, url FROM documents WHERE id = ?");
  return async (query, { maxResults }) => {
    const match = ftsQuery(query);
    if (!match) return { hits: [], images: [] };
    let rows: Array<{ docId: number; snippet: string }>;
    try {
      rows = search.all(match, Math.min(500, Math.max(1, maxResults) * 10)) as typeof rows;
    } catch (err) {
      throw new SearchProviderError("corpus", `the local corpus could not be searched: ${message(err)}`);
    }
    const hits: SearchHit[] = [];
    const seen = new Set<number>();
    for (const row of rows) {
      if (seen.has(row.docId)) continue;
      seen.add(row.docId);
      const doc = headerById.get(row.docId) as { title: string; url: string } | undefined;
      if (!doc) continue;
      hits.push({ title: doc.title, url: doc.url, snippet: row.snippet.replace(/\s+/g, " ").trim() });
      if (hits.length >= maxResults) break;
    }
    return { hits, images: [] };
  };
}

/**
 * The "corpus" search provider over an index built by buildCorpusIndex: text_search ranks passages
 * with BM25 (title weighted 5x), one hit per document; web_visit reads a document of the index by
 * its url or file path. Opened read-only, so `loupe index` can update the index meanwhile.
 */
export function createCorpusProvider(dbPath: string): CorpusProvider {
  if (!existsSync(dbPath)) throw new Error(`no corpus index at ${dbPath}; build one with: loupe index DIR`);
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE name IN ('documents', 'passages')").all();
  if (tables.length < 2) {
    db.close();
    throw new Error(`${dbPath} is not a Loupe corpus index; build one with: loupe index DIR`);
  }
  const find = documentFinder(db);
  return {
    name: "corpus",
    textSearch: passageSearch(db),
    async webVisit(urls) {
      const pages: PageContent[] = [];
      const failed: PageFailure[] = [];
      for (const url of urls) {
        const doc = find(url);
        if (doc) pages.push({ url: doc.url, title: doc.title, text: doc.text });
        else failed.push({ url, error: "not in the local corpus" });
      }
      return { pages, failed };
    },
    holds: (url) => find(url) !== undefined,
    close: () => db.close(),
  };
}

// --- `loupe index` ---

/**
 * `loupe index DIR`: builds or updates the corpus index at dbPath, printing progress and a summary
 * through log. Returns the exit code: 0 done, 1 nothing indexable or the index failed, 2 bad folder.
 */
export async function runIndexCommand(dir: string, dbPath: string, log: (line: string) => void): Promise<number> {
  const root = resolve(dir);
  if (!existsSync(root)) {
    log(`loupe index: ${dir}: no such folder`);
    return 2;
  }
  if (!statSync(root).isDirectory()) {
    log(`loupe index: ${dir} is not a folder; give the folder that holds the documents`);
    return 2;
  }
  const started = performance.now();
  let result: CorpusIndexResult;
  try {
    result = await buildCorpusIndex(root, dbPath, {
      onProgress(done, total, file) {
        if (done === 1) log(`loupe index: ${total} file${total === 1 ? "" : "s"} under ${root}`);
        const every = total <= 20 ? 1 : Math.ceil(total / 20);
        if (done % every === 0 || done === total) log(`  [${done}/${total}] ${relative(root, file)}`);
      },
    });
  } catch (err) {
    log(`loupe index: ${message(err)}`);
    return 1;
  }
  const shown = result.skipped.slice(0, 20);
  for (const { file, reason } of shown) log(`  skipped ${relative(root, file)}: ${reason}`);
  if (result.skipped.length > shown.length) log(`  … and ${result.skipped.length - shown.length} more skipped`);
  if (result.files === 0) {
    const why = result.skipped.length ? "none of its files could be indexed" : `it has no ${CORPUS_EXTENSIONS.join(", ")} files`;
    log(`loupe index: nothing indexed from ${root}: ${why}${result.removed ? ` (${result.removed} earlier documents removed)` : ""}`);
    return 1;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const parts = [`${result.added} new`, `${result.updated} updated`, `${result.unchanged} unchanged`, `${result.removed} removed`];
  if (result.skipped.length) parts.push(`${result.skipped.length} skipped`);
  log(`loupe index: ${result.files} files, ${result.passages} passages in ${resolve(dbPath)} (${parts.join(", ")}) in ${seconds} s`);
  return 0;
}
