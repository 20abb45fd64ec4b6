import { BerthError } from '../../lib/errors.js';
import { MountPropagation, type Mount as CriMount } from '../../proto/gen/runtime/v1/api.js';
import type { Mount } from './spec-types.js';

// CRI volume mounts → OCI bind mounts, merged over the defaults and ordered parent-first.

function propagation(p: MountPropagation, index: number): string {
  switch (p) {
    case MountPropagation.PROPAGATION_PRIVATE:
      return 'rprivate';
    case MountPropagation.PROPAGATION_HOST_TO_CONTAINER:
      return 'rslave';
    case MountPropagation.PROPAGATION_BIDIRECTIONAL:
      return 'rshared';
    default:
      throw new BerthError('invalid-argument', `config.mounts[${index}].propagation: unknown value ${String(p)}`);
  }
}

const clean = (p: string): string => (p.length > 1 ? p.replace(/\/+$/, '') : p).replace(/\/{2,}/g, '/');

/**
 * A recursive read-only mount must be read-only (kubelet sends it only with readonly: true) and
 * private: a mount propagated into the tree later would not be read-only. CRI-O and containerd
 * refuse the same two cases.
 */
function checkRecursiveReadOnly(m: CriMount, index: number): void {
  const field = `config.mounts[${index}].recursive_read_only`;
  if (!m.readonly) throw new BerthError('invalid-argument', `${field}: needs readonly: true (a recursive read-only mount cannot be writable)`);
  if (m.propagation !== MountPropagation.PROPAGATION_PRIVATE) {
    throw new BerthError('invalid-argument', `${field}: needs propagation PROPAGATION_PRIVATE, got ${MountPropagation[m.propagation] ?? String(m.propagation)} (mounts propagated in later would be writable)`);
  }
}

/** Indexes of the mounts asking for recursive read-only, each checked; the caller stages them. */
export function recursiveReadOnlyIndexes(mounts: CriMount[]): number[] {
  const out: number[] = [];
  mounts.forEach((m, i) => {
    // An image volume is one read-only view with nothing mounted beneath it: read-only already.
    if (!m.recursiveReadOnly || m.image?.image) return;
    checkRecursiveReadOnly(m, i);
    out.push(i);
  });
  return out;
}

/**
 * `stagedSource`: for a recursive read-only mount, the read-only clone of its host path that
 * cri-shim/pod/rro-mounts.ts made; runc binds that instead of the host path itself.
 */
export function criMount(m: CriMount, index: number, stagedSource?: string): Mount {
  if (!m.containerPath) throw new BerthError('invalid-argument', `config.mounts[${index}].container_path is required`);
  if (!m.containerPath.startsWith('/')) throw new BerthError('invalid-argument', `config.mounts[${index}].container_path: "${m.containerPath}" must be absolute`);
  if (m.uidMappings.length || m.gidMappings.length) throw new BerthError('invalid-argument', `config.mounts[${index}].uid_mappings: idmapped mounts are not supported`);
  if (m.image?.image) {
    // CreateContainer mounts the image's view on the host first (pod/image-volumes.ts) and puts
    // its path here; an image is immutable, so the bind is read-only whatever the mount asks.
    if (!m.hostPath) throw new BerthError('internal', `config.mounts[${index}].image: the image volume was not mounted before the spec was built`);
    return { destination: clean(m.containerPath), type: 'bind', source: m.hostPath, options: ['rbind', 'rprivate', 'ro', 'nosuid', 'nodev'] };
  }
  if (!m.hostPath) throw new BerthError('invalid-argument', `config.mounts[${index}].host_path is required`);
  if (m.recursiveReadOnly) {
    checkRecursiveReadOnly(m, index);
    if (!stagedSource) throw new BerthError('internal', `config.mounts[${index}].recursive_read_only: no read-only copy of "${m.hostPath}" was staged`);
    return { destination: clean(m.containerPath), type: 'bind', source: stagedSource, options: ['rbind', 'rprivate', 'ro'] };
  }
  const options = ['rbind', propagation(m.propagation, index), m.readonly ? 'ro' : 'rw'];
  return { destination: clean(m.containerPath), type: 'bind', source: m.hostPath, options };
}

const depth = (p: string): number => (p === '/' ? 0 : p.split('/').length - 1);

/**
 * Later lists replace earlier entries with the same destination; the result is sorted by path
 * depth (stable), so a parent is always mounted before anything beneath it.
 */
export function mergeMounts(...lists: Mount[][]): Mount[] {
  const byDest = new Map<string, Mount>();
  for (const list of lists) {
    for (const m of list) {
      const dest = clean(m.destination);
      byDest.delete(dest);
      byDest.set(dest, { ...m, destination: dest });
    }
  }
  return [...byDest.values()].map((m, i) => ({ m, i })).sort((a, b) => depth(a.m.destination) - depth(b.m.destination) || a.i - b.i).map((x) => x.m);
}
