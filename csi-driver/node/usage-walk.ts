import { closeSync, type Dir, lstatSync, opendirSync } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { atFdcwd, fdPath, openat2, OpenFlags, Resolve } from '../../lib/host-paths.js';

// The bytes and inodes under a directory volume that has no quota to ask (sizeEnforcement:
// unenforced). The tree is the pod's: it can hold millions of files or be thousands of levels
// deep, and it changes while it is walked. So the walk is bounded (entries, depth, time), holds
// one open directory per level rather than a list of paths, runs in short synchronous batches
// with a turn of the event loop between them, and descends through openat2 with no symlink and
// no other mount followed, so a directory swapped for a symlink cannot lead it outside.

export interface UsageWalkLimits {
  /** Entries counted before the walk stops (statsWalkMaxEntries). */
  maxEntries: number;
  /** Directory levels below the volume's root it descends into (statsWalkMaxDepth). */
  maxDepth: number;
  /** Wall-clock time for the whole walk (statsWalkTimeoutMs). */
  timeoutMs: number;
}

export interface DirectoryUsage {
  bytes: number;
  inodes: number;
  /** Why the walk stopped early, when it did: then bytes and inodes are lower bounds. */
  incomplete?: string;
}

/** Work done between two turns of the event loop: whichever limit comes first. */
const batchEntries = 1000;
const batchMs = 5;
/** Longer paths below the root would fail with ENAMETOOLONG (PATH_MAX is 4096 with our prefix). */
const maxRelPathBytes = 4000;

interface Level {
  dir: Dir;
  /** Path below the root ('' for the root itself). */
  rel: string;
}

/** Open a directory below the root fd for reading, refusing symlinks and mount crossings on the way. */
function openLevel(rootFd: number, rel: string): Dir | undefined {
  let fd: number;
  try {
    fd = openat2(rootFd, rel || '.', OpenFlags.rdonly | OpenFlags.directory, 0, Resolve.noSymlinks | Resolve.beneath | Resolve.noXdev);
  } catch {
    // Removed meanwhile, swapped for a symlink, or a mount point: not counted.
    return undefined;
  }
  try {
    return opendirSync(fdPath(fd));
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

export async function walkUsage(root: string, limits: UsageWalkLimits, now: () => number = Date.now): Promise<DirectoryUsage> {
  const usage: DirectoryUsage = { bytes: 0, inodes: 0 };
  let rootFd: number;
  try {
    rootFd = openat2(atFdcwd, root, OpenFlags.path | OpenFlags.directory, 0, 0);
  } catch {
    return usage;
  }
  const rootPath = fdPath(rootFd);
  const deadline = now() + limits.timeoutMs;
  const stack: Level[] = [];
  try {
    const top = openLevel(rootFd, '');
    if (top) stack.push({ dir: top, rel: '' });
    let batchStart = now();
    let inBatch = 0;
    while (stack.length) {
      if (++inBatch >= batchEntries || now() - batchStart >= batchMs) {
        await yieldToLoop();
        batchStart = now();
        inBatch = 0;
        if (batchStart >= deadline) {
          usage.incomplete = `the walk took longer than ${limits.timeoutMs} ms (statsWalkTimeoutMs)`;
          break;
        }
      }
      const level = stack[stack.length - 1]!;
      const entry = level.dir.readSync();
      if (!entry) {
        level.dir.closeSync();
        stack.pop();
        continue;
      }
      const rel = level.rel ? `${level.rel}/${entry.name}` : entry.name;
      let st;
      try {
        st = lstatSync(`${rootPath}/${rel}`);
      } catch {
        continue; // removed while walking
      }
      usage.bytes += st.blocks * 512;
      usage.inodes++;
      if (usage.inodes >= limits.maxEntries) {
        usage.incomplete = `the volume holds more than ${limits.maxEntries} entries (statsWalkMaxEntries)`;
        break;
      }
      if (!st.isDirectory()) continue;
      if (stack.length > limits.maxDepth || Buffer.byteLength(rel) > maxRelPathBytes) {
        usage.incomplete ??= `the tree is deeper than ${limits.maxDepth} levels (statsWalkMaxDepth) or its paths longer than ${maxRelPathBytes} bytes`;
        continue;
      }
      const dir = openLevel(rootFd, rel);
      if (dir) stack.push({ dir, rel });
    }
  } finally {
    for (const level of stack) level.dir.closeSync();
    closeSync(rootFd);
  }
  return usage;
}
