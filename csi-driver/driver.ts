import { join } from 'node:path';
import type { Logger } from 'pino';
import { BerthError } from '../lib/errors.js';
import type { CsiConfig } from './config.js';
import { Storage } from './storage.js';
import { Journal } from './store/journal.js';
import type { GroupSnapshotRecord, SnapshotRecord, VolumeRecord } from './store/records.js';

// The driver's shared state: settings, the persisted records, the storage under the root, and
// the "one operation per object at a time" rule. The RPC handlers in server/ only orchestrate.

export const Kind = { volume: 'volume', snapshot: 'snapshot', group: 'group' } as const;

export class Driver {
  readonly journal: Journal;
  readonly storage: Storage;
  /** Keys of objects with an operation in flight (volume IDs, names being created, paths). */
  private readonly busy = new Set<string>();
  private lastIdTime = 0;
  private idCounter = 0;

  constructor(readonly config: CsiConfig, readonly log: Logger) {
    this.storage = new Storage(config.root);
    this.journal = new Journal(join(config.root, 'state'));
  }

  /**
   * Run `fn` holding `keys`; if another operation holds one of them, answer ABORTED at once
   * (CSI: "operation pending for volume" — the CO retries with backoff).
   */
  async exclusive<T>(keys: string[], fn: () => Promise<T> | T): Promise<T> {
    const taken = keys.find((k) => this.busy.has(k));
    if (taken) throw new BerthError('aborted', `an operation on ${taken} is already in progress; retry later`);
    for (const k of keys) this.busy.add(k);
    try {
      return await fn();
    } finally {
      for (const k of keys) this.busy.delete(k);
    }
  }

  /**
   * A new ID: time-ordered (base-36 milliseconds, then a counter), so a listing sorted by ID
   * puts new objects last and a paging cursor never skips one created between pages.
   */
  newId(prefix: 'vol' | 'snap' | 'group'): string {
    const now = Date.now();
    if (now === this.lastIdTime) this.idCounter++;
    else {
      this.lastIdTime = now;
      this.idCounter = 0;
    }
    const rand = Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0');
    return `${prefix}-${now.toString(36).padStart(9, '0')}${this.idCounter.toString(36).padStart(3, '0')}-${rand}`;
  }

  volume(id: string): VolumeRecord | undefined {
    return this.journal.get<VolumeRecord>(Kind.volume, id);
  }

  requireVolume(id: string, field = 'volume_id'): VolumeRecord {
    const rec = this.volume(id);
    if (!rec) throw new BerthError('not-found', `${field}: volume "${id}" does not exist`);
    return rec;
  }

  volumes(): VolumeRecord[] {
    return this.journal.all<VolumeRecord>(Kind.volume);
  }

  volumeByName(name: string): VolumeRecord | undefined {
    return this.volumes().find((v) => v.name === name);
  }

  /** Record a volume; `durable` when losing the change would lose or leak data. */
  saveVolume(rec: VolumeRecord, durable: boolean): void {
    this.journal.put(Kind.volume, rec.id, rec, durable);
  }

  /** Drop a volume's record; `durable` unless it only ever described kernel state (a static volume). */
  forgetVolume(id: string, durable = true): void {
    this.journal.delete(Kind.volume, id, durable);
  }

  snapshot(id: string): SnapshotRecord | undefined {
    return this.journal.get<SnapshotRecord>(Kind.snapshot, id);
  }

  snapshots(): SnapshotRecord[] {
    return this.journal.all<SnapshotRecord>(Kind.snapshot);
  }

  saveSnapshot(rec: SnapshotRecord): void {
    this.journal.put(Kind.snapshot, rec.id, rec, true);
  }

  forgetSnapshot(id: string): void {
    this.journal.delete(Kind.snapshot, id, true);
  }

  group(id: string): GroupSnapshotRecord | undefined {
    return this.journal.get<GroupSnapshotRecord>(Kind.group, id);
  }

  groups(): GroupSnapshotRecord[] {
    return this.journal.all<GroupSnapshotRecord>(Kind.group);
  }

  saveGroup(rec: GroupSnapshotRecord): void {
    this.journal.put(Kind.group, rec.id, rec, true);
  }

  forgetGroup(id: string): void {
    this.journal.delete(Kind.group, id, true);
  }

  /**
   * Bytes promised to volumes but not yet written: sparse files and quota-capped directories
   * fill up later, so GetCapacity and CreateVolume count them as taken (no overcommit).
   */
  promisedBytes(): number {
    let total = 0;
    for (const v of this.volumes()) {
      if (v.type === 'static' || (v.type === 'directory' && !v.sizeEnforced)) continue;
      total += Math.max(0, v.capacityBytes - this.storage.allocatedBytes(v));
    }
    return total;
  }

  /** What a new volume may still take. */
  availableBytes(): number {
    return Math.max(0, this.storage.freeBytes() - this.config.reservedBytes - this.promisedBytes());
  }

  /** The largest single volume that can be created now. */
  maxVolumeBytes(available = this.availableBytes()): number {
    return this.config.maxVolumeSizeBytes > 0 ? Math.min(available, this.config.maxVolumeSizeBytes) : available;
  }
}
