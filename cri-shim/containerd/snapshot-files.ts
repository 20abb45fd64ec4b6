import { closeSync, fstatSync, readSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { atFdcwd, openat2, OpenFlags, Resolve } from '../../lib/host-paths.js';
import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';

// Read a small file (like /etc/passwd) from a container's prepared rootfs without mounting it:
// look through the snapshot's layer directories from the top down, honouring overlay whiteouts.
// Mounting would cost a mount(8) spawn per container and leave a mount to leak on a crash.
// The layers are the image's: a symlink in them (/etc -> /, /etc/passwd -> /etc/shadow) means
// something inside the image, never on the host, so every lookup resolves inside its layer's
// root (openat2 RESOLVE_IN_ROOT), as the container itself would see it.

function layerDirs(mounts: readonly Mount[]): string[] | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type === 'bind' || m.type === 'rbind') return [m.source];
  if (m.type !== 'overlay') return undefined;
  const option = (name: string): string | undefined => m.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
  const upper = option('upperdir');
  const lower = option('lowerdir')?.split(':') ?? [];
  return upper ? [upper, ...lower] : lower;
}

/** Open `rel` inside the layer as if the layer were "/"; undefined when it is not there. */
function openInLayer(layerFd: number, rel: string, flags: number): number | undefined {
  try {
    return openat2(layerFd, rel, flags, 0, Resolve.inRoot | Resolve.noMagiclinks | Resolve.noXdev);
  } catch {
    return undefined;
  }
}

/** The kind and device of what `rel` names in the layer (the entry itself, not a symlink's target). */
function lstatInLayer(layerFd: number, rel: string): { isDirectory: boolean; isCharacterDevice: boolean; rdev: number } | undefined {
  const fd = openInLayer(layerFd, rel, OpenFlags.path | OpenFlags.nofollow);
  if (fd === undefined) return undefined;
  try {
    const st = fstatSync(fd);
    return { isDirectory: st.isDirectory(), isCharacterDevice: st.isCharacterDevice(), rdev: st.rdev };
  } finally {
    closeSync(fd);
  }
}

/** The regular file at `rel` in the layer, if it is one of at most maxBytes. */
function readInLayer(layerFd: number, rel: string, maxBytes: number): string | undefined {
  // O_NONBLOCK: a FIFO in an image must not hang the read (it is refused below).
  const fd = openInLayer(layerFd, rel, OpenFlags.rdonly | OpenFlags.nonblock);
  if (fd === undefined) return undefined;
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > maxBytes) return undefined;
    const buf = Buffer.alloc(st.size);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, n);
      if (got === 0) break;
      n += got;
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** The file's content, or undefined when absent (or the mounts are of a kind we cannot read). */
export function readRootfsFile(mounts: readonly Mount[], path: string, maxBytes = 1 << 20): string | undefined {
  const dirs = layerDirs(mounts);
  if (!dirs) return undefined;
  const rel = path.replace(/^\/+/, '');
  for (const dir of dirs) {
    let layerFd: number;
    try {
      layerFd = openat2(atFdcwd, dir, OpenFlags.path | OpenFlags.directory, 0, 0);
    } catch {
      continue;
    }
    try {
      for (let p = rel; p !== '.' && p !== ''; p = dirname(p)) {
        // A whiteout of the file or of any parent directory in this layer hides everything below.
        if (lstatInLayer(layerFd, join(dirname(p), `.wh.${basename(p)}`))) return undefined;
        // So does a parent that is something else than a directory here (/etc -> /, say): the
        // merged view resolves it across layers, which a per-layer read cannot, so: absent.
        if (p !== rel) {
          const parent = lstatInLayer(layerFd, p);
          if (parent && !parent.isDirectory) return undefined;
        }
      }
      // The topmost layer that has the entry decides, as in the overlay: a lower one is hidden.
      const entry = lstatInLayer(layerFd, rel);
      if (!entry) continue;
      // overlayfs itself records deletions as 0/0 character devices.
      if (entry.isCharacterDevice && entry.rdev === 0) return undefined;
      return readInLayer(layerFd, rel, maxBytes);
    } finally {
      closeSync(layerFd);
    }
  }
  return undefined;
}
