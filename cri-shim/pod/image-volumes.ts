import { closeSync, existsSync, mkdirSync, readdirSync, readlinkSync, rmdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { atFdcwd, fdPath, openat2, OpenFlags, Resolve } from '../../lib/host-paths.js';
import { bindMountFd, isMountPoint, mount, MountFlags, mountOptionsToFlags, unmount, UmountFlags } from '../../lib/mount.js';
import type { Mount as SnapshotMount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import type { ContainerConfig, Mount as CriMount } from '../../proto/gen/runtime/v1/api.js';
import { listSnapshots, removeSnapshot, viewSnapshot } from '../containerd/snapshots.js';
import type { CriRuntime } from '../runtime.js';
import type { ImageEntry } from '../store/image-store.js';
import type { ImageVolume } from '../store/records.js';

export type { ImageVolume } from '../store/records.js';

// Image volumes (KEP-4639, CRI Mount.image + image_sub_path): kubelet pulls the image first;
// CreateContainer then makes a read-only *view* snapshot of the image's chain, mounts it on the
// host under <state>/image-volumes/<container>/<mount index>, and hands runc a read-only bind of
// it (or of a sub path below it). The view's key is derived from the container ID and the mount
// index, so a retry or a recovery finds the same one; the container record names it in a
// gc.ref label, so containerd keeps it exactly as long as the record. RemoveContainer and
// start-up recovery unmount and remove what no container owns any more.

/** An image volume to make: the mount, the image it resolved to, the sub path asked for. */
export interface ImageVolumePlan {
  index: number;
  image: ImageEntry;
  subPath: string;
}

const keyPrefix = 'berth-imgvol-';

export function imageVolumeKey(containerId: string, index: number): string {
  return `${keyPrefix}${containerId}-${index}`;
}

/** The container ID a view key belongs to (undefined: not one of ours). */
export function containerOfImageVolumeKey(key: string): string | undefined {
  const m = /^berth-imgvol-([0-9a-f]{64})-\d+$/.exec(key);
  return m?.[1];
}

export function imageVolumesRoot(rt: CriRuntime): string {
  return join(rt.config.state, 'image-volumes');
}

function volumeDir(rt: CriRuntime, containerId: string, index: number): string {
  return join(imageVolumesRoot(rt), containerId, String(index));
}

/**
 * The image volumes among a container's mounts, each resolved to an image berth has (kubelet
 * pulled it first) and its sub path checked for form; a host path beside an image is refused.
 */
export function planImageVolumes(mounts: readonly CriMount[], findImage: (ref: string) => ImageEntry | undefined): ImageVolumePlan[] {
  const plans: ImageVolumePlan[] = [];
  mounts.forEach((m, index) => {
    const ref = m.image?.image ?? '';
    if (!ref) {
      if (m.imageSubPath) throw new BerthError('invalid-argument', `config.mounts[${index}].image_sub_path: set without config.mounts[${index}].image`);
      return;
    }
    if (m.hostPath) throw new BerthError('invalid-argument', `config.mounts[${index}].host_path: "${m.hostPath}" set beside an image (an image volume has no host path)`);
    const image = findImage(ref);
    if (!image) throw new BerthError('not-found', `config.mounts[${index}].image: image "${ref}" not found (pull it first)`);
    const subPath = m.imageSubPath.replace(/\/+$/, '');
    if (isAbsolute(subPath)) throw new BerthError('invalid-argument', `config.mounts[${index}].image_sub_path: "${m.imageSubPath}" must be relative to the image's root`);
    plans.push({ index, image, subPath });
  });
  return plans;
}

/** The container labels that keep the views alive as long as the container record. */
export function imageVolumeLabels(snapshotter: string, volumes: readonly ImageVolume[]): Record<string, string> {
  return Object.fromEntries(volumes.map((v) => [`containerd.io/gc.ref.snapshot.${snapshotter}/imgvol-${v.index}`, v.key]));
}

/**
 * The config runc's spec is built from: each image volume becomes a read-only bind of the host
 * path it was mounted at (the record keeps the config as kubelet sent it).
 */
export function withImageVolumeSources(config: ContainerConfig, sources: ReadonlyMap<number, string>): ContainerConfig {
  if (sources.size === 0) return config;
  return { ...config, mounts: config.mounts.map((m, i) => (sources.has(i) ? { ...m, hostPath: sources.get(i)!, readonly: true } : m)) };
}

function openPath(path: string): number {
  return openat2(atFdcwd, path, OpenFlags.path | OpenFlags.directory, 0, 0);
}

/** Mount a view's mounts (one overlay, or one bind for a single-layer image) read-only at `target`. */
function mountView(mounts: readonly SnapshotMount[], target: string, what: string): void {
  if (mounts.length !== 1) throw new BerthError('internal', `${what}: the snapshotter answered ${mounts.length} mounts for a view; berth mounts one`);
  const m = mounts[0]!;
  const readOnly = MountFlags.rdonly | MountFlags.nosuid | MountFlags.nodev;
  if (m.type === 'bind' || m.type === 'rbind') {
    const source = openPath(m.source);
    try {
      const dest = openPath(target);
      try {
        bindMountFd(source, dest, readOnly, m.type === 'rbind' || m.options.includes('rbind'));
      } finally {
        closeSync(dest);
      }
    } finally {
      closeSync(source);
    }
    return;
  }
  if (m.type === 'overlay') {
    const { flags, data } = mountOptionsToFlags(m.options.filter((o) => o !== 'rbind' && o !== 'bind'));
    mount(m.source || 'overlay', target, 'overlay', flags | readOnly, data.join(','));
    return;
  }
  throw new BerthError('internal', `${what}: cannot mount a view of type "${m.type}"`);
}

/**
 * The host path of `subPath` below the mounted view: the lookup stays beneath the view's root
 * (openat2 RESOLVE_BENEATH: no "..", absolute symlink or symlink out of it), and what it finds
 * must exist. The view is read-only, so the path found stays what it was when checked.
 */
export function resolveSubPath(root: string, subPath: string, index: number): string {
  if (!subPath) return root;
  const field = `config.mounts[${index}].image_sub_path`;
  const rootFd = openPath(root);
  let fd: number;
  try {
    fd = openat2(rootFd, subPath, OpenFlags.path, 0, Resolve.beneath | Resolve.noMagiclinks | Resolve.noXdev);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new BerthError('not-found', `${field}: "${subPath}" does not exist in the image`);
    if (code === 'EXDEV' || code === 'ELOOP') throw new BerthError('invalid-argument', `${field}: "${subPath}" leads out of the image's root`);
    throw err;
  } finally {
    closeSync(rootFd);
  }
  try {
    const real = readlinkSync(fdPath(fd));
    if (real !== root && !real.startsWith(`${root}/`)) throw new BerthError('invalid-argument', `${field}: "${subPath}" leads out of the image's root`);
    return real;
  } finally {
    closeSync(fd);
  }
}

/**
 * Make every planned volume: view, host mount, sub path. Idempotent (a view or mount already
 * there is reused). Returns what the record keeps and the host source of each mount index.
 */
export async function mountImageVolumes(
  rt: CriRuntime,
  containerId: string,
  plans: readonly ImageVolumePlan[],
  lease?: string,
): Promise<{ volumes: ImageVolume[]; sources: Map<number, string> }> {
  const volumes: ImageVolume[] = [];
  const sources = new Map<number, string>();
  for (const plan of plans) {
    const key = imageVolumeKey(containerId, plan.index);
    const what = `config.mounts[${plan.index}].image`;
    const mounts = await viewSnapshot(rt.client, key, plan.image.topChainId, { snapshotter: rt.config.snapshotter, ...(lease ? { lease } : {}) });
    volumes.push({ index: plan.index, imageId: plan.image.id, key });
    const dir = volumeDir(rt, containerId, plan.index);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!isMountPoint(dir)) mountView(mounts, dir, what);
    sources.set(plan.index, resolveSubPath(dir, plan.subPath, plan.index));
  }
  return { volumes, sources };
}

/** Mount again what a reboot took away, for a created container that has not started yet. */
export async function remountImageVolumes(rt: CriRuntime, containerId: string, volumes: readonly ImageVolume[]): Promise<void> {
  for (const v of volumes) {
    const dir = volumeDir(rt, containerId, v.index);
    if (isMountPoint(dir)) continue;
    const image = rt.images.byImageId(v.imageId);
    if (!image) throw new Error(`the image ${v.imageId} of its volume ${v.index} is gone`);
    await mountImageVolumes(rt, containerId, [{ index: v.index, image, subPath: '' }]);
  }
}

/** Unmount a container's image volumes from the host and remove their directories (synchronous, cheap). */
export function unmountImageVolumes(rt: CriRuntime, containerId: string): void {
  const dir = join(imageVolumesRoot(rt), containerId);
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const target = join(dir, name);
    // A stacked mount (a retry after a crash mid-mount) comes off too; a busy one lazily.
    for (let n = 0; n < 16 && isMountPoint(target); n++) {
      try {
        unmount(target, UmountFlags.nofollow);
      } catch {
        unmount(target, UmountFlags.detach | UmountFlags.nofollow);
      }
    }
    // rmdir, never a recursive removal: a directory still mounted is refused, not emptied.
    rmdirSync(target);
  }
  rmdirSync(dir);
}

/** Unmount and remove the views of a container (a removed one, or a CreateContainer undone). */
export async function releaseImageVolumes(rt: CriRuntime, containerId: string, keys: readonly string[]): Promise<void> {
  unmountImageVolumes(rt, containerId);
  for (const key of keys) await removeSnapshot(rt.client, key, rt.config.snapshotter);
}

/**
 * Start-up: unmount the volume directories and remove the views of containers that no longer
 * exist (a kill -9 between the view and the record, or during RemoveContainer).
 */
export async function reconcileImageVolumes(rt: CriRuntime, live: ReadonlySet<string>): Promise<void> {
  const root = imageVolumesRoot(rt);
  for (const id of existsSync(root) ? readdirSync(root) : []) {
    if (live.has(id)) continue;
    try {
      unmountImageVolumes(rt, id);
      rt.log.info({ container: id }, 'unmounted the image volumes of a container that no longer exists');
    } catch (err) {
      rt.log.warn({ container: id, err: errorMessage(err) }, 'cannot unmount leftover image volumes');
    }
  }
  const views = await listSnapshots(rt.client, rt.config.snapshotter);
  for (const snap of views) {
    const owner = containerOfImageVolumeKey(snap.name);
    if (!owner || live.has(owner)) continue;
    rt.log.info({ snapshot: snap.name }, 'removing the image volume view of a container that no longer exists');
    await removeSnapshot(rt.client, snap.name, rt.config.snapshotter).catch((err: unknown) => rt.log.warn({ snapshot: snap.name, err: errorMessage(err) }, 'cannot remove a leftover image volume view'));
  }
}
