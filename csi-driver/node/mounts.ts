import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { Capability, hasCapability } from '../../lib/capabilities.js';
import { BerthError } from '../../lib/errors.js';
import { run } from '../../lib/exec.js';
import { attachLoop, attachLoopAndMount, detachLoop, listLoops, refreshLoopCapacity } from '../../lib/loop.js';
import { MountFlags, isMountPoint, mount, mountOptionsToFlags, unmountAll } from '../../lib/mount.js';
import type { Driver } from '../driver.js';
import type { VolumeRecord } from '../store/records.js';

// The kernel side of NodeStage/NodePublish: loop devices and mounts, made with the syscalls
// (lib/loop.ts, lib/mount.ts) and checked against /proc/self/mountinfo. Each function is safe
// to call again after a crash half way through it.

function ensureDirectory(path: string): void {
  try {
    if (!lstatSync(path).isDirectory()) throw new BerthError('invalid-argument', `${path} exists and is not a directory`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(path, { recursive: true, mode: 0o750 });
  }
}

/** Block volumes are published onto a file (CSI: the SP creates it). */
function ensureFile(path: string): void {
  try {
    const st = lstatSync(path);
    if (st.isDirectory()) {
      // csi-sanity and some COs create the target as a directory; an empty one becomes our file.
      rmdirSync(path);
    } else return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  closeSync(openSync(path, 'a', 0o600));
}

/** Remove what NodePublish created at a target; a directory with data in it is left alone. */
export function removeTarget(path: string): void {
  try {
    if (lstatSync(path).isDirectory()) rmdirSync(path);
    else unlinkSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
}

/** Apply per-mount flags to a bind mount (bind ignores them on the first call; a remount sets them). */
function remountBind(target: string, flags: number): void {
  if (flags) mount('', target, '', MountFlags.remount | MountFlags.bind | flags);
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
export async function stageVolume(driver: Driver, rec: VolumeRecord, path: string, block: boolean, mountFlags: string[], mountGroup: string): Promise<string | undefined> {
  const { flags, data } = mountOptionsToFlags(mountFlags);
  const source = driver.storage.volumePath(rec);
  if (!existsSync(source)) throw new BerthError('failed-precondition', `volume ${rec.id}: its ${rec.type === 'static' ? 'source' : 'backing'} ${source} is gone`);
  if (block) {
    // The device itself is published later; staging just attaches it (reusing one a crash left).
    if (rec.type === 'static') return source;
    const attached = listLoops().find((l) => l.backingFile === source && !l.deleted);
    return attached?.device ?? attachLoop(source);
  }
  ensureDirectory(path);
  unmountAll(path);
  if (rec.type === 'filesystem') {
    const grow = (rec.fsBytes ?? 0) < rec.capacityBytes;
    // Grown while unstaged: ext4 grows before the mount, xfs (which only grows online) after it.
    if (grow && rec.fsType !== 'xfs') await growExt4Offline(rec, source);
    // Clones and restores carry their source's XFS UUID, which XFS refuses to mount twice.
    const fsData = rec.fsType === 'xfs' ? [...data, 'nouuid'] : data;
    const device = mountChecked(() => attachLoopAndMount(source, path, rec.fsType ?? 'ext4', flags, fsData.join(',')), data);
    if (grow && rec.fsType === 'xfs') await growFilesystem(rec, device, path);
    applyMountGroup(path, mountGroup);
    return device;
  }
  if (rec.type === 'static' && isBlockDevice(source)) {
    mountChecked(() => mount(source, path, rec.fsType ?? 'ext4', flags, data.join(',')), data);
    applyMountGroup(path, mountGroup);
    return undefined;
  }
  // directory volumes and static directories: a bind mount of the directory.
  if (data.length) throw new BerthError('invalid-argument', `volume_capability.mount.mount_flags: ${data.join(',')} only apply to filesystems berth-csi mounts itself, not to directory volumes`);
  mount(source, path, '', MountFlags.bind);
  remountBind(path, flags);
  applyMountGroup(source, mountGroup);
  return undefined;
}

/** Undo stageVolume: unmount (a filesystem volume's autoclear loop goes with it) or detach. */
export function unstageVolume(rec: VolumeRecord, path: string, device: string | undefined, block: boolean): void {
  if (!block) {
    unmountAll(path);
    return;
  }
  if (device && rec.type !== 'static') detachLoop(device);
}

/** Bind the staged volume (or its device) at the target, read-only if asked. */
/**
 * Bind the staged volume (or its device) at the target, read-only if asked. Returns the loop
 * device made for this publication alone: a read-only mount does not stop writes through a
 * device node, so a read-only block publication gets its own read-only loop device over the
 * same bytes.
 */
export function publishVolume(rec: VolumeRecord, backing: string, stagingPath: string, device: string | undefined, target: string, block: boolean, readonly: boolean, mountFlags: string[]): string | undefined {
  const { flags } = mountOptionsToFlags(mountFlags);
  const extra = flags | (readonly ? MountFlags.rdonly : 0);
  if (block) {
    if (!device) throw new BerthError('failed-precondition', `volume ${rec.id} has no device attached; stage it again`);
    ensureFile(target);
    unmountAll(target);
    // Over the image file itself, so start-up recovery sees it among the root's loop devices.
    const own = readonly ? attachLoop(backing, { readOnly: true }) : undefined;
    try {
      mount(own ?? device, target, '', MountFlags.bind);
      remountBind(target, extra);
    } catch (err) {
      unmountAll(target);
      if (own) detachLoop(own);
      throw err;
    }
    return own;
  }
  if (!isMountPoint(stagingPath)) throw new BerthError('failed-precondition', `volume ${rec.id}: nothing is mounted at its staging path ${stagingPath}; stage it again`);
  ensureDirectory(target);
  unmountAll(target);
  mount(stagingPath, target, '', MountFlags.bind);
  remountBind(target, extra);
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
