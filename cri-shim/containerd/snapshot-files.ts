import { lstatSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';

// Read a small file (like /etc/passwd) from a container's prepared rootfs without mounting it:
// look through the snapshot's layer directories from the top down, honouring overlay whiteouts.
// Mounting would cost a mount(8) spawn per container and leave a mount to leak on a crash.

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

/** The file's content, or undefined when absent (or the mounts are of a kind we cannot read). */
export function readRootfsFile(mounts: readonly Mount[], path: string, maxBytes = 1 << 20): string | undefined {
  const dirs = layerDirs(mounts);
  if (!dirs) return undefined;
  const rel = path.replace(/^\/+/, '');
  for (const dir of dirs) {
    // A whiteout of the file or of any parent directory in this layer hides everything below.
    let hidden = false;
    for (let p = rel; p !== '.' && p !== ''; p = dirname(p)) {
      try {
        lstatSync(join(dir, dirname(p), `.wh.${basename(p)}`));
        hidden = true;
        break;
      } catch {
        /* no whiteout here */
      }
    }
    if (hidden) return undefined;
    try {
      const st = lstatSync(join(dir, rel));
      // overlayfs itself records deletions as 0/0 character devices.
      if (st.isCharacterDevice() && st.rdev === 0) return undefined;
      if (!st.isFile() || st.size > maxBytes) return undefined;
      return readFileSync(join(dir, rel), 'utf8');
    } catch {
      /* not in this layer */
    }
  }
  return undefined;
}
