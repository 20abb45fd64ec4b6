import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';

// State that must outlive the process is written as temp file + fsync + rename, so a crash
// leaves either the old or the new content, never a torn file.

function tempNameFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
}

function writeAndSync(path: string, data: string | Uint8Array, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface AtomicWriteOptions {
  mode?: number;
  /** fsync the file and its directory (default true). */
  durable?: boolean;
}

/** Replace `path` with `data` atomically. */
export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): void {
  const tmp = tempNameFor(path);
  mkdirSync(dirname(path), { recursive: true });
  try {
    writeAndSync(tmp, data, options.mode ?? 0o644);
    renameSync(tmp, path);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw err;
  }
  if (options.durable !== false) syncDirectory(dirname(path));
}

/**
 * Create `path` with `data` only if it does not exist yet; returns false if it does.
 * The file appears whole or not at all (write a temp file, then link(2), which fails with
 * EEXIST atomically), so two processes racing for the same name can never both win and no
 * reader ever sees a half-written file.
 */
export function createFileExclusive(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): boolean {
  const tmp = tempNameFor(path);
  writeAndSync(tmp, data, options.mode ?? 0o644);
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    try { unlinkSync(tmp); } catch { /* already gone */ }
  }
  if (options.durable !== false) syncDirectory(dirname(path));
  return true;
}

/** Remove a file; a missing file is not an error (idempotent deletes). Returns whether it existed. */
export function removeFileIfExists(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
