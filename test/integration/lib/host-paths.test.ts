import { closeSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BerthError } from '../../../lib/errors.js';
import { fdPath, openBeneath, OpenFlags, openDirectory, openParent, removeAt, withFd } from '../../../lib/host-paths.js';
import { bindMountFd, MountFlags, mountsAt, readMountInfo, unmount, unmountAll, UmountFlags } from '../../../lib/mount.js';
import { isRoot } from '../../../world/netns.js';

// Host paths opened through fds (lib/host-paths.ts) and bind mounts by fd (lib/mount.ts
// bindMountFd), against the real kernel: symlinks anywhere on the way are refused, and a path
// swapped for a symlink after it was opened does not redirect the mount. afterEach unmounts
// everything under the test directory, even after a failure.

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-host-paths-'));
});

afterEach(() => {
  // Deepest first, and every mount stacked at a point.
  const points = readMountInfo().map((m) => m.mountPoint).filter((p) => p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
  for (const p of points) unmount(p, UmountFlags.detach);
  rmSync(dir, { recursive: true, force: true });
});

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof BerthError ? `${err.kind}: ${err.message}` : `${(err as NodeJS.ErrnoException).code}`;
  }
  return 'no error';
}

describe.runIf(isRoot)('host paths opened through fds', () => {
  it('opens an existing directory, and creates the missing ones below the anchor', () => {
    const path = join(dir, 'a/b/c');
    withFd(openDirectory(path, { label: 'target_path', createMode: 0o750 }), () => undefined);
    expect(existsSync(path)).toBe(true);
  });

  it('refuses a symlink in an existing ancestor, naming the label and where', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    expect(refusal(() => openDirectory(join(dir, 'link/target'), { label: 'target_path', createMode: 0o750 }))).toMatch(
      new RegExp(`^invalid-argument: target_path: .* goes through a symlink at ${join(dir, 'link')}`),
    );
    expect(readdirSync(join(dir, 'real'))).toEqual([]);
  });

  it('refuses a symlink above an ancestor that does not exist yet, and creates nothing behind it', () => {
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere);
    mkdirSync(join(dir, 'pods'));
    symlinkSync(elsewhere, join(dir, 'pods/uid'));
    expect(refusal(() => openDirectory(join(dir, 'pods/uid/volumes/v/mount'), { label: 'target_path', createMode: 0o750 }))).toMatch(/symlink/);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('refuses a symlink as the last component, also for a file opened beneath a directory fd', () => {
    symlinkSync('/etc', join(dir, 'planted'));
    expect(refusal(() => openDirectory(join(dir, 'planted'), { label: 'staging_target_path' }))).toMatch(/"[^"]+planted" is a symlink/);
    symlinkSync('/etc/hostname', join(dir, 'file-link'));
    const { dirFd, name } = openParent(join(dir, 'file-link'), { label: 'target_path' });
    withFd(dirFd, () => {
      expect(refusal(() => openBeneath(dirFd, name, OpenFlags.path, 0, { label: 'target_path', path: join(dir, 'file-link') }))).toMatch(/is a symlink/);
      expect(refusal(() => openBeneath(dirFd, '../x', OpenFlags.path))).toBe('EXDEV');
    });
  });

  it('refuses a path that is not below its anchor', () => {
    expect(refusal(() => openDirectory('/etc', { label: 'path', beneath: dir }))).toMatch(/is not below/);
    expect(refusal(() => openDirectory(`${dir}/a/../b`, { label: 'path' }))).toMatch(/normalized/);
  });

  it('a bind mount by fd lands on the directory opened, even when the path was swapped for a symlink after the open', () => {
    const source = join(dir, 'source');
    mkdirSync(source);
    writeFileSync(join(source, 'data'), 'volume');
    const pod = join(dir, 'pod');
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere);
    const target = join(pod, 'mount');
    withFd(openDirectory(source, { label: 'source' }), (sourceFd) => {
      withFd(openDirectory(target, { label: 'target_path', createMode: 0o750 }), (targetFd) => {
        // The race a check-then-use by name loses: the pod directory is moved away and a
        // symlink to somewhere else takes its place between the lookup and the mount.
        renameSync(pod, join(dir, 'pod-moved'));
        symlinkSync(elsewhere, pod);
        bindMountFd(sourceFd, targetFd, MountFlags.rdonly);
      });
    });
    expect(mountsAt(join(elsewhere, 'mount'))).toEqual([]);
    expect(readdirSync(elsewhere)).toEqual([]);
    const landed = join(dir, 'pod-moved/mount');
    expect(mountsAt(landed)).toHaveLength(1);
    expect(mountsAt(landed)[0]!.mountOptions).toContain('ro');
    expect(readdirSync(landed)).toEqual(['data']);
  });

  it('a read-only bind by fd refuses writes from the first moment (no writable window before a remount)', () => {
    const source = join(dir, 'source');
    const target = join(dir, 'target');
    mkdirSync(source);
    withFd(openDirectory(source, { label: 'source' }), (s) => withFd(openDirectory(target, { label: 'target', createMode: 0o750 }), (t) => bindMountFd(s, t, MountFlags.rdonly | MountFlags.nosuid | MountFlags.noatime)));
    const [m] = mountsAt(target);
    expect(m!.mountOptions).toEqual(expect.arrayContaining(['ro', 'nosuid', 'noatime']));
    expect(() => writeFileSync(join(target, 'x'), 'x')).toThrow(/EROFS/);
  });

  it('unmounting through the parent fd does not follow a symlink on the way', () => {
    const source = join(dir, 'source');
    const victim = join(dir, 'victim');
    mkdirSync(source);
    // Something mounted where a planted symlink would lead.
    withFd(openDirectory(source, { label: 's' }), (s) => withFd(openDirectory(join(victim, 'mount'), { label: 't', createMode: 0o750 }), (t) => bindMountFd(s, t)));
    mkdirSync(join(dir, 'pod'));
    symlinkSync(victim, join(dir, 'pod/link'));
    expect(refusal(() => openParent(join(dir, 'pod/link/mount'), { label: 'target_path' }))).toMatch(/symlink/);
    // The path-based unmount with UMOUNT_NOFOLLOW still follows the symlinked ancestor; the fd one cannot.
    const { dirFd, name } = openParent(join(victim, 'mount'), { label: 't' });
    withFd(dirFd, () => expect(unmountAll(fdPath(dirFd, name))).toBe(1));
    expect(mountsAt(join(victim, 'mount'))).toEqual([]);
  });

  it('removeAt removes an empty directory or a file, and leaves a directory with data alone', () => {
    mkdirSync(join(dir, 'empty'));
    writeFileSync(join(dir, 'file'), '');
    mkdirSync(join(dir, 'full'));
    writeFileSync(join(dir, 'full/x'), '');
    withFd(openDirectory(dir, { label: 'd' }), (fd) => {
      removeAt(fd, 'empty');
      removeAt(fd, 'file');
      removeAt(fd, 'gone');
      expect(refusal(() => removeAt(fd, 'full'))).toBe('ENOTEMPTY');
    });
    expect(readdirSync(dir).sort()).toEqual(['full']);
  });

  it('fds are closed: opening many paths leaks none', () => {
    const before = readdirSync('/proc/self/fd').length;
    for (let i = 0; i < 50; i++) {
      closeSync(openDirectory(join(dir, `d${i}/e`), { label: 'd', createMode: 0o700 }));
      try {
        openDirectory('/proc/self/exe', { label: 'x' });
      } catch { /* refused */ }
    }
    expect(readdirSync('/proc/self/fd').length).toBeLessThanOrEqual(before + 1);
  });
});
