import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError } from './errors.js';

// berth's N-API addon (lib/native): the few syscalls Node lacks. Loaded once, on first use, so
// code that never needs it never pays for it.

/** esbuild defines this as true in dist/ bundles; unbound when running from source. */
declare const BERTH_BUNDLED: boolean | undefined;

export interface NativeAddon {
  withNetns<T>(path: string, fn: () => T): T;
  mkfifo(path: string, mode: number): void;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  newNetns(path: string): void;
  /** A connected non-blocking TCP fd, made inside the netns at netnsPath ("" for ours) without blocking the loop (setns.c). */
  connectTcp(netnsPath: string, host: string, port: number, timeoutMs: number): Promise<number>;
  loopAttach(file: string, readOnly: boolean, directIo: boolean): string;
  loopAttachAndMount(file: string, readOnly: boolean, directIo: boolean, target: string, fstype: string, flags: number, data: string): string;
  loopDetach(device: string): void;
  loopSetCapacity(device: string): void;
  blockDeviceSize(device: string): number;
  setProjectId(dir: string, projectId: number): void;
  getProjectId(path: string): number;
  quotaSetProject(device: string, projectId: number, blockHardLimitBytes: number, inodeHardLimit: number): void;
  quotaGetProject(device: string, projectId: number): { spaceBytes: number; inodes: number; blockHardLimitBytes: number; inodeHardLimit: number };
  syncfs(path: string): void;
  /** dlopen libnvidia-ml + nvmlInit_v2; reference counted, one library per process (lib/native/nvml.c). */
  nvmlOpen(libraryPath: string): void;
  nvmlDevices(): Array<{ index: number; uuid: string; name: string; memoryMiB: number; pciBusId: string }>;
  nvmlProbe(uuid: string): boolean;
  /** Xid and ECC events from a native thread; one watcher per process. */
  nvmlWatchEvents(callback: (uuid: string, kind: 'xid' | 'ecc-double-bit' | 'ecc-single-bit', code: number) => void): void;
  nvmlStopEvents(): void;
  nvmlClose(): void;
  /**
   * The process at the other end of a connected unix socket, as the kernel saw it at connect(2)
   * (SO_PEERCRED), with procFd an open directory fd on that very process's /proc/<pid>
   * (lib/native/peercred.c); the caller closes procFd.
   */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number; procFd: number; pidfd: 'SO_PEERPIDFD' | 'pidfd_open' };
  /** A connected pair of unix stream sockets, close-on-exec (lib/native/peercred.c). */
  socketPair(): [number, number];
  /** openat2(2) with RESOLVE_* flags, O_CLOEXEC always; returns the fd (lib/native/paths.c, lib/host-paths.ts). */
  openat2(dirFd: number, path: string, flags: number, mode: number, resolve: number): number;
  mkdirat(dirFd: number, name: string, mode: number): void;
  unlinkat(dirFd: number, name: string, removeDir: boolean): void;
  /** A bind mount from fd to fd (open_tree, mount_setattr, move_mount): MOUNT_ATTR_* set before it is attached. */
  bindMountFd(sourceFd: number, targetFd: number, attrSet: number, attrClear: number, recursive: boolean): void;
  /** 0 when the kernel has mount_setattr(2), else the errno saying why not (lib/native/mountattr.c). */
  recursiveReadOnlySupported(): number;
  /** A read-only, private clone of the whole mount tree at source, attached at target (lib/native/mountattr.c). */
  recursiveReadOnlyBind(source: string, target: string): void;
  /** One sd_notify(3) datagram to socketPath ('@' for the abstract namespace), never blocking (lib/native/notify.c). */
  sdNotify(socketPath: string, state: string): void;
  /** malloc_trim(0): true when glibc gave memory back (lib/native/memory.c, lib/memory-trim.ts). */
  trimMemory(): boolean;
  /** A user namespace with these uid_map/gid_map texts (and a netns it owns), pinned at the paths (lib/native/idmap.c). */
  newUserns(userPin: string, netPin: string, uidMap: string, gidMap: string): void;
  /** A recursive-or-not bind clone of source, idmapped with the user namespace at usernsPath, attached at target (lib/native/idmap.c). */
  idmapBind(source: string, target: string, usernsPath: string, recursive: boolean): void;
}

let addon: NativeAddon | undefined;

/** Where berth_native.node lives: next to the bundles in dist/native, or the node-gyp output. */
export function nativeAddonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // Bundles sit in dist/<dir>/, so their addon is ../native.
  if (typeof BERTH_BUNDLED !== 'undefined' && BERTH_BUNDLED) return join(here, '../native/berth_native.node');
  return join(here, 'native/build/Release/berth_native.node');
}

/** The addon, checked to export `fn` (an addon built by an older checkout may lack it). */
export function nativeAddon(fn: keyof NativeAddon): NativeAddon {
  if (!addon) {
    const path = nativeAddonPath();
    try {
      addon = createRequire(import.meta.url)(path) as NativeAddon;
    } catch (err) {
      const hint = existsSync(path) ? '' : ' (run `node scripts/build.mjs` to build it)';
      throw new BerthError('not-available', `cannot load the native addon ${path}${hint}`, { cause: err });
    }
  }
  if (typeof addon[fn] !== 'function') {
    throw new BerthError('not-available', `the native addon ${nativeAddonPath()} has no ${fn} (rebuild it with \`node scripts/build.mjs\`)`);
  }
  return addon;
}
