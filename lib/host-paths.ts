import { closeSync } from 'node:fs';
import { isAbsolute, normalize, relative } from 'node:path';
import { BerthError } from './errors.js';
import { nativeAddon } from './native.js';

// Host paths that someone less trusted can write into (kubelet's pod directories, a pod's log
// directory, an image's layers), opened through file descriptors with the kernel refusing
// symlinks during the lookup itself (openat2(2) RESOLVE_*). Checking a path by name and then
// using it by name can be raced: a symlink swapped in between redirects the use. A descriptor
// cannot be redirected, so callers open once and then work on the fd: bind mounts by fd
// (lib/mount.ts bindMountFd), fchown, fstat, and /proc/self/fd/N for syscalls that only take
// paths (mount(2)'s target, umount2).

/** open(2) flags Node's fs.constants lacks or that these calls combine (x86-64 and arm64 values). */
export const OpenFlags = {
  rdonly: 0,
  wronly: 0o1,
  creat: 0o100,
  excl: 0o200,
  append: 0o2000,
  nonblock: 0o4000,
  directory: 0o200000,
  nofollow: 0o400000,
  /** A handle on the path only: no read or write, but good for *at calls, fstat and mounts. */
  path: 0o10000000,
} as const;

/** openat2(2) how.resolve. */
export const Resolve = {
  noXdev: 0x01,
  noMagiclinks: 0x02,
  /** No symlink anywhere in the lookup, the last component included (ELOOP). */
  noSymlinks: 0x04,
  /** The lookup must stay below the directory fd: no "..", absolute path or symlink out (EXDEV). */
  beneath: 0x08,
  /** The directory fd is "/" for the lookup: symlinks and ".." resolve inside it, never out. */
  inRoot: 0x10,
} as const;

export const atFdcwd = -100;

/** openat2(2), O_CLOEXEC always; a kernel without it (before 5.6) is a clear error, not ENOSYS. */
export function openat2(dirFd: number, path: string, flags: number, mode: number, resolve: number): number {
  try {
    return nativeAddon('openat2').openat2(dirFd, path, flags, mode, resolve);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSYS') {
      throw new BerthError('not-available', `openat2(2) is missing from this kernel (Linux 5.6 or later has it); berth needs it to open ${path} without following symlinks`, { cause: err });
    }
    // Lead with the code, as Node's own fs errors do ("ENOENT: ...").
    if (e.code && !e.message.startsWith(e.code)) e.message = `${e.code}: ${e.message}`;
    throw err;
  }
}

/** The /proc/self/fd path of an open fd (and of `name` inside it), for syscalls that take only paths. */
export function fdPath(fd: number, name?: string): string {
  return name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

export interface HostPathOptions {
  /** Starts every error message: the field or setting the path came from ("target_path"). */
  label: string;
  /**
   * Where the no-symlink rule starts (default /). The anchor itself is opened as usual: it is
   * the operator's (a root directory in the config), and may legitimately be a symlink.
   */
  beneath?: string;
  /** Create missing directories with this mode (mkdirat, then opened like the others). */
  createMode?: number;
}

/** The path's components below the anchor; a path that is not below it is refused. */
function componentsBelow(path: string, anchor: string, label: string): string[] {
  const trimmed = path.replace(/(.)\/+$/, '$1');
  if (!isAbsolute(trimmed) || normalize(trimmed) !== trimmed) throw new BerthError('invalid-argument', `${label}: "${path}" must be an absolute, normalized path`);
  const rel = relative(anchor, trimmed);
  if (rel === '') return [];
  if (rel.startsWith('..') || isAbsolute(rel)) throw new BerthError('invalid-argument', `${label}: "${path}" is not below ${anchor}`);
  return rel.split('/');
}

/** What an openat2 failure means for a host path: the symlink or non-directory on the way, by name. */
function refusal(err: unknown, at: string, path: string, label: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') {
    const where = at === path ? 'is a symlink' : `goes through a symlink at ${at}`;
    return new BerthError('invalid-argument', `${label}: "${path}" ${where}; berth does not follow symlinks in host paths`);
  }
  if (code === 'EXDEV') return new BerthError('invalid-argument', `${label}: "${path}" leads out of its directory at ${at}`);
  if (code === 'ENOTDIR') return new BerthError('invalid-argument', `${label}: "${path}": ${at} exists and is not a directory`);
  return err;
}

const dirFlags = OpenFlags.path | OpenFlags.directory;
const noSymlinks = Resolve.noSymlinks | Resolve.beneath;

/** One step down from a directory fd: the child directory `name`, created first if asked. */
function stepInto(dirFd: number, name: string, at: string, path: string, options: HostPathOptions): number {
  try {
    return openat2(dirFd, name, dirFlags, 0, noSymlinks);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || options.createMode === undefined) throw refusal(err, at, path, options.label);
  }
  try {
    nativeAddon('mkdirat').mkdirat(dirFd, name, options.createMode);
  } catch (err) {
    // Made by someone else meanwhile: the open below decides whether it is acceptable.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  try {
    return openat2(dirFd, name, dirFlags, 0, noSymlinks);
  } catch (err) {
    throw refusal(err, at, path, options.label);
  }
}

/**
 * An O_PATH fd on the directory `path`, reached one component at a time from the anchor with
 * no symlink followed (a missing directory is created when createMode is set). The caller
 * closes it. A symlink anywhere below the anchor is INVALID_ARGUMENT naming options.label.
 */
export function openDirectory(path: string, options: HostPathOptions): number {
  const anchor = options.beneath ?? '/';
  const parts = componentsBelow(path, anchor, options.label);
  let fd = openat2(atFdcwd, anchor, dirFlags, 0, 0);
  let at = anchor === '/' ? '' : anchor;
  try {
    for (const part of parts) {
      at = `${at}/${part}`;
      const next = stepInto(fd, part, at, path, options);
      closeSync(fd);
      fd = next;
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

/** An O_PATH fd on the parent directory of `path` (as openDirectory) and the last component's name. */
export function openParent(path: string, options: HostPathOptions): { dirFd: number; name: string } {
  const trimmed = path.length > 1 ? path.replace(/\/$/, '') : path;
  const slash = trimmed.lastIndexOf('/');
  const name = trimmed.slice(slash + 1);
  if (!name || name === '.' || name === '..') throw new BerthError('invalid-argument', `${options.label}: "${path}" does not name a file or directory`);
  return { dirFd: openDirectory(trimmed.slice(0, slash) || '/', options), name };
}

/**
 * Open `name` inside the directory fd without following a symlink (on the way or at the end)
 * and without leaving it. With `describe`, a symlink is INVALID_ARGUMENT naming its label.
 */
export function openBeneath(dirFd: number, name: string, flags: number, mode = 0, describe?: { label: string; path: string }): number {
  try {
    // The kernel would refuse a ".." that leaves too, but every ".." lookup it makes under
    // RESOLVE_BENEATH fails with EAGAIN whenever any rename on the host raced it.
    if (name.split('/').includes('..')) throw Object.assign(new Error(`EXDEV: ${name} leads out of its directory`), { code: 'EXDEV' });
    return openat2(dirFd, name, flags, mode, noSymlinks);
  } catch (err) {
    throw describe ? refusal(err, describe.path, describe.path, describe.label) : err;
  }
}

/** Remove `name` (an empty directory or anything else) from the directory fd; absent is fine. */
export function removeAt(dirFd: number, name: string): void {
  const unlinkat = nativeAddon('unlinkat').unlinkat;
  try {
    unlinkat(dirFd, name, true);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'ENOTDIR') throw err;
    unlinkat(dirFd, name, false);
  }
}

/** Run `fn` with an fd, closing it afterwards whatever happens. */
export function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}
