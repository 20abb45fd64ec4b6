import { randomBytes } from 'node:crypto';
import { errorMessage } from '../../lib/errors.js';
import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import type { ContainerdClient } from '../containerd/client.js';
import { deleteLease, type TemporaryLease, temporaryLease } from '../containerd/leases.js';
import { prepareSnapshot, removeSnapshot } from '../containerd/snapshots.js';

// Container rootfs snapshots prepared ahead of CreateContainer. A CreateContainer makes two
// writes in containerd: the rootfs snapshot and the container record. containerd's metadata
// store commits one write at a time, so the two queue behind each other. With a rootfs ready,
// CreateContainer only stores the record. So after each CreateContainer, a rootfs on the same
// image is prepared for the next one.
//
// The snapshot's key is the container ID that will use it, as for any container (containerd's
// CRI names them so, and recovery matches snapshots to records by it). So the ID is chosen
// when the spare is prepared, and CreateContainer takes it with the snapshot. The spare is
// prepared after CreateContainer's reply (pod/after-reply.ts), not on its path.
//
// Bounded: one spare per image (its top chain ID), for the `maxImages` images used last; a
// spare unused for `idleMs` is removed, so an idle node keeps none. Each is held by a lease of
// its own (an ID starting "berth-", labelled spareLeaseLabel=<snapshot key>) that ends when the
// container record takes over. After a crash, recovery deletes berth's leftover leases and
// every active snapshot no record refers to; spares included. Without recovery, the lease
// expires after leaseExpireSeconds and containerd's garbage collection takes the snapshot.

/** The label a spare's lease carries; its value is the key (the future container ID) of the snapshot it holds. */
export const spareLeaseLabel = 'berth.io/spare-rootfs';

/** A spare outlives no lease: the idle timeout is far inside this. */
const leaseExpireSeconds = 3600;

export interface SpareRootfs {
  /** The container ID to use: the snapshot's key. */
  id: string;
  mounts: Mount[];
  /** Holds the snapshot until the container record refers to it; release it after that. */
  lease: TemporaryLease;
}

export interface SpareRootfsOptions {
  /** Images that keep a spare at once; 0 turns spares off. */
  maxImages: number;
  /** A spare not taken for this long is removed. */
  idleMs: number;
}

interface Entry {
  spare: Promise<SpareRootfs | undefined>;
  idle?: NodeJS.Timeout;
}

export class SpareRootfsPool {
  /** By top chain ID, least recently used first (a Map keeps insertion order). */
  private readonly entries = new Map<string, Entry>();
  /** Removals under way, for close() to wait for. */
  private readonly removing = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly client: ContainerdClient,
    private readonly snapshotter: string,
    private readonly log: { debug(fields: object, msg: string): void; warn(fields: object, msg: string): void },
    private readonly options: SpareRootfsOptions,
  ) {}

  /**
   * The spare on the image with top chain `chainId`, now the caller's (its snapshot and lease),
   * or undefined. One still being prepared is waited for: it is as far along as a new prepare.
   */
  async take(chainId: string): Promise<SpareRootfs | undefined> {
    const entry = this.entries.get(chainId);
    if (!entry) return undefined;
    this.entries.delete(chainId);
    clearTimeout(entry.idle);
    return entry.spare;
  }

  /**
   * Prepare a spare on `chainId` unless it has one (call it after the reply: pod/after-reply.ts).
   * The least recently used image past maxImages loses its spare.
   */
  refill(chainId: string): void {
    if (this.closed || this.options.maxImages <= 0) return;
    const existing = this.entries.get(chainId);
    if (existing) {
      this.entries.delete(chainId);
      this.entries.set(chainId, existing);
      return;
    }
    const entry: Entry = { spare: this.prepare(chainId) };
    this.entries.set(chainId, entry);
    void entry.spare.then((spare) => {
      // Taken or dropped meanwhile: no timer for it.
      if (this.entries.get(chainId) !== entry) return;
      if (!spare) {
        this.entries.delete(chainId);
        return;
      }
      entry.idle = setTimeout(() => {
        if (this.entries.get(chainId) !== entry) return;
        this.entries.delete(chainId);
        this.log.debug({ snapshot: spare.id }, 'removing a spare container rootfs nobody took');
        this.discard(entry);
      }, this.options.idleMs);
      entry.idle.unref();
    });
    for (const [oldest, old] of this.entries) {
      if (this.entries.size <= this.options.maxImages) break;
      this.entries.delete(oldest);
      clearTimeout(old.idle);
      this.discard(old);
    }
  }

  /** Remove the spare on `chainId` (its image is being removed: the spare would keep its layers). */
  async drop(chainId: string): Promise<void> {
    const entry = this.entries.get(chainId);
    if (!entry) return;
    this.entries.delete(chainId);
    clearTimeout(entry.idle);
    await this.discard(entry);
  }

  /** Remove every spare, and make no more. */
  async close(): Promise<void> {
    this.closed = true;
    for (const [chainId, entry] of this.entries) {
      this.entries.delete(chainId);
      clearTimeout(entry.idle);
      this.discard(entry);
    }
    await Promise.all(this.removing);
  }

  /** Spares held now or being prepared (for tests). */
  get size(): number {
    return this.entries.size;
  }

  private async prepare(chainId: string): Promise<SpareRootfs | undefined> {
    if (this.closed) return undefined;
    const id = randomBytes(32).toString('hex');
    let lease: TemporaryLease | undefined;
    try {
      lease = await temporaryLease(this.client, leaseExpireSeconds, { [spareLeaseLabel]: id });
      const mounts = await prepareSnapshot(this.client, id, chainId, { snapshotter: this.snapshotter, lease: lease.id });
      return { id, mounts, lease };
    } catch (err) {
      // The next CreateContainer prepares its own rootfs, as without spares.
      this.log.warn({ parent: chainId, err: errorMessage(err) }, 'cannot prepare a spare container rootfs');
      lease?.release();
      return undefined;
    }
  }

  private discard(entry: Entry): Promise<void> {
    const removal = entry.spare.then(async (spare) => {
      if (!spare) return;
      try {
        await removeSnapshot(this.client, spare.id, this.snapshotter);
      } catch (err) {
        // Its lease still goes: it expires anyway, and then the garbage collection takes it.
        this.log.warn({ snapshot: spare.id, err: errorMessage(err) }, 'cannot remove a spare container rootfs');
      }
      await deleteLease(this.client, spare.lease.id);
    });
    this.removing.add(removal);
    void removal.finally(() => this.removing.delete(removal));
    return removal;
  }
}
