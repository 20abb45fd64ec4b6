import { lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

// The host's device nodes, for CRI Devices and privileged containers (which get all of them).

export interface HostDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** Permission bits of the node. */
  mode: number;
  uid: number;
  gid: number;
}

// Linux's dev_t split (glibc's gnu_dev_major/minor).
function major(rdev: number): number {
  return Number(((BigInt(rdev) >> 8n) & 0xfffn) | ((BigInt(rdev) >> 32n) & ~0xfffn));
}

function minor(rdev: number): number {
  return Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & ~0xffn));
}

/** The device node at `path` (following symlinks), or undefined if it is not one. */
export function statDevice(path: string): HostDevice | undefined {
  try {
    const st = statSync(path);
    if (!st.isCharacterDevice() && !st.isBlockDevice()) return undefined;
    return { path, type: st.isCharacterDevice() ? 'c' : 'b', major: major(st.rdev), minor: minor(st.rdev), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  } catch {
    return undefined;
  }
}

/** Every device node under /dev, skipping pseudo-terminals and the console (runc sets those up). */
export function listHostDevices(root = '/dev'): HostDevice[] {
  const out: HostDevice[] = [];
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (path === '/dev/pts' || path === '/dev/shm' || path === '/dev/mqueue' || path === '/dev/console' || path === '/dev/ptmx') continue;
      let st;
      try {
        st = lstatSync(path);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(path);
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const dev = statDevice(path);
        if (dev) out.push(dev);
      }
    }
  };
  walk(root);
  return out;
}
