import { createHash, randomBytes } from 'node:crypto';
import type { ServiceError } from '@grpc/grpc-js';
import type { Info as SnapshotInfo } from '../../proto/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.js';
import type { Descriptor } from '../../proto/gen/github.com/containerd/containerd/api/types/descriptor.js';
import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import { type CallOptions, type ContainerdClient, ContainerdError, isAlreadyExists, isNotFound } from './client.js';
import { leaseResources } from './leases.js';

// Snapshots and layer unpacking. A layer's snapshot is named by its chain ID (the OCI rule:
// the first layer's diff ID, then sha256 of "<parent chain ID> <diff ID>"), so images sharing
// layers share snapshots, and an unpack interrupted by a crash resumes at the first missing one.

export const defaultSnapshotter = 'overlayfs';

export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const parent = out[out.length - 1];
    out.push(parent === undefined ? diffId : `sha256:${createHash('sha256').update(`${parent} ${diffId}`).digest('hex')}`);
  }
  return out;
}

export async function statSnapshot(client: ContainerdClient, key: string, snapshotter = defaultSnapshotter): Promise<SnapshotInfo | undefined> {
  try {
    const res = await client.unary<{ info?: SnapshotInfo }>('snapshot stat', (md, cb) => client.snapshots.stat({ snapshotter, key }, md, cb));
    return res.info;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Every snapshot of a snapshotter (a server stream, gathered). */
export function listSnapshots(client: ContainerdClient, snapshotter = defaultSnapshotter, filters: string[] = []): Promise<SnapshotInfo[]> {
  return new Promise((resolve, reject) => {
    const out: SnapshotInfo[] = [];
    const stream = client.snapshots.list({ snapshotter, filters }, client.metadata());
    stream.on('data', (res: { info: SnapshotInfo[] }) => out.push(...res.info));
    stream.on('error', (err: ServiceError) => reject(new ContainerdError('snapshot list', err)));
    stream.on('end', () => resolve(out));
  });
}

export async function prepareSnapshot(
  client: ContainerdClient,
  key: string,
  parent: string,
  options: CallOptions & { snapshotter?: string; labels?: Record<string, string> } = {},
): Promise<Mount[]> {
  const snapshotter = options.snapshotter ?? defaultSnapshotter;
  const res = await client.unary<{ mounts: Mount[] }>(
    'snapshot prepare',
    (md, cb) => client.snapshots.prepare({ snapshotter, key, parent, labels: options.labels ?? {} }, md, cb),
    options,
  );
  return res.mounts;
}

/**
 * A read-only view of `parent` (image volumes). A view that already exists under `key` (a retry,
 * or a CreateContainer cut short by a crash) is reused: its mounts are asked for instead.
 */
export async function viewSnapshot(
  client: ContainerdClient,
  key: string,
  parent: string,
  options: CallOptions & { snapshotter?: string; labels?: Record<string, string> } = {},
): Promise<Mount[]> {
  const snapshotter = options.snapshotter ?? defaultSnapshotter;
  try {
    const res = await client.unary<{ mounts: Mount[] }>(
      'snapshot view',
      (md, cb) => client.snapshots.view({ snapshotter, key, parent, labels: options.labels ?? {} }, md, cb),
      options,
    );
    return res.mounts;
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    return snapshotMounts(client, key, snapshotter);
  }
}

export async function snapshotMounts(client: ContainerdClient, key: string, snapshotter = defaultSnapshotter): Promise<Mount[]> {
  const res = await client.unary<{ mounts: Mount[] }>('snapshot mounts', (md, cb) => client.snapshots.mounts({ snapshotter, key }, md, cb));
  return res.mounts;
}

/** Remove a snapshot; one that is already gone is fine. */
export async function removeSnapshot(client: ContainerdClient, key: string, snapshotter = defaultSnapshotter): Promise<void> {
  try {
    await client.unary('snapshot remove', (md, cb) => client.snapshots.remove({ snapshotter, key }, md, cb));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

export interface LayerToApply {
  descriptor: Descriptor;
  diffId: string;
}

/**
 * Unpack layers into committed snapshots, bottom up, through containerd's diff service (which
 * decompresses and checks the diff ID). Returns the top chain ID: the rootfs parent of
 * containers made from the image.
 */
export async function unpackLayers(client: ContainerdClient, layers: readonly LayerToApply[], options: CallOptions & { snapshotter?: string } = {}): Promise<string> {
  const snapshotter = options.snapshotter ?? defaultSnapshotter;
  const chain = chainIds(layers.map((l) => l.diffId));
  let parent = '';
  for (const [i, layer] of layers.entries()) {
    const chainId = chain[i]!;
    if (options.lease) await leaseResources(client, options.lease, [{ id: chainId, type: `snapshots/${snapshotter}` }]);
    if (await statSnapshot(client, chainId, snapshotter)) {
      parent = chainId;
      continue;
    }
    const key = `extract-${randomBytes(6).toString('hex')} ${chainId}`;
    let mounts: Mount[];
    try {
      mounts = await prepareSnapshot(client, key, parent, { ...options, snapshotter, labels: { 'containerd.io/snapshot.ref': chainId } });
    } catch (err) {
      // Another unpack of the same layers (a pull of ours, or ctr unpacking an image it imports)
      // holds or has committed this chain: it is theirs to finish, and ours to build on.
      if (!isAlreadyExists(err)) throw err;
      parent = chainId;
      continue;
    }
    try {
      const applied = await client.unary<{ applied?: Descriptor }>(
        'diff apply',
        (md, cb) => client.diff.apply({ diff: layer.descriptor, mounts, payloads: {} }, md, cb),
        options,
      );
      if (applied.applied && applied.applied.digest !== layer.diffId) {
        throw new Error(`layer ${layer.descriptor.digest} unpacked to diff ID ${applied.applied.digest}, the image config says ${layer.diffId}`);
      }
      await client.unary(
        'snapshot commit',
        (md, cb) => client.snapshots.commit({ snapshotter, name: chainId, key, labels: { 'containerd.io/snapshot.ref': chainId } }, md, cb),
        options,
      );
    } catch (err) {
      await removeSnapshot(client, key, snapshotter).catch(() => undefined);
      // Another pull of the same image committed it first.
      if (!isAlreadyExists(err)) throw err;
    }
    parent = chainId;
  }
  return parent;
}
