// Writing the files a command produces: whole or not at all, through a symlink to the file it names, never over a pipe, device or directory.
import { chmodSync, lstatSync, readlinkSync, realpathSync, renameSync, rmSync, writeFileSync, type Stats } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/** An output file that cannot be written; the message names the path and says what to do. */
export class OutputFileError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.name = "OutputFileError";
    this.path = path;
  }
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a named pipe (FIFO)";
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return "a device";
  if (stats.isSocket()) return "a socket";
  return "not a regular file";
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * The file a write to `path` must replace: `path` itself, or the file its symlinks lead to (which
 * may not exist yet). Throws OutputFileError for a directory, pipe, device or socket: replacing one
 * of those with a regular file is never what was meant.
 */
export function outputTarget(path: string): string {
  let target = resolve(path);
  for (let hops = 0; ; hops++) {
    let stats: Stats;
    try {
      stats = lstatSync(target);
    } catch (err) {
      if (errorCode(err) === "ENOENT") return target;
      throw new OutputFileError(path, `cannot write ${path}: ${(err as Error).message}`);
    }
    if (stats.isFile()) return target;
    if (stats.isSymbolicLink() && hops < 40) {
      // Relative to the link's real directory, as the kernel resolves it.
      target = resolve(realpathSync(dirname(target)), readlinkSync(target));
      continue;
    }
    const via = target === resolve(path) ? "" : ` (it leads to ${target})`;
    const what = stats.isSymbolicLink() ? "a chain of more than 40 symbolic links" : kindOf(stats);
    throw new OutputFileError(path, `cannot write ${path}${via}: it is ${what}, not a regular file; name a regular file or a new path`);
  }
}

function describeWriteError(err: unknown): string {
  switch (errorCode(err)) {
    case "ENOENT":
      return "its directory does not exist";
    case "ENOSPC":
      return "no space left on the device";
    case "EDQUOT":
      return "the disk quota is exceeded";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EROFS":
      return "the file system is read-only";
    default:
      return ((err as Error)?.message ?? String(err)).split("\n")[0]!;
  }
}

/** How writeAtomic writes the temp file; a test passes one that fails. */
export type WriteFile = (path: string, data: string | Uint8Array) => void;

const writeNew: WriteFile = (path, data) => writeFileSync(path, data, { flag: "wx" });

/**
 * Writes a file atomically (a temp file beside it, then rename), so a crash never leaves half a file.
 * A symlink to a regular file is written through (the file it leads to is replaced, the link kept);
 * the temp file is removed when the write fails (a full disk, a vanished directory).
 */
export function writeAtomic(path: string, data: string | Uint8Array, writeFile: WriteFile = writeNew): void {
  const target = outputTarget(path);
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
  try {
    rmSync(tmp, { force: true });
    writeFile(tmp, data);
    const mode = existingMode(target);
    if (mode !== undefined) chmodSync(tmp, mode);
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new OutputFileError(path, `cannot write ${path}${target === resolve(path) ? "" : ` (it leads to ${target})`}: ${describeWriteError(err)}`);
  }
}

/** The permission bits of the file about to be replaced, so writing through keeps them; undefined for a new file. */
function existingMode(path: string): number | undefined {
  try {
    return lstatSync(path).mode & 0o7777;
  } catch {
    return undefined;
  }
}
