import { readFileSync } from 'node:fs';
import { BerthError } from './errors.js';
import { nativeAddon } from './native.js';

// mount(2) and umount2(2) through the native addon: a mount(8) spawn costs milliseconds on the
// pod start path, the syscall microseconds.

export const MountFlags = {
  rdonly: 0x1,
  nosuid: 0x2,
  nodev: 0x4,
  noexec: 0x8,
  synchronous: 0x10,
  remount: 0x20,
  dirsync: 0x80,
  noatime: 0x400,
  nodiratime: 0x800,
  bind: 0x1000,
  rec: 0x4000,
  relatime: 0x200000,
  strictatime: 0x1000000,
} as const;
export const UmountFlags = { force: 0x1, detach: 0x2, nofollow: 0x8 } as const;

export function mount(source: string, target: string, fstype: string, flags: number, data = ''): void {
  nativeAddon('mount').mount(source, target, fstype, flags, data);
}

/** mount_setattr(2) MOUNT_ATTR_* for the per-mount MS_* flags (the others are the superblock's). */
const mountAttrs: [number, number][] = [
  [MountFlags.rdonly, 0x1],
  [MountFlags.nosuid, 0x2],
  [MountFlags.nodev, 0x4],
  [MountFlags.noexec, 0x8],
  [MountFlags.nodiratime, 0x80],
];
const atimeAttrs: [number, number][] = [[MountFlags.noatime, 0x10], [MountFlags.strictatime, 0x20], [MountFlags.relatime, 0]];
const atimeMask = 0x70;

/**
 * Bind mount what `sourceFd` refers to onto what `targetFd` refers to (fds from
 * lib/host-paths.ts, so no symlink swapped in after the lookup can redirect it), with the
 * per-mount flags (ro, nosuid, nodev, noexec, atime) set before the mount appears: unlike
 * mount(MS_BIND) plus a remount, a read-only bind is never writable, not even for a moment.
 */
export function bindMountFd(sourceFd: number, targetFd: number, flags = 0, recursive = false): void {
  let set = 0;
  let clear = 0;
  for (const [flag, attr] of mountAttrs) if (flags & flag) set |= attr;
  const atime = atimeAttrs.find(([flag]) => flags & flag);
  if (atime) {
    set |= atime[1];
    clear |= atimeMask;
  }
  try {
    nativeAddon('bindMountFd').bindMountFd(sourceFd, targetFd, set, clear, recursive);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSYS') throw err;
    throw new BerthError('not-available', `${(err as NodeJS.ErrnoException).syscall}(2) is missing from this kernel: bind mounts by fd need Linux 5.12 or later`, { cause: err });
  }
}

/** Unmount `target`; one that is not mounted (EINVAL) or gone (ENOENT) is fine. */
export function unmount(target: string, flags: number = UmountFlags.detach): void {
  try {
    nativeAddon('umount2').umount2(target, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
  }
}

/** Whether something is mounted exactly at `path` (this process's mount namespace). */
export function isMountPoint(path: string): boolean {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => unescapeMountField(l.split(' ')[4] ?? '') === path);
  } catch {
    return false;
  }
}

/** One line of /proc/self/mountinfo (proc(5)). */
export interface MountInfo {
  /** Path inside the mounted filesystem that appears at the mount point (bind mounts). */
  root: string;
  mountPoint: string;
  mountOptions: string[];
  fstype: string;
  source: string;
  superOptions: string[];
}

/** The kernel writes space, tab, newline and backslash in paths as octal escapes. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    // Optional fields (shared:N, master:N) run up to a lone "-".
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 4) continue;
    mounts.push({
      root: unescapeMountField(fields[3]!),
      mountPoint: unescapeMountField(fields[4]!),
      mountOptions: fields[5]!.split(','),
      fstype: fields[sep + 1]!,
      source: unescapeMountField(fields[sep + 2]!),
      superOptions: fields[sep + 3]!.split(','),
    });
  }
  return mounts;
}

export function readMountInfo(): MountInfo[] {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** The mounts stacked at `path`, bottom first. */
export function mountsAt(path: string, mounts: MountInfo[] = readMountInfo()): MountInfo[] {
  return mounts.filter((m) => m.mountPoint === path);
}

/**
 * Unmount everything stacked at `path` (not lazily: a busy mount is an error the caller sees).
 * umount2 itself says when nothing is left (EINVAL: not a mount point), which spares a read of
 * mountinfo before and after every unmount on the volume publish path.
 */
export function unmountAll(path: string): number {
  for (let n = 0; n <= 64; n++) {
    try {
      // UMOUNT_NOFOLLOW: a symlink planted at the path is never followed to someone else's mount.
      nativeAddon('umount2').umount2(path, UmountFlags.nofollow);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'ENOENT') return n;
      throw err;
    }
  }
  throw new Error(`${path}: still mounted after 64 unmounts`);
}

/** mount(8)-style option words that are mount(2) flags rather than filesystem data. */
const flagWords: Record<string, number> = {
  ro: MountFlags.rdonly,
  nosuid: MountFlags.nosuid,
  nodev: MountFlags.nodev,
  noexec: MountFlags.noexec,
  sync: MountFlags.synchronous,
  dirsync: MountFlags.dirsync,
  noatime: MountFlags.noatime,
  nodiratime: MountFlags.nodiratime,
  relatime: MountFlags.relatime,
  strictatime: MountFlags.strictatime,
};
/** Words that only turn a default back on: nothing to pass. */
const neutralWords = new Set(['rw', 'suid', 'dev', 'exec', 'async', 'atime', 'diratime', 'defaults']);

/** Split option words (as in a StorageClass's mountOptions) into flags and filesystem data. */
export function mountOptionsToFlags(words: readonly string[]): { flags: number; data: string[] } {
  let flags = 0;
  const data: string[] = [];
  for (const raw of words.flatMap((w) => w.split(','))) {
    const word = raw.trim();
    if (!word || neutralWords.has(word)) continue;
    if (flagWords[word] !== undefined) flags |= flagWords[word];
    else data.push(word);
  }
  return { flags, data };
}
