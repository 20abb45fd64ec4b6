import { chownSync, lstatSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { detectCgroupMode } from '../../lib/cgroups/hierarchy.js';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { mount, mountOptionsToFlags, readMountInfo, UmountFlags } from '../../lib/mount.js';
import { nativeAddon } from '../../lib/native.js';
import type { Mount as SnapshotMount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import type { IdmapPlan, PodUserns } from '../oci/userns.js';
import type { LinuxIDMapping } from '../oci/spec-types.js';
import type { CriRuntime } from '../runtime.js';

// The executor for cri-shim/oci/userns.ts's plans: the pod's user namespace (and the network
// namespace it owns) pinned under the pod's directory, and each container's staged idmapped
// mounts under <pod dir>/idmap/<container id>/. Everything here is a mount in berth-cri's own
// mount namespace; runc bind-mounts the staged paths into the container, so unmounting them at
// removal leaves the container's copies alone and the host clean.

/** Where the pod's user namespace is pinned (a bind mount of /proc/<pid>/ns/user). */
export function usernsPinPath(sandboxDir: string): string {
  return join(sandboxDir, 'userns');
}

/** A container's (or the pause's) staging directory. */
export function idmapStageDir(sandboxDir: string, id: string): string {
  return join(sandboxDir, 'idmap', id);
}

const mapText = (maps: LinuxIDMapping[]): string => maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join('');

/**
 * The pod's user namespace with kubelet's mappings, and its network namespace owned by it (so
 * the pause can mount sysfs, and CNI still enters it from outside): both pinned, no process kept.
 */
export function createPodUserns(sandboxDir: string, netnsPath: string, userns: PodUserns): string {
  const pin = usernsPinPath(sandboxDir);
  mkdirSync(sandboxDir, { recursive: true, mode: 0o711 });
  mkdirSync(dirname(netnsPath), { recursive: true, mode: 0o755 });
  nativeAddon('newUserns').newUserns(pin, netnsPath, mapText(userns.uidMappings), mapText(userns.gidMappings));
  return pin;
}

/** The host ids the pod's root maps to: the owner the rootfs's writable layer must have. */
function hostRoot(userns: PodUserns): { uid: number; gid: number } {
  const uid = userns.uidMappings.find((m) => m.containerID === 0)!.hostID;
  const gid = userns.gidMappings.find((m) => m.containerID === 0)!.hostID;
  return { uid, gid };
}

/**
 * Mount the container's rootfs at plan.rootfs over idmapped layers: overlayfs cannot itself be
 * idmapped, but its lower layers can. The snapshotter's directory holding the layers is cloned
 * once with the pod's mapping, the lowerdirs are rewritten into the clone, and the (plain) upper
 * layer is given to the pod's root, so what the container writes is stored as its host ids.
 */
function stageRootfs(stageDir: string, rootfs: string, mounts: SnapshotMount[], usernsPath: string, owner: { uid: number; gid: number }): void {
  mkdirSync(rootfs, { recursive: true, mode: 0o755 });
  if (mounts.length !== 1) throw new BerthError('failed-precondition', `rootfs: ${mounts.length} snapshot mounts; a user-namespaced pod needs exactly one`);
  const m = mounts[0]!;
  if (m.type === 'bind' || m.type === 'rbind') {
    // A snapshot without parents: the directory is the whole rootfs.
    nativeAddon('idmapBind').idmapBind(m.source, rootfs, usernsPath, true);
    return;
  }
  if (m.type !== 'overlay') throw new BerthError('failed-precondition', `rootfs: snapshot mount type "${m.type}" cannot be idmapped (overlay or bind only)`);
  const roots = new Map<string, string>();
  const options = m.options.map((o) => {
    if (o.startsWith('upperdir=')) {
      chownSync(o.slice('upperdir='.length), owner.uid, owner.gid);
      return o;
    }
    if (!o.startsWith('lowerdir=')) return o;
    const lowers = o
      .slice('lowerdir='.length)
      .split(':')
      .map((dir) => {
        // A layer is <snapshots>/<n>/fs: clone <snapshots> once for all the layers under it.
        const root = dirname(dirname(dir));
        let clone = roots.get(root);
        if (!clone) {
          clone = join(stageDir, `layers${roots.size}`);
          mkdirSync(clone, { mode: 0o700 });
          nativeAddon('idmapBind').idmapBind(root, clone, usernsPath, false);
          roots.set(root, clone);
        }
        return join(clone, basename(dirname(dir)), basename(dir));
      });
    return `lowerdir=${lowers.join(':')}`;
  });
  const { flags, data } = mountOptionsToFlags(options);
  const text = data.join(',');
  if (text.length >= 4096) throw new BerthError('failed-precondition', `rootfs: the overlay options are ${text.length} bytes, over a page: too many layers for a user-namespaced pod`);
  mount('overlay', rootfs, 'overlay', flags, text);
}

/**
 * Make every mount of the plan: the rootfs, then one idmapped clone per bind. A failure leaves
 * what was made for unstageIdmapMounts (the caller's undo).
 */
export function stageIdmapMounts(stageDir: string, plan: IdmapPlan, rootfsMounts: SnapshotMount[], usernsPath: string, userns: PodUserns): void {
  mkdirSync(stageDir, { recursive: true, mode: 0o711 });
  stageRootfs(stageDir, plan.rootfs, rootfsMounts, usernsPath, hostRoot(userns));
  for (const b of plan.binds) {
    let isDir: boolean;
    try {
      isDir = statSync(b.source).isDirectory();
    } catch (err) {
      throw new BerthError('invalid-argument', `mount ${b.destination}: source ${b.source} cannot be used: ${errorMessage(err)}`, { cause: err });
    }
    if (isDir) mkdirSync(b.target, { mode: 0o755 });
    else writeFileSync(b.target, '', { mode: 0o644, flag: 'wx' });
    try {
      nativeAddon('idmapBind').idmapBind(b.source, b.target, usernsPath, true);
    } catch (err) {
      throw new BerthError('failed-precondition', `mount ${b.destination}: cannot idmap ${b.source} for the pod's user namespace: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/**
 * Unmount everything mounted at or below `dir` (deepest first, detached), and say what is still
 * there; a directory is only deleted by the caller once nothing is, so a recursive delete never
 * walks into a volume.
 */
export function unmountBelow(dir: string): string[] {
  const under = (): string[] => readMountInfo().map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(`${dir}/`));
  for (const p of under().sort((a, b) => b.length - a.length)) {
    try {
      nativeAddon('umount2').umount2(p, UmountFlags.detach | UmountFlags.nofollow);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
    }
  }
  return under();
}

/** Unmount and delete a staging directory; a missing one is fine. */
export function unstageIdmapMounts(stageDir: string): void {
  const left = unmountBelow(stageDir);
  if (left.length) throw new BerthError('io', `${stageDir}: still mounted after unmounting: ${left.join(', ')}`);
  rmSync(stageDir, { recursive: true, force: true });
}

/** Staging directories under a live pod whose container is gone (a crash between steps). */
export function strayStageDirs(sandboxDir: string, liveIds: ReadonlySet<string>): string[] {
  const root = join(sandboxDir, 'idmap');
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names.filter((n) => !liveIds.has(n)).map((n) => join(root, n));
}

/** Unpin the pod's user namespace; a missing pin is fine. */
export function deletePodUserns(sandboxDir: string): void {
  const pin = usernsPinPath(sandboxDir);
  try {
    lstatSync(pin);
  } catch {
    return;
  }
  unmountBelow(pin);
  rmSync(pin, { force: true });
}

// Once per runtime: can this kernel pin a user namespace and idmap a mount with it?
const probed = new WeakMap<CriRuntime, string>();

function probeKernel(stateDir: string): string {
  const dir = join(stateDir, `userns-probe-${process.pid}`);
  try {
    mkdirSync(join(dir, 'src'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'dst'), { mode: 0o700 });
    nativeAddon('newUserns').newUserns(join(dir, 'user'), '', '0 1000000 1\n', '0 1000000 1\n');
    nativeAddon('idmapBind').idmapBind(join(dir, 'src'), join(dir, 'dst'), join(dir, 'user'), false);
    return '';
  } catch (err) {
    return `this kernel cannot make idmapped mounts (${errorMessage(err)})`;
  } finally {
    const left = unmountBelow(dir);
    if (!left.length) rmSync(dir, { recursive: true, force: true });
  }
}

// OCI runtimes known to join a user namespace by path with the mappings given (runc 1.1, crun 1.8).
const knownRuntimes = new Set(['runc', 'crun']);

/** Why `handler` cannot run user-namespaced pods; '' when it can. */
export function usernsUnsupported(rt: CriRuntime, handler: string): string {
  let kernel = probed.get(rt);
  if (kernel === undefined) {
    kernel = probeKernel(rt.config.state);
    probed.set(rt, kernel);
    if (kernel) rt.log.warn({ reason: kernel }, 'user namespaces unavailable');
  }
  if (kernel) return kernel;
  const binary = rt.config.runtimeHandlers[handler]?.binary ?? '';
  if (!knownRuntimes.has(basename(binary))) return `runtime handler "${handler}" runs ${binary || 'an unknown runtime'}, not known to join a pod's user namespace`;
  // Seen here: crun 1.8 refuses a user-namespaced container on a hybrid v1/v2 cgroup host
  // ("cgroups in hybrid mode not supported"); runc sets the same container up.
  if (basename(binary) === 'crun' && detectCgroupMode() === 'hybrid') return `runtime handler "${handler}" (crun) cannot set up cgroups for a user-namespaced container on this hybrid cgroup v1/v2 host`;
  return '';
}
