import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CpuRateTracker } from '../lib/cgroups.js';
import { BerthError } from '../lib/errors.js';
import type { Container } from '../proto/gen/github.com/containerd/containerd/api/services/containers/v1/containers.js';
import { PodNetwork } from './cni/pod-network.js';
import type { CriConfig } from './config.js';
import type { ContainerdClient } from './containerd/client.js';
import { jsonAny } from './containerd/containers.js';
import { LeasePool } from './containerd/leases.js';
import { ShimConnections } from './containerd/shim.js';
import { EventHub } from './events.js';
import { CriOperationMetrics } from './metrics/operations.js';
import { capabilitiesFromMask } from './oci/security.js';
import { RecursiveReadOnlyMounts } from './pod/rro-mounts.js';
import { SpareRootfsPool } from './pod/spare-rootfs.js';
import { ImageStore } from './store/image-store.js';
import { type ContainerRecord, containerToJson, RecordStore, type SandboxRecord, sandboxToJson } from './store/records.js';
import type { StreamServer } from './stream/server.js';

// The state every RPC handler shares: the containerd connection, the in-memory indexes and the
// pod network. Handlers live in server/, one file per RPC, and the services they share in pod/;
// this file holds what they all need (lookups that raise NotFound, persistence into containerd's
// records, forgetting what was removed).

export const labels = {
  kind: 'io.berth.cri.kind',
  sandboxId: 'io.berth.cri.sandbox-id',
} as const;

export const extensionKey = 'io.berth.cri';
const sandboxTypeUrl = 'berth.io/cri/sandbox/v1';
const containerTypeUrl = 'berth.io/cri/container/v1';

export class CriRuntime {
  readonly sandboxes = new RecordStore<SandboxRecord>('pod sandbox');
  readonly containers = new RecordStore<ContainerRecord>('container');
  readonly images: ImageStore;
  readonly events = new EventHub();
  /** The previous CPU sample of each container and pod, for the rate the stats RPCs report. */
  readonly cpuRates = { containers: new CpuRateTracker(), sandboxes: new CpuRateTracker() };
  readonly network: PodNetwork;
  readonly leases: LeasePool;
  /** Exec processes' calls straight to their shims (containerd/shim.ts). */
  readonly shims: ShimConnections;
  /** Container rootfs snapshots prepared ahead, by image (CreateContainer takes them). */
  readonly spareRootfs: SpareRootfsPool;
  /** berth-cri's own numbers for /metrics: RPCs, image pulls, CNI calls. */
  readonly operations = new CriOperationMetrics();
  /** Serves the URLs Exec, Attach and PortForward hand out (set by main once it listens). */
  streamServer?: StreamServer;
  /**
   * /etc/passwd and /etc/group of image rootfs snapshots, by top chain ID (whose content never
   * changes): with them known, CreateContainer prepares the snapshot and stores the record at
   * the same time instead of reading the files from the fresh snapshot first.
   */
  readonly userFiles = new BoundedMap<string, ImageUserFiles>(256);
  /** This process's own oom_score_adj: without CAP_SYS_RESOURCE nothing may go lower. */
  readonly minOomScoreAdj: number;
  /** Our bounding set: runc cannot grant more, so "all capabilities" means these. */
  readonly availableCapabilities: string[];
  /** Staged read-only trees of recursive read-only volumes; the kernel is asked once, here. */
  readonly recursiveReadOnly: RecursiveReadOnlyMounts;

  constructor(
    readonly config: CriConfig,
    readonly client: ContainerdClient,
    readonly log: Logger,
  ) {
    this.images = new ImageStore(client, log, config.pinnedImages);
    this.network = new PodNetwork(config, log, (plugin, verb, seconds, ok) => this.operations.observeCni(plugin, verb, seconds, ok));
    this.leases = new LeasePool(client);
    this.shims = new ShimConnections(config.containerdState, config.namespace);
    this.spareRootfs = new SpareRootfsPool(client, config.snapshotter, log, { maxImages: config.spareRootfsImages, idleMs: config.spareRootfsIdle });
    this.minOomScoreAdj = readOwnOomScoreAdj();
    this.recursiveReadOnly = new RecursiveReadOnlyMounts(join(config.state, 'rro'));
    this.availableCapabilities = capabilitiesFromMask(/^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0');
  }

  sandbox(id: string, field = 'pod_sandbox_id'): SandboxRecord {
    if (!id) throw new BerthError('invalid-argument', `${field} is required`);
    const s = this.sandboxes.find(id);
    if (!s) throw new BerthError('not-found', `${field}: pod sandbox "${id}" not found`);
    return s;
  }

  container(id: string, field = 'container_id'): ContainerRecord {
    if (!id) throw new BerthError('invalid-argument', `${field} is required`);
    const c = this.containers.find(id);
    if (!c) throw new BerthError('not-found', `${field}: container "${id}" not found`);
    return c;
  }

  containersOf(sandboxId: string): ContainerRecord[] {
    return this.containers.all().filter((c) => c.sandboxId === sandboxId);
  }

  /** A removed container leaves the index, and nothing else of it stays behind in memory. */
  forgetContainer(id: string): void {
    this.containers.delete(id);
    this.cpuRates.containers.delete(id);
  }

  /** A removed pod leaves the index, and nothing else of it stays behind in memory. */
  forgetSandbox(id: string): void {
    this.sandboxes.delete(id);
    this.cpuRates.sandboxes.delete(id);
  }

  /** Write a sandbox's current record into its containerd container (the source of truth). */
  async persistSandbox(s: SandboxRecord): Promise<void> {
    await this.updateExtension(s.id, () => jsonAny(sandboxTypeUrl, sandboxToJson(s)));
  }

  async persistContainer(c: ContainerRecord): Promise<void> {
    await this.updateExtension(c.id, () => jsonAny(containerTypeUrl, containerToJson(c)));
  }

  private readonly persisting = new Map<string, Promise<void>>();

  /**
   * Updates of one record run one after another, each serializing the record when it runs, so
   * the last write always holds the latest state however the callers interleave.
   */
  private updateExtension(id: string, value: () => ReturnType<typeof jsonAny>): Promise<void> {
    const previous = this.persisting.get(id) ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(async () => {
        // Only the masked field is applied; the rest must still encode.
        const container: Container = { id, labels: {}, image: '', snapshotter: '', snapshotKey: '', extensions: { [extensionKey]: value() } };
        await this.client.unary('container update', (md, cb) =>
          this.client.containers.update({ container, updateMask: [`extensions.${extensionKey}`] }, md, cb),
        );
      });
    this.persisting.set(id, next);
    void next.finally(() => {
      if (this.persisting.get(id) === next) this.persisting.delete(id);
    }).catch(() => undefined);
    return next;
  }

  static sandboxExtension(s: SandboxRecord): ReturnType<typeof jsonAny> {
    return jsonAny(sandboxTypeUrl, sandboxToJson(s));
  }

  static containerExtension(c: ContainerRecord): ReturnType<typeof jsonAny> {
    return jsonAny(containerTypeUrl, containerToJson(c));
  }
}

export interface ImageUserFiles {
  passwd?: string;
  group?: string;
}

/** A Map that forgets its oldest entry beyond a size. */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly limit: number) {
    super();
  }

  override set(key: K, value: V): this {
    this.delete(key);
    super.set(key, value);
    if (this.size > this.limit) this.delete(this.keys().next().value as K);
    return this;
  }
}

function readOwnOomScoreAdj(): number {
  try {
    return Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/** Nanoseconds since the epoch, as CRI timestamps are. */
export function nowNanos(): bigint {
  return BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
}
