import { errorMessage } from '../../lib/errors.js';
import type { UsageResponse } from '../../proto/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.js';
import type { CriRuntime } from '../runtime.js';

// The writable layer's disk usage for ContainerStats. containerd's overlayfs snapshotter works
// it out by walking the layer's upper directory, so asking for every container on every stats
// call costs containerd a directory walk per container each time (and made the stats RPCs wait
// on containerd with no deadline). containerd's own CRI refreshes the same numbers in the
// background every 10 s and answers from them; here a number is refreshed when a stats call
// finds it older than that, so nothing runs on a node that nobody asks for stats, and the call
// that finds it stale answers with the previous number instead of waiting. Only a container's
// first stats call waits for its number, and not longer than firstWaitMs.

export interface LayerUsage {
  usedBytes: bigint;
  inodes: bigint;
}

interface Entry {
  value?: LayerUsage;
  fetchedAt: number;
  pending?: Promise<void>;
}

export const layerRefreshMs = 10_000;
const firstWaitMs = 1000;
/** containerd walks the directories; a handful at a time keeps it from taking both cores at once. */
const concurrency = 4;

export class LayerUsageCache {
  private readonly entries = new Map<string, Entry>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly rt: CriRuntime) {}

  /** The usage of each snapshot key (the container ID), undefined where containerd has not said yet. */
  async usage(keys: readonly string[]): Promise<Map<string, LayerUsage | undefined>> {
    const now = Date.now();
    const first: Promise<void>[] = [];
    for (const key of keys) {
      let entry = this.entries.get(key);
      if (!entry) {
        entry = { fetchedAt: 0 };
        this.entries.set(key, entry);
      }
      if (!entry.pending && now - entry.fetchedAt >= layerRefreshMs) entry.pending = this.refresh(key, entry);
      if (entry.value === undefined && entry.pending) first.push(entry.pending);
    }
    if (first.length) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(first), new Promise<void>((r) => (timer = setTimeout(r, firstWaitMs)))]);
      clearTimeout(timer);
    }
    this.prune();
    return new Map(keys.map((k) => [k, this.entries.get(k)?.value]));
  }

  /** Forget a snapshot (its container was removed). */
  forget(key: string): void {
    this.entries.delete(key);
  }

  private async refresh(key: string, entry: Entry): Promise<void> {
    if (this.running >= concurrency) await new Promise<void>((r) => this.waiting.push(r));
    this.running += 1;
    try {
      const { rt } = this;
      const u = await rt.client.unary<UsageResponse>('snapshot usage', (md, cb) => rt.client.snapshots.usage({ snapshotter: rt.config.snapshotter, key }, md, cb));
      entry.value = { usedBytes: u.size, inodes: u.inodes };
    } catch (err) {
      // Gone, or not prepared yet: the next stats call after the refresh period asks again.
      this.rt.log.debug({ key, err: errorMessage(err) }, 'snapshot usage unavailable');
    } finally {
      entry.fetchedAt = Date.now();
      entry.pending = undefined;
      this.running -= 1;
      this.waiting.shift()?.();
    }
  }

  private lastPrune = 0;

  /** Entries of containers berth-cri no longer knows go, at most once a refresh period. */
  private prune(): void {
    const now = Date.now();
    if (now - this.lastPrune < layerRefreshMs) return;
    this.lastPrune = now;
    for (const key of this.entries.keys()) if (this.rt.containers.find(key)?.id !== key) this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
