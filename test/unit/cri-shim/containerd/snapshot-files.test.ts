import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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

describe('symlinks in image layers never lead to the host', () => {
  function layer(): string {
    const root = mkdtempSync(join(tmpdir(), 'berth-layer-'));
    tmp.push(root);
    return root;
  }
  const bind = (dir: string) => [{ type: 'bind', source: dir, target: '', options: ['rbind'] }];
  const hostPasswd = readFileSync('/etc/passwd', 'utf8');

  it('an image whose /etc is a symlink to /, to /etc or up with "..", does not read the host /etc/passwd', () => {
    for (const target of ['/', '/etc', '../../../../../../../../../../etc']) {
      const top = layer();
      symlinkSync(target, join(top, 'etc'));
      expect(readRootfsFile(bind(top), '/etc/passwd'), `etc -> ${target}`).toBeUndefined();
    }
    // The same with "..": it climbs no higher than the layer's root.
    const dots = layer();
    mkdirSync(join(dots, 'usr'));
    symlinkSync('../../../../../../../../etc', join(dots, 'usr', 'etc'));
    expect(readRootfsFile(bind(dots), '/usr/etc/passwd')).toBeUndefined();
  });

  it('a symlinked /etc in an upper layer hides the lower layers\' /etc/passwd, and never reads the host\'s', () => {
    const upper = layer();
    const lower = layer();
    symlinkSync('/', join(upper, 'etc'));
    mkdirSync(join(lower, 'etc'));
    writeFileSync(join(lower, 'etc', 'passwd'), 'image:x:1:1::/:/bin/sh\n');
    const mounts = [{ type: 'overlay', source: 'overlay', target: '', options: [`lowerdir=${upper}:${lower}`] }];
    const content = readRootfsFile(mounts, '/etc/passwd');
    expect(content).not.toBe(hostPasswd);
    expect(content).toBeUndefined();
  });

  it('/etc/passwd -> /etc/shadow resolves inside the image: its own shadow or nothing, never the host\'s', () => {
    const top = layer();
    mkdirSync(join(top, 'etc'));
    symlinkSync('/etc/shadow', join(top, 'etc', 'passwd'));
    expect(readRootfsFile(bind(top), '/etc/passwd')).toBeUndefined();
    writeFileSync(join(top, 'etc', 'shadow'), 'the image\'s own\n');
    expect(readRootfsFile(bind(top), '/etc/passwd')).toBe('the image\'s own\n');
  });

  it('a FIFO or a directory where /etc/passwd should be is not read (and does not hang)', () => {
    const top = layer();
    mkdirSync(join(top, 'etc'));
    execFileSync('mkfifo', [join(top, 'etc', 'passwd')]);
    expect(readRootfsFile(bind(top), '/etc/passwd')).toBeUndefined();
    mkdirSync(join(top, 'etc', 'group'));
    expect(readRootfsFile(bind(top), '/etc/group')).toBeUndefined();
  });
});
