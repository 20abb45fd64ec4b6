import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { walkUsage } from '../../../../csi-driver/node/usage-walk.js';

// The walk NodeGetVolumeStats makes of an unenforced directory volume: exact on a small tree,
// bounded in entries, depth and time on a hostile one, and never outside the volume.

const roomy = { maxEntries: 1_000_000, maxDepth: 128, timeoutMs: 60_000 };

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-usage-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** What du would count below `root` (not root itself), without following symlinks. */
function expected(root: string): { bytes: number; inodes: number } {
  let bytes = 0;
  let inodes = 0;
  for (const name of readdirSync(root)) {
    const st = lstatSync(join(root, name));
    bytes += st.blocks * 512;
    inodes++;
    if (st.isDirectory()) {
      const below = expected(join(root, name));
      bytes += below.bytes;
      inodes += below.inodes;
    }
  }
  return { bytes, inodes };
}

describe('walkUsage', () => {
  it('counts the bytes and inodes of a small tree exactly, symlinks as themselves', async () => {
    mkdirSync(join(dir, 'a/b/c'), { recursive: true });
    writeFileSync(join(dir, 'a/one'), 'x'.repeat(10_000));
    writeFileSync(join(dir, 'a/b/c/two'), 'y'.repeat(100_000));
    // A symlink to / is one inode here; the walk does not go through it.
    symlinkSync('/', join(dir, 'a/root'));
    const usage = await walkUsage(dir, roomy);
    expect(usage).toEqual(expected(dir));
    expect(usage.incomplete).toBeUndefined();
  });

  it('stops after maxEntries and says so', async () => {
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, `f${i}`), '');
    const usage = await walkUsage(dir, { ...roomy, maxEntries: 10 });
    expect(usage.inodes).toBe(10);
    expect(usage.incomplete).toMatch(/more than 10 entries \(statsWalkMaxEntries\)/);
  });

  it('does not descend below maxDepth and says so', async () => {
    let p = dir;
    for (let i = 0; i < 20; i++) p = join(p, 'd');
    mkdirSync(p, { recursive: true });
    const usage = await walkUsage(dir, { ...roomy, maxDepth: 5 });
    // Levels 1..6 are seen (the sixth as an entry of the fifth), nothing below.
    expect(usage.inodes).toBe(6);
    expect(usage.incomplete).toMatch(/deeper than 5 levels \(statsWalkMaxDepth\)/);
  });

  it('gives up after timeoutMs and says so', async () => {
    for (let i = 0; i < 500; i++) writeFileSync(join(dir, `f${i}`), '');
    let t = 0;
    // A clock that moves 1 ms per look: the walk runs out of time long before 500 entries.
    const usage = await walkUsage(dir, { ...roomy, timeoutMs: 100 }, () => t++);
    expect(usage.inodes).toBeLessThan(500);
    expect(usage.incomplete).toMatch(/longer than 100 ms \(statsWalkTimeoutMs\)/);
  });

  it('lets the event loop run while it walks a large tree', async () => {
    for (let d = 0; d < 10; d++) {
      mkdirSync(join(dir, `d${d}`));
      for (let i = 0; i < 500; i++) writeFileSync(join(dir, `d${d}`, `f${i}`), '');
    }
    let ticks = 0;
    let slowest = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      slowest = Math.max(slowest, now - last);
      last = now;
      ticks++;
    }, 1);
    const usage = await walkUsage(dir, roomy);
    clearInterval(timer);
    expect(usage.inodes).toBe(5010);
    expect(ticks).toBeGreaterThan(0);
    expect(slowest).toBeLessThan(100);
  });

  it('a missing volume directory counts as empty', async () => {
    expect(await walkUsage(join(dir, 'gone'), roomy)).toEqual({ bytes: 0, inodes: 0 });
  });
});
