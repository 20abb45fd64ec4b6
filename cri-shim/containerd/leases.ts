import { randomBytes } from 'node:crypto';
import type { ContainerdClient } from './client.js';

// containerd's Leases service: a lease keeps what berth writes (pulled blobs, unpacked snapshots,
// a container's rootfs while it is being created) from garbage collection until it ends.

/** Delete the leases a previous berth-cri process left (its temporary and pull leases). */
export async function deleteLeftoverLeases(client: ContainerdClient): Promise<string[]> {
  const res = await client.unary<{ leases: { id: string }[] }>('lease list', (md, cb) => client.leases.list({ filters: [] }, md, cb));
  const ours = res.leases.map((l) => l.id).filter((id) => id.startsWith('berth-'));
  for (const id of ours) await client.unary('lease delete', (md, cb) => client.leases.delete({ id, sync: false }, md, cb)).catch(() => undefined);
  return ours;
}

/** A lease keeps what a multi-step operation writes from being collected midway. */
export async function withLease<T>(client: ContainerdClient, fn: (lease: string) => Promise<T>, expireSeconds = 3600): Promise<T> {
  const id = `berth-${randomBytes(8).toString('hex')}`;
  const expire = new Date(Date.now() + expireSeconds * 1000).toISOString();
  await client.unary('lease create', (md, cb) => client.leases.create({ id, labels: { 'containerd.io/gc.expire': expire } }, md, cb));
  try {
    return await fn(id);
  } finally {
    await deleteLease(client, id);
  }
}

export interface TemporaryLease {
  id: string;
  /** Deletes the lease without waiting for containerd. */
  release(): void;
}

/**
 * A lease for the few calls between preparing a container's snapshot and creating the record
 * that references it: without one, a garbage collection in between removes the fresh snapshot.
 * It expires by itself if we crash.
 */
export async function temporaryLease(client: ContainerdClient, expireSeconds = 600, labels: Record<string, string> = {}): Promise<TemporaryLease> {
  const id = `berth-${randomBytes(8).toString('hex')}`;
  const expire = new Date(Date.now() + expireSeconds * 1000).toISOString();
  await client.unary('lease create', (md, cb) => client.leases.create({ id, labels: { ...labels, 'containerd.io/gc.expire': expire } }, md, cb));
  return { id, release: () => void deleteLease(client, id) };
}

/** Delete a lease; resolves once containerd answered, and never rejects (an undeleted temporary lease expires). */
export async function deleteLease(client: ContainerdClient, id: string): Promise<void> {
  await client.unary('lease delete', (md, cb) => client.leases.delete({ id, sync: false }, md, cb)).catch(() => undefined);
}

/**
 * Temporary leases made one ahead: creating a lease is a containerd round trip on the path of
 * every RunPodSandbox and CreateContainer, so a spare waits for the next caller. It is made when
 * a lease is released, not when one is handed out: containerd's metadata store commits one write
 * at a time, so a lease created while the caller prepares its snapshot and stores its record
 * would queue with them (one more commit on CreateContainer's path). A spare older than half its
 * lifetime is dropped and a fresh one made instead; a spare left behind by a crash expires like
 * any temporary lease.
 */
export class LeasePool {
  private spare?: { lease: Promise<TemporaryLease>; createdAt: number };

  constructor(
    private readonly client: ContainerdClient,
    private readonly expireSeconds = 600,
  ) {}

  async acquire(): Promise<TemporaryLease> {
    const spare = this.spare;
    this.spare = undefined;
    let lease: TemporaryLease | undefined;
    if (spare && Date.now() - spare.createdAt < (this.expireSeconds * 1000) / 2) {
      lease = await spare.lease.catch(() => undefined);
    } else if (spare) {
      spare.lease.then((l) => l.release(), () => undefined);
    }
    lease ??= await temporaryLease(this.client, this.expireSeconds);
    const inUse = lease;
    return {
      id: inUse.id,
      release: () => {
        inUse.release();
        this.refill();
      },
    };
  }

  private refill(): void {
    if (this.spare) return;
    const lease = temporaryLease(this.client, this.expireSeconds);
    lease.catch(() => undefined);
    this.spare = { lease, createdAt: Date.now() };
  }
}

/**
 * Put things that may already exist under `lease` (content by digest: `content`; a snapshot:
 * `snapshots/<snapshotter>`). Writing a blob that exists, or finding a committed snapshot, does
 * not lease it; if nothing else refers to it (its image was just removed), a garbage collection
 * between finding it and labelling what points at it would take it from under the pull. A lease
 * may name what does not exist yet, so this goes first, before the existence checks.
 */
export async function leaseResources(client: ContainerdClient, lease: string, resources: readonly { id: string; type: string }[]): Promise<void> {
  // All at once: containerd serializes the writes, but not the round trips (an image of N layers
  // made N+3 of them one after another).
  await Promise.all(resources.map((resource) => client.unary('lease add resource', (md, cb) => client.leases.addResource({ id: lease, resource }, md, cb))));
}
