import { BerthError } from '../../lib/errors.js';
import { type IDMapping, NamespaceMode, type NamespaceOption } from '../../proto/gen/runtime/v1/api.js';
import type { LinuxIDMapping, Mount, Spec } from './spec-types.js';

// User namespaces for pods (hostUsers: false, NamespaceOption.userns_options mode POD): the
// pause and every container join one user namespace with kubelet's mappings, pinned under the
// pod's directory before the pause exists. runc 1.1 cannot idmap mounts, so the rootfs and every
// bind mount are handed to it as staged, already idmapped, mounts under a per-container staging
// directory (cri-shim/pod/userns.ts makes them). This file only validates and plans.

export interface PodUserns {
  uidMappings: LinuxIDMapping[];
  gidMappings: LinuxIDMapping[];
}

// The kernel accepts at most 340 lines in a uid_map or gid_map (since 4.15).
const maxMapLines = 340;
const idLimit = 2 ** 32;

function mappings(list: IDMapping[], field: string): LinuxIDMapping[] {
  if (list.length === 0) throw new BerthError('invalid-argument', `${field}: at least one mapping is required for mode POD`);
  if (list.length > maxMapLines) throw new BerthError('invalid-argument', `${field}: ${list.length} mappings, the kernel takes at most ${maxMapLines}`);
  const out = list.map((m, i): LinuxIDMapping => {
    const at = `${field}[${i}]`;
    for (const [name, v] of [['host_id', m.hostId], ['container_id', m.containerId], ['length', m.length]] as const) {
      if (!Number.isInteger(v) || v < 0 || v >= idLimit) throw new BerthError('invalid-argument', `${at}.${name}: ${v} is not a 32-bit id`);
    }
    if (m.length === 0) throw new BerthError('invalid-argument', `${at}.length: must be at least 1`);
    if (m.containerId + m.length > idLimit || m.hostId + m.length > idLimit) throw new BerthError('invalid-argument', `${at}.length: ${m.length} runs past the last 32-bit id`);
    // Host root inside a pod's range would make the pod's root the node's root: no isolation.
    if (m.hostId === 0) throw new BerthError('invalid-argument', `${at}.host_id: 0 maps the node's root into the pod`);
    return { containerID: m.containerId, hostID: m.hostId, size: m.length };
  });
  const overlap = (key: 'containerID' | 'hostID'): void => {
    const sorted = out.map((m, i) => ({ m, i })).sort((a, b) => a.m[key] - b.m[key]);
    for (let k = 1; k < sorted.length; k++) {
      const prev = sorted[k - 1]!.m;
      if (sorted[k]!.m[key] < prev[key] + prev.size) {
        throw new BerthError('invalid-argument', `${field}[${sorted[k]!.i}].${key === 'hostID' ? 'host_id' : 'container_id'}: overlaps ${field}[${sorted[k - 1]!.i}]`);
      }
    }
  };
  overlap('containerID');
  overlap('hostID');
  if (!out.some((m) => m.containerID === 0)) throw new BerthError('invalid-argument', `${field}: container id 0 (root) is not mapped`);
  return out;
}

const sameMappings = (a: LinuxIDMapping[], b: LinuxIDMapping[]): boolean =>
  a.length === b.length && a.every((m, i) => m.containerID === b[i]!.containerID && m.hostID === b[i]!.hostID && m.size === b[i]!.size);

/**
 * The pod's user namespace from its sandbox security context, validated; undefined for mode
 * NODE (or none). CONTAINER and TARGET are refused, as containerd does: a pod has one.
 */
export function podUserns(o: NamespaceOption | undefined, prefix: string): PodUserns | undefined {
  const userns = o?.usernsOptions;
  const field = `${prefix}.namespace_options.userns_options`;
  if (!userns || userns.mode === NamespaceMode.NODE) {
    if (userns && (userns.uids.length || userns.gids.length)) throw new BerthError('invalid-argument', `${field}.uids: mappings are only for mode POD`);
    return undefined;
  }
  if (userns.mode !== NamespaceMode.POD) {
    throw new BerthError('invalid-argument', `${field}.mode: ${NamespaceMode[userns.mode] ?? userns.mode} user namespaces are not supported (only POD and NODE)`);
  }
  const uidMappings = mappings(userns.uids, `${field}.uids`);
  const gidMappings = mappings(userns.gids, `${field}.gids`);
  // kubelet hands one range for both; a differing one is a client bug we would not notice later.
  if (!sameMappings(uidMappings, gidMappings)) throw new BerthError('invalid-argument', `${field}.gids: must equal uids (kubelet maps the same range for both)`);
  return { uidMappings, gidMappings };
}

/**
 * A container's userns_options against its pod's: unset follows the pod; POD must name the
 * pod's very mappings (or none); anything else would leave the pod's namespaces, and is refused.
 */
export function containerUserns(own: NamespaceOption | undefined, pod: PodUserns | undefined, prefix: string): PodUserns | undefined {
  const userns = own?.usernsOptions;
  const field = `${prefix}.namespace_options.userns_options`;
  if (!userns) return pod;
  if (userns.mode === NamespaceMode.NODE && !userns.uids.length && !userns.gids.length) {
    if (pod) throw new BerthError('invalid-argument', `${field}.mode: NODE, but the pod runs in its own user namespace (a container cannot leave it)`);
    return undefined;
  }
  if (!pod && userns.mode === NamespaceMode.POD) throw new BerthError('invalid-argument', `${field}.mode: POD, but the pod sandbox runs in the node's user namespace`);
  // kubelet repeats the pod's mappings here; none at all means the pod's.
  const mine = userns.mode === NamespaceMode.POD && !userns.uids.length && !userns.gids.length ? undefined : podUserns(own, prefix);
  if (!pod) throw new BerthError('invalid-argument', `${field}.mode: POD, but the pod sandbox runs in the node's user namespace`);
  if (mine && (!sameMappings(mine.uidMappings, pod.uidMappings) || !sameMappings(mine.gidMappings, pod.gidMappings))) {
    throw new BerthError('invalid-argument', `${field}.uids: differ from the pod sandbox's mappings`);
  }
  return pod;
}

/** Host-side namespaces a user-namespaced pod cannot share: kubelet refuses them too. */
export function refuseHostNamespaces(o: NamespaceOption | undefined, privileged: boolean, prefix: string): void {
  for (const ns of ['network', 'pid', 'ipc'] as const) {
    if (o?.[ns] === NamespaceMode.NODE) throw new BerthError('invalid-argument', `${prefix}.namespace_options.${ns}: NODE cannot be combined with userns_options mode POD`);
  }
  if (privileged) throw new BerthError('invalid-argument', `${prefix}.privileged: a privileged container cannot run in a user namespace`);
}

/** Join the pod's user namespace at `path` with its mappings (runc needs both to chown what it creates). */
export function applyUserns(spec: Spec, userns: PodUserns, path: string): void {
  const linux = (spec.linux ??= {});
  linux.namespaces = [...(linux.namespaces ?? []).filter((n) => n.type !== 'user'), { type: 'user', path }];
  linux.uidMappings = userns.uidMappings.map((m) => ({ ...m }));
  linux.gidMappings = userns.gidMappings.map((m) => ({ ...m }));
}

/** One idmapped bind the executor stages: a clone of `source`, idmapped, attached at `target`. */
export interface StagedBind {
  source: string;
  target: string;
  /** The destination in the container, for error messages. */
  destination: string;
}

export interface IdmapPlan {
  /** The staged rootfs: the overlay over idmapped layers is mounted here; runc gets it as root.path. */
  rootfs: string;
  binds: StagedBind[];
}

const isBind = (m: Mount): boolean => m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');

/**
 * Point the spec at staged mounts under `stageDir`: root.path becomes stageDir/rootfs and every
 * bind mount's source the idmapped clone at stageDir/m<N>. The spec is changed in place; the
 * plan says what the executor must mount, and where.
 */
export function planIdmapMounts(spec: Spec, stageDir: string): IdmapPlan {
  const rootfs = `${stageDir}/rootfs`;
  spec.root = { ...(spec.root ?? { path: 'rootfs' }), path: rootfs };
  const binds: StagedBind[] = [];
  spec.mounts = (spec.mounts ?? []).map((m) => {
    if (!isBind(m) || !m.source) return m;
    const target = `${stageDir}/m${binds.length}`;
    binds.push({ source: m.source, target, destination: m.destination });
    return { ...m, source: target };
  });
  return { rootfs, binds };
}
