import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { attachLoop, attachLoopAndMount, blockDeviceSize, detachLoop, listLoops, loopsBackedBy, refreshLoopCapacity } from '../../../lib/loop.js';
import { unmount, UmountFlags } from '../../../lib/mount.js';
import { isRoot, trySh } from '../../../world/netns.js';

// Real loop devices over sparse files in a fresh temp directory. afterEach unmounts what a test
// mounted and detaches every loop device backed by a file in that directory, even after a failure.

const MiB = 1 << 20;

function skipReason(): string | undefined {
  if (!isRoot) return 'not root';
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  if (trySh('mkfs.ext4', ['-V']).code !== 0) return 'mkfs.ext4 is not installed (e2fsprogs)';
  return undefined;
}

const reason = skipReason();
if (reason) console.log(`skipping loop device integration tests: ${reason}`);

/** A sparse file of `size` bytes. */
function sparseFile(path: string, size: number): string {
  writeFileSync(path, '');
  truncateSync(path, size);
  return path;
}

function sysfsName(device: string): string {
  return device.replace('/dev/', '');
}

/** Whether `device` has a backing file (its sysfs loop/ directory exists only while attached). */
function isAttached(device: string): boolean {
  return existsSync(`/sys/block/${sysfsName(device)}/loop`);
}

async function waitUntil(condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(20)) {
    if (condition()) return true;
  }
  return condition();
}

describe.skipIf(reason !== undefined)('loop devices', () => {
  let dir: string;
  let mounts: string[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-loop-'));
    mounts = [];
  });

  afterEach(() => {
    for (const target of mounts) unmount(target, UmountFlags.detach);
    for (const loop of loopsBackedBy(dir)) detachLoop(loop.device);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A mount point in the test directory, unmounted by afterEach. */
  function mountPoint(name: string): string {
    const target = join(dir, name);
    mkdirSync(target);
    mounts.push(target);
    return target;
  }

  /** An ext4 image of `size` bytes, made by mkfs.ext4 -q -F on a sparse file. */
  function ext4Image(name: string, size = 64 * MiB): string {
    const file = sparseFile(join(dir, name), size);
    execFileSync('mkfs.ext4', ['-q', '-F', file], { stdio: 'pipe' });
    return file;
  }

  it('attaches a sparse file with its size, follows it when it grows, and detaches once', () => {
    const file = sparseFile(join(dir, 'volume.img'), 64 * MiB);
    const device = attachLoop(file);
    expect(device).toMatch(/^\/dev\/loop\d+$/);
    expect(blockDeviceSize(device)).toBe(64 * MiB);
    expect(listLoops()).toContainEqual({ device, backingFile: file, autoclear: false, deleted: false });
    expect(loopsBackedBy(dir).map((l) => l.device)).toEqual([device]);

    truncateSync(file, 96 * MiB);
    expect(blockDeviceSize(device)).toBe(64 * MiB);
    refreshLoopCapacity(device);
    expect(blockDeviceSize(device)).toBe(96 * MiB);

    detachLoop(device);
    expect(listLoops().map((l) => l.device)).not.toContain(device);
    expect(() => detachLoop(device)).not.toThrow();
  });

  it('reports a backing file unlinked while attached as deleted, by its original path', () => {
    const file = sparseFile(join(dir, 'gone.img'), 8 * MiB);
    const device = attachLoop(file);
    unlinkSync(file);
    expect(listLoops()).toContainEqual({ device, backingFile: file, autoclear: false, deleted: true });
    expect(loopsBackedBy(dir).map((l) => l.device)).toEqual([device]);
  });

  it('a read-only device refuses writes', () => {
    const file = sparseFile(join(dir, 'ro.img'), 8 * MiB);
    const device = attachLoop(file, { readOnly: true });
    expect(readFileSync(`/sys/block/${sysfsName(device)}/ro`, 'utf8').trim()).toBe('1');
    // The kernel lets a read-only block device be opened for writing; the write itself fails.
    const fd = openSync(device, 'r+');
    try {
      expect(() => writeSync(fd, Buffer.alloc(512))).toThrow(expect.objectContaining({ code: 'EPERM' }));
    } finally {
      closeSync(fd);
    }
  });

  it('attaches with direct I/O when asked', () => {
    const device = attachLoop(sparseFile(join(dir, 'dio.img'), 8 * MiB), { directIo: true });
    expect(readFileSync(`/sys/block/${sysfsName(device)}/loop/dio`, 'utf8').trim()).toBe('1');
  });

  it('attachLoopAndMount: the mount holds the device, and the unmount detaches it (autoclear)', async () => {
    const file = ext4Image('fs.img');
    const target = mountPoint('mnt');
    const device = attachLoopAndMount(file, target, 'ext4', 0);
    expect(listLoops()).toContainEqual({ device, backingFile: file, autoclear: true, deleted: false });
    writeFileSync(join(target, 'hello'), 'world');
    expect(readFileSync(join(target, 'hello'), 'utf8')).toBe('world');

    unmount(target, 0);
    expect(await waitUntil(() => !isAttached(device))).toBe(true);
    expect(loopsBackedBy(dir)).toEqual([]);
  });

  it('attachLoopAndMount read-only mounts read-only', () => {
    const target = mountPoint('mnt');
    attachLoopAndMount(ext4Image('fs.img'), target, 'ext4', 0, '', { readOnly: true });
    expect(() => writeFileSync(join(target, 'x'), 'y')).toThrow(expect.objectContaining({ code: 'EROFS' }));
  });

  it('a failed mount throws and leaves no loop device attached to the file', async () => {
    const file = ext4Image('fs.img');
    const target = mountPoint('mnt');
    expect(() => attachLoopAndMount(file, target, 'xfs', 0)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'mount' }));
    expect(await waitUntil(() => loopsBackedBy(dir).length === 0)).toBe(true);
  });

  it('a missing backing file throws ENOENT and attaches nothing', () => {
    const file = join(dir, 'missing.img');
    expect(() => attachLoop(file)).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'open', path: file }));
    expect(loopsBackedBy(dir)).toEqual([]);
  });
});
