import { chmodSync, chownSync, closeSync, existsSync, fstatSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { Capability, hasCapability } from '../../lib/capabilities.js';
import { BerthError } from '../../lib/errors.js';
import { run } from '../../lib/exec.js';
import { atFdcwd, fdPath, openat2, openBeneath, OpenFlags, openDirectory, openParent, removeAt, withFd } from '../../lib/host-paths.js';
import { attachLoop, attachLoopAndMount, detachLoop, listLoops, refreshLoopCapacity } from '../../lib/loop.js';
import { bindMountFd, isMountPoint, mount, MountFlags, mountOptionsToFlags, unmountAll } from '../../lib/mount.js';
import type { Driver } from '../driver.js';
import { pausePoint } from '../faults.js';
import type { VolumeRecord } from '../store/records.js';

// The kernel side of NodeStage/NodePublish: loop devices and mounts, made with the syscalls
// (lib/loop.ts, lib/mount.ts) and checked against /proc/self/mountinfo. Each function is safe
// to call again after a crash half way through it. Staging and target paths are kubelet's pod
// directories, which a pod with a hostPath may write into: they are opened once, one component
// at a time and with no symlink followed (lib/host-paths.ts), and mounted through those fds,
// so a symlink swapped in after the check cannot redirect a mount.

/** A path the driver creates and mounts at. */
export interface MountPath {
  path: string;
  /** What errors name: the request field it came from. */
  field: string;
  /** Where the no-symlink rule starts: / for the CO's paths, the root for the driver's own. */
  beneath: string;
}

/** A staging or target path as the CO sent it: no symlink from / down. */
export function coPath(path: string, field: string): MountPath {
  return { path, field, beneath: '/' };
}

/** An O_PATH fd on the directory at `at`, created (mode 0750, parents too) if missing. */
function ensureDirectory(at: MountPath): number {
  return openDirectory(at.path, { label: at.field, beneath: at.beneath, createMode: 0o750 });
}

/** Block volumes are published onto a file (CSI: the SP creates it); an O_PATH fd on it. */
function ensureFile(at: MountPath): number {
  const { dirFd, name } = openParent(at.path, { label: at.field, beneath: at.beneath, createMode: 0o750 });
  const describe = { label: at.field, path: at.path };
  return withFd(dirFd, () => {
    try {
      const fd = openBeneath(dirFd, name, OpenFlags.path, 0, describe);
      if (!fstatSync(fd).isDirectory()) return fd;
      closeSync(fd);
      // csi-sanity and some COs create the target as a directory; an empty one becomes our file.
      removeAt(dirFd, name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      closeSync(openBeneath(dirFd, name, OpenFlags.wronly | OpenFlags.creat | OpenFlags.excl | OpenFlags.nofollow, 0o600, describe));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    return openBeneath(dirFd, name, OpenFlags.path, 0, describe);
  });
}

/** The parent of `path` opened with no symlink on the way; undefined when it is missing or goes through one. */
function openExistingParent(path: string, beneath: string): { dirFd: number; name: string } | undefined {
  try {
    return openParent(path, { label: 'path', beneath });
  } catch (err) {
    // A symlink on the way: what the driver made there is not reachable by this name.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err instanceof BerthError && err.kind === 'invalid-argument')) return undefined;
    throw err;
  }
}

/**
 * Unmount everything stacked at `path`, looked up from its parent's fd (so no symlink on the
 * way is followed; the last component is not followed either, UMOUNT_NOFOLLOW).
 */
export function unmountTarget(path: string, beneath = '/'): number {
  const parent = openExistingParent(path, beneath);
  if (!parent) return 0;
  return withFd(parent.dirFd, (fd) => unmountAll(fdPath(fd, parent.name)));
}

/** Remove what NodePublish created at a target; a directory with data in it is left alone. */
export function removeTarget(path: string, beneath = '/'): void {
  const parent = openExistingParent(path, beneath);
  if (!parent) return;
  withFd(parent.dirFd, (fd) => {
    try {
      removeAt(fd, parent.name);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EBUSY') throw err;
    }
  });
}

/** fsGroup done by the driver (VOLUME_MOUNT_GROUP): the volume's root belongs to the group, setgid. */
function applyMountGroup(dir: string, group: string): void {
  if (!group) return;
  const gid = Number(group);
  if (!Number.isInteger(gid) || gid < 0) throw new BerthError('invalid-argument', `volume_capability.mount.volume_mount_group: "${group}" must be a numeric group ID`);
  const st = statSync(dir);
  chownSync(dir, st.uid, gid);
  chmodSync(dir, (st.mode & 0o777) | 0o2070);
}

/** applyMountGroup on the root of the filesystem just mounted from `device` at `at`, reached without symlinks. */
function applyMountGroupOnMount(at: MountPath, device: string, group: string): void {
  if (!group) return;
  withFd(openDirectory(at.path, { label: at.field, beneath: at.beneath }), (fd) => {
    // The name must still lead to the filesystem just mounted, not to something put there since.
    if (fstatSync(fd).dev !== statSync(device).rdev) throw new BerthError('failed-precondition', `${at.field}: ${at.path} is no longer the mount of ${device}`);
    applyMountGroup(fdPath(fd), group);
  });
}

/** Grow an unmounted ext4 image to its file's size (no capability needed, unlike online resize). */
async function growExt4Offline(rec: VolumeRecord, image: string): Promise<void> {
  // resize2fs refuses an offline resize of a filesystem not checked since its last mount.
  const check = await run('e2fsck', ['-f', '-p', image], { allowFailure: true });
  // 0: clean, 1: errors fixed; anything else needs a human.
  if (check.code > 1) throw new BerthError('failed-precondition', `volume ${rec.id}: e2fsck found errors it could not fix (exit ${check.code})`, { details: check.stderr.trim() });
  await run('resize2fs', [image]);
  rec.fsBytes = rec.capacityBytes;
}

async function growFilesystem(rec: VolumeRecord, device: string, mountPoint: string): Promise<void> {
  refreshLoopCapacity(device);
  if (rec.fsType === 'xfs') await run('xfs_growfs', [mountPoint]);
  else {
    // The kernel wants CAP_SYS_RESOURCE to resize a mounted ext4.
    if (!hasCapability(Capability.sysResource)) {
      throw new BerthError('failed-precondition', `volume ${rec.id}: growing a mounted ext4 filesystem needs CAP_SYS_RESOURCE, which berth-csi lacks here; it grows at its next NodeStage instead (unstage and stage it again)`);
    }
    await run('resize2fs', [device]);
  }
  rec.fsBytes = rec.capacityBytes;
}

/** A mount that fails with EINVAL while filesystem options were passed: the options are the likely cause. */
function mountChecked<T>(fn: () => T, data: string[]): T {
  try {
    return fn();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL' && data.length) {
      throw new BerthError('invalid-argument', `volume_capability.mount.mount_flags: the filesystem refused the options ${data.join(',')} (${(err as Error).message})`);
    }
    throw err;
  }
}

/** The device of a static volume's path, if it is a block device. */
export function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

/** Whether a recorded staging still stands in the kernel (a mount, or our loop device on the image). */
export function stagingIntact(driver: Driver, rec: VolumeRecord): boolean {
  const s = rec.staging;
  if (!s || s.phase !== 'done') return false;
  if (!s.block) return isMountPoint(s.path);
  if (rec.type === 'static') return true;
  const backing = driver.storage.volumePath(rec);
  return listLoops().some((l) => l.device === s.device && l.backingFile === backing && !l.deleted);
}

/** Mount (or attach) a volume for NodeStage; returns the loop device, if any. Updates rec.fsBytes after a grow. */
export async function stageVolume(driver: Driver, rec: VolumeRecord, at: MountPath, block: boolean, mountFlags: string[], mountGroup: string): Promise<string | undefined> {
  const { flags, data } = mountOptionsToFlags(mountFlags);
  const source = driver.storage.volumePath(rec);
  if (!existsSync(source)) throw new BerthError('failed-precondition', `volume ${rec.id}: its ${rec.type === 'static' ? 'source' : 'backing'} ${source} is gone`);
  if (block) {
    // The device itself is published later; staging just attaches it (reusing one a crash left).
    if (rec.type === 'static') return source;
    const attached = listLoops().find((l) => l.backingFile === source && !l.deleted);
    return attached?.device ?? attachLoop(source);
  }
  unmountTarget(at.path, at.beneath);
  const target = ensureDirectory(at);
  try {
    pausePoint('stage:after-open');
    // mount(2) takes the target by name: /proc/self/fd/N names exactly the directory opened above.
    const targetName = fdPath(target);
    if (rec.type === 'filesystem') {
      const grow = (rec.fsBytes ?? 0) < rec.capacityBytes;
      // Grown while unstaged: ext4 grows before the mount, xfs (which only grows online) after it.
      if (grow && rec.fsType !== 'xfs') await growExt4Offline(rec, source);
      // Clones and restores carry their source's XFS UUID, which XFS refuses to mount twice.
      const fsData = rec.fsType === 'xfs' ? [...data, 'nouuid'] : data;
      const device = mountChecked(() => attachLoopAndMount(source, targetName, rec.fsType ?? 'ext4', flags, fsData.join(',')), data);
      if (grow && rec.fsType === 'xfs') await growFilesystem(rec, device, at.path);
      applyMountGroupOnMount(at, device, mountGroup);
      return device;
    }
    if (rec.type === 'static' && isBlockDevice(source)) {
      mountChecked(() => mount(source, targetName, rec.fsType ?? 'ext4', flags, data.join(',')), data);
      applyMountGroupOnMount(at, source, mountGroup);
      return undefined;
    }
    // directory volumes and static directories: a bind mount of the directory.
    if (data.length) throw new BerthError('invalid-argument', `volume_capability.mount.mount_flags: ${data.join(',')} only apply to filesystems berth-csi mounts itself, not to directory volumes`);
    withFd(openat2(atFdcwd, source, OpenFlags.path | OpenFlags.directory, 0, 0), (fd) => bindMountFd(fd, target, flags));
    applyMountGroup(source, mountGroup);
    return undefined;
  } finally {
    closeSync(target);
  }
}

/** Undo stageVolume: unmount (a filesystem volume's autoclear loop goes with it) or detach. */
export function unstageVolume(rec: VolumeRecord, path: string, device: string | undefined, block: boolean): void {
  if (!block) {
    // An ephemeral volume's staging is the driver's own <root>/ephemeral/<id>: checked below the root.
    unmountTarget(path, rec.ephemeral ? dirname(dirname(path)) : '/');
    return;
  }
  if (device && rec.type !== 'static') detachLoop(device);
}

/**
 * Bind the staged volume (or its device) at the target, read-only if asked. Returns the loop
 * device made for this publication alone: a read-only mount does not stop writes through a
 * device node, so a read-only block publication gets its own read-only loop device over the
 * same bytes.
 */
export function publishVolume(rec: VolumeRecord, backing: string, staging: MountPath, device: string | undefined, at: MountPath, block: boolean, readonly: boolean, mountFlags: string[]): string | undefined {
  const { flags } = mountOptionsToFlags(mountFlags);
  const extra = flags | (readonly ? MountFlags.rdonly : 0);
  if (block) {
    if (!device) throw new BerthError('failed-precondition', `volume ${rec.id} has no device attached; stage it again`);
    unmountTarget(at.path, at.beneath);
    return withFd(ensureFile(at), (target) => {
      pausePoint('publish:after-open');
      // Over the image file itself, so start-up recovery sees it among the root's loop devices.
      const own = readonly ? attachLoop(backing, { readOnly: true }) : undefined;
      try {
        withFd(openat2(atFdcwd, own ?? device, OpenFlags.path, 0, 0), (source) => bindMountFd(source, target, extra));
      } catch (err) {
        if (own) detachLoop(own);
        throw err;
      }
      return own;
    });
  }
  if (!isMountPoint(staging.path)) throw new BerthError('failed-precondition', `volume ${rec.id}: nothing is mounted at its staging path ${staging.path}; stage it again`);
  unmountTarget(at.path, at.beneath);
  // The staging path's last lookup crosses into the volume mounted there: the fd is its root.
  withFd(openDirectory(staging.path, { label: staging.field, beneath: staging.beneath }), (source) => {
    withFd(ensureDirectory(at), (target) => {
      pausePoint('publish:after-open');
      bindMountFd(source, target, extra);
    });
  });
  return undefined;
}

/** NodeExpandVolume's node half: the loop device follows its file, the filesystem follows the device. */
export async function expandOnNode(rec: VolumeRecord): Promise<void> {
  const staging = rec.staging;
  if (!staging?.device || rec.type === 'static') return;
  if (staging.block) {
    refreshLoopCapacity(staging.device);
    return;
  }
  if (rec.type === 'filesystem' && (rec.fsBytes ?? 0) < rec.capacityBytes) await growFilesystem(rec, staging.device, staging.path);
}
