// Crash-safe file replacement: readers see either the old file or the new one, never a torn mix,
// even if the writer is killed mid-write or the machine loses power.

import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";

/** Temporary files start with "." and end with ".tmp" so directory listings can skip them. */
function isTempFileName(name: string): boolean {
  return name.startsWith(".") && name.endsWith(".tmp");
}

/** Errors from fsync on a directory where the platform or file system does not support it (e.g. Windows). */
const UNSUPPORTED_DIR_FSYNC = new Set(["EISDIR", "EPERM", "EACCES", "EINVAL", "EBADF", "ENOTSUP", "EOPNOTSUPP"]);

/** Makes a rename in `dir` durable: without it the rename may be lost on power failure. */
function fsyncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, "r");
  } catch (err) {
    if (UNSUPPORTED_DIR_FSYNC.has((err as NodeJS.ErrnoException).code ?? "")) return;
    throw err;
  }
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    if (!UNSUPPORTED_DIR_FSYNC.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
  } finally {
    fs.closeSync(fd);
  }
}

function removeQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // best effort: the original error matters more, and removeStaleTempFiles sweeps leftovers
  }
}

/**
 * Replaces `target` with `data` atomically: writes a unique temporary file in the same directory
 * (rename is only atomic within one file system), fsyncs it, renames it over the target and fsyncs
 * the directory.
 */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  const dir = path.dirname(target);
  const temp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = fs.openSync(temp, "wx", 0o644);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    removeQuietly(temp);
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(temp, target);
  } catch (err) {
    removeQuietly(temp);
    throw err;
  }
  fsyncDirectory(dir);
}

/**
 * Deletes temporary files left in `dir` by writers that died before renaming; returns their names.
 * Only call it while no other process can be writing into `dir` (i.e. while holding the run's lock),
 * or it may delete a temporary file that is still being written.
 */
export function removeStaleTempFiles(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names.filter(isTempFileName)) {
    try {
      fs.unlinkSync(path.join(dir, name));
      removed.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return removed;
}
