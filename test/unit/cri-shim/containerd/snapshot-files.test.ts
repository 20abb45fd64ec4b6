import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readRootfsFile } from '../../../../cri-shim/containerd/snapshot-files.js';

const tmp: string[] = [];
afterEach(() => {
  for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('reading image files from snapshot layers', () => {
  function layers(): { upper: string; lower1: string; lower2: string } {
    const root = mkdtempSync(join(tmpdir(), 'berth-layers-'));
    tmp.push(root);
    const dirs = { upper: join(root, 'u'), lower1: join(root, 'l1'), lower2: join(root, 'l2') };
    for (const d of Object.values(dirs)) mkdirSync(join(d, 'etc'), { recursive: true });
    return dirs;
  }
  const overlay = (d: { upper: string; lower1: string; lower2: string }) => [{ type: 'overlay', source: 'overlay', target: '', options: [`upperdir=${d.upper}`, `lowerdir=${d.lower1}:${d.lower2}`, 'workdir=/w'] }];

  it('finds the topmost copy of a file', () => {
    const d = layers();
    writeFileSync(join(d.lower2, 'etc', 'passwd'), 'old');
    writeFileSync(join(d.lower1, 'etc', 'passwd'), 'new');
    expect(readRootfsFile(overlay(d), '/etc/passwd')).toBe('new');
    expect(readRootfsFile(overlay(d), '/etc/group')).toBeUndefined();
  });

  it('honours a whiteout of the file or of its directory', () => {
    const d = layers();
    writeFileSync(join(d.lower2, 'etc', 'passwd'), 'deleted above');
    writeFileSync(join(d.lower1, 'etc', '.wh.passwd'), '');
    expect(readRootfsFile(overlay(d), '/etc/passwd')).toBeUndefined();
    const e = layers();
    writeFileSync(join(e.lower2, 'etc', 'group'), 'x');
    writeFileSync(join(e.lower1, '.wh.etc'), '');
    expect(readRootfsFile(overlay(e), '/etc/group')).toBeUndefined();
  });

  it('reads a single-layer bind snapshot and gives up on other mount kinds', () => {
    const d = layers();
    writeFileSync(join(d.upper, 'etc', 'passwd'), 'bind');
    expect(readRootfsFile([{ type: 'bind', source: d.upper, target: '', options: ['rbind'] }], '/etc/passwd')).toBe('bind');
    expect(readRootfsFile([{ type: 'zfs', source: 'x', target: '', options: [] }], '/etc/passwd')).toBeUndefined();
  });
});
