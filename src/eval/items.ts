// What an evaluation runs: one benchmark item, normalised from any dataset format, and the error a malformed row raises.

/** An input image as the dataset gives it: a file, a remote URL, or bytes embedded in the file. */
export type ImageInput =
  | { kind: "path"; path: string }
  | { kind: "url"; url: string }
  | { kind: "bytes"; bytes: Uint8Array };

export interface Choice {
  letter: string;
  text: string;
}

export interface EvalItem {
  /** Unique within the dataset; the item's thread id is derived from it. */
  id: string;
  /** The question as posed to the agent (options and answer instructions included for multiple choice). */
  question: string;
  /** The question alone, as the judge sees it. */
  judgeQuestion: string;
  images: ImageInput[];
  /** Accepted answers: option letters for multiple choice (several for multi-answer items), else answer texts. */
  answers: string[];
  kind: "choice" | "open";
  /** Options, when the dataset lists them (letters only otherwise). */
  choices: Choice[];
  category: string;
  /** Where the item came from, for messages. */
  source: { file: string; row: number };
  /**
   * MMSearch: the benchmark's recorded reverse image search of the first image (its
   * `image_search_result` column: a hit list or a screenshot), imported into the search cache so
   * image_search on img_0 runs offline.
   */
  imageSearchResult?: unknown;
}

export const FORMATS = ["jsonl", "mmsearch", "fvqa", "webwatcher", "browsecomp-vl", "livevqa", "vlmeval-tsv", "csvqa", "emma"] as const;
export type DatasetFormat = (typeof FORMATS)[number];

/** A dataset file or one of its rows cannot be used; the message names the file, row and field. */
export class DatasetError extends Error {
  readonly file: string;
  readonly row?: number;
  readonly field?: string;
  constructor(file: string, problem: string, where: { row?: number; field?: string } = {}) {
    const at = [where.row !== undefined ? `row ${where.row}` : "", where.field ? `field "${where.field}"` : ""].filter(Boolean).join(", ");
    super(`${file}${at ? `: ${at}` : ""}: ${problem}`);
    this.name = "DatasetError";
    this.file = file;
    this.row = where.row;
    this.field = where.field;
  }
}
