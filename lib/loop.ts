import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { nativeAddon } from './native.js';

// Loop devices for file-backed CSI volumes, through the native addon's ioctls: no losetup spawn
// on the volume publish path. The kernel's own view of what is attached is sysfs, so listing
// reads /sys/block and survives restarts without a state file of ours.

export interface LoopOptions {
  /** Attach read-only: the device refuses writes (and only mounts read-only). */
  readOnly?: boolean;
  /** Bypass the page cache for the backing file, so its data is not cached twice. */
  directIo?: boolean;
}

export interface LoopDevice {
  /** /dev/loopN */
  device: string;
  /** The backing file's path as the kernel reports it, without the ' (deleted)' suffix. */
  backingFile: string;
  /** The device detaches by itself when its last user (a mount) lets go. */
  autoclear: boolean;
  /** The backing file was unlinked while attached. */
  deleted: boolean;
}

const sysBlock = '/sys/block';
const deletedSuffix = ' (deleted)';

/** Attach `file` to a free loop device, which stays attached until detachLoop; returns /dev/loopN. */
export function attachLoop(file: string, options: LoopOptions = {}): string {
  return nativeAddon('loopAttach').loopAttach(file, options.readOnly ?? false, options.directIo ?? false);
}

/**
 * Attach `file` with autoclear and mount the device at `target` (flags and data as for mount(2));
 * the last unmount detaches it, and a failed mount leaves nothing attached. Returns /dev/loopN.
 */
export function attachLoopAndMount(file: string, target: string, fstype: string, flags: number, data = '', options: LoopOptions = {}): string {
  const addon = nativeAddon('loopAttachAndMount');
  return addon.loopAttachAndMount(file, options.readOnly ?? false, options.directIo ?? false, target, fstype, flags, data);
}

/** Detach a loop device; one with nothing attached is fine. A mounted one detaches at its unmount. */
export function detachLoop(device: string): void {
  nativeAddon('loopDetach').loopDetach(device);
}

/** Make the device's size follow its backing file again, after the file grew (volume expansion). */
export function refreshLoopCapacity(device: string): void {
  nativeAddon('loopSetCapacity').loopSetCapacity(device);
}

/** The size in bytes of a block device. */
export function blockDeviceSize(device: string): number {
  return nativeAddon('blockDeviceSize').blockDeviceSize(device);
}

/** The attached loop devices, in device number order. */
export function listLoops(): LoopDevice[] {
  const names = readdirSync(sysBlock).filter((name) => /^loop\d+$/.test(name));
  names.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
  return names.flatMap((name) => {
    const device = readLoopDevice(name);
    return device ? [device] : [];
  });
}

/** The attached loop devices whose backing file lies under the directory `prefix`. */
export function loopsBackedBy(prefix: string): LoopDevice[] {
  const dir = canonicalPath(prefix);
  const under = dir === '/' ? dir : `${dir}/`;
  return listLoops().filter((loop) => loop.backingFile === dir || loop.backingFile.startsWith(under));
}

/** One loop device from sysfs; undefined when nothing is attached (its loop/ directory is absent). */
function readLoopDevice(name: string): LoopDevice | undefined {
  let backing: string, autoclear: string;
  try {
    backing = readFileSync(`${sysBlock}/${name}/loop/backing_file`, 'utf8');
    autoclear = readFileSync(`${sysBlock}/${name}/loop/autoclear`, 'utf8');
  } catch (err) {
    // ENOENT: unattached, or detached between the directory listing and this read.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const path = backing.replace(/\n$/, '');
  const deleted = path.endsWith(deletedSuffix);
  return {
    device: `/dev/${name}`,
    backingFile: deleted ? path.slice(0, -deletedSuffix.length) : path,
    autoclear: autoclear.trim() === '1',
    deleted,
  };
}

/** The kernel reports backing files by their resolved path, so a prefix through a symlink must be resolved too. */
function canonicalPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}
