import { readFileSync } from 'node:fs';
import { nativeAddon } from './native.js';

// mount(2) and umount2(2) through the native addon: a mount(8) spawn costs milliseconds on the
// pod start path, the syscall microseconds.

export const MountFlags = { nosuid: 0x2, nodev: 0x4, noexec: 0x8, rdonly: 0x1, bind: 0x1000, rec: 0x4000 } as const;
export const UmountFlags = { force: 0x1, detach: 0x2 } as const;

export function mount(source: string, target: string, fstype: string, flags: number, data = ''): void {
  nativeAddon('mount').mount(source, target, fstype, flags, data);
}

/** Unmount `target`; one that is not mounted (EINVAL) or gone (ENOENT) is fine. */
export function unmount(target: string, flags: number = UmountFlags.detach): void {
  try {
    nativeAddon('umount2').umount2(target, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
  }
}

/** Whether something is mounted exactly at `path` (this process's mount namespace). */
export function isMountPoint(path: string): boolean {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
  } catch {
    return false;
  }
}
