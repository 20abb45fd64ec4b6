import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CriRuntime } from '../runtime.js';

// Containers RemoveContainer has removed for kubelet whose containerd record is still to be
// deleted. RemoveContainer replies once the container is marked here (an empty file named by its
// ID under the root directory) and deletes the containerd record after the reply; the mark goes
// with the record. A berth-cri killed in between finds the mark at its next start and finishes
// the removal instead of bringing the container back (recover.ts). The file is written without
// fsync: a killed process loses nothing the kernel has; only a machine that loses its page cache
// can lose a mark, and then an exited container's record, whose task is gone with the machine, is
// listed again until kubelet removes it.

function removedDir(rt: CriRuntime): string {
  return join(rt.config.root, 'removed');
}

export function markRemoved(rt: CriRuntime, id: string): void {
  const dir = removedDir(rt);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, id), '');
}

export function clearRemoved(rt: CriRuntime, id: string): void {
  rmSync(join(removedDir(rt), id), { force: true });
}

/** The containers marked removed. */
export function removedIds(rt: CriRuntime): Set<string> {
  try {
    return new Set(readdirSync(removedDir(rt)).filter((name) => /^[0-9a-f]{64}$/.test(name)));
  } catch {
    return new Set();
  }
}
