import type { ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BerthError } from '../lib/errors.js';
import { unary } from '../lib/grpc/unix-socket.js';
import type { DevicePluginServer, Empty, ListAndWatchResponse } from '../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import { planAllocate } from './allocate.js';
import type { GpuBackend, GpuTopology, HealthEvent } from './backend/types.js';
import { cdiSpec, removeCdiSpec, writeCdiSpec } from './cdi.js';
import type { GpuConfig } from './config.js';
import { advertise, listAndWatchDevices, type AdvertisedDevice } from './devices.js';
import { HealthTracker } from './health.js';
import { preferredAllocation } from './preferred.js';

// One running device plugin: the GPUs a backend found, their health, and the DevicePlugin
// service kubelet calls. Health events from the backend go through the HealthTracker; every
// change sends a new list to each ListAndWatch stream. Allocation and preferred allocation are
// the pure planners in allocate.ts and preferred.ts.

export interface PluginCounters {
  allocations: number;
  allocationErrors: number;
  listAndWatchSends: number;
}

/** How often unhealthy GPUs past their quiet period are probed. */
const probeIntervalMs = 1000;

export class GpuPlugin {
  devices: AdvertisedDevice[] = [];
  controlDevices: string[] = [];
  topology!: GpuTopology;
  readonly tracker: HealthTracker;
  readonly counters: PluginCounters = { allocations: 0, allocationErrors: 0, listAndWatchSends: 0 };
  private readonly streams = new Set<ServerWritableStream<Empty, ListAndWatchResponse>>();
  private stopHealth?: () => void;
  private probeTimer?: NodeJS.Timeout;
  private probing = false;

  constructor(
    readonly config: GpuConfig,
    readonly backend: GpuBackend,
    private readonly log: Logger,
  ) {
    this.tracker = new HealthTracker(config.health);
  }

  /** Discover the GPUs, write the CDI spec if asked, and start following health events. */
  async start(): Promise<void> {
    const gpus = await this.backend.discover();
    this.devices = advertise(gpus, this.config.sharing.timeSlicing.replicas);
    this.controlDevices = await this.backend.controlDevices();
    this.topology = await this.backend.topology();
    if (this.config.deviceListStrategy.includes('cdi')) {
      writeCdiSpec(this.config.cdiSpecDir, cdiSpec(gpus, this.controlDevices, this.config.cdiKind));
    }
    this.log.info({ backend: this.backend.name, gpus: gpus.map((g) => `${g.index}:${g.uuid}`), advertised: this.devices.length }, 'GPUs discovered');
    this.stopHealth = this.backend.watchHealth((event) => this.onHealthEvent(event));
    this.probeTimer = setInterval(() => void this.probeQuietDevices(), probeIntervalMs);
    this.probeTimer.unref();
  }

  /** End every ListAndWatch stream (kubelet opens a new one after it registers us again). */
  endStreams(): void {
    for (const s of this.streams) s.end();
    this.streams.clear();
  }

  async stop(): Promise<void> {
    this.stopHealth?.();
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.endStreams();
    if (this.config.deviceListStrategy.includes('cdi')) removeCdiSpec(this.config.cdiSpecDir);
  }

  private onHealthEvent(event: HealthEvent): void {
    const known = this.devices.some((d) => d.gpu.uuid === event.uuid);
    if (!known) {
      this.log.warn({ uuid: event.uuid, kind: event.kind, code: event.code }, 'health event for a GPU this plugin does not advertise');
      return;
    }
    if (this.tracker.observe(event)) {
      this.log.warn({ uuid: event.uuid, kind: event.kind, code: event.code }, 'GPU marked unhealthy');
      this.broadcast();
    } else {
      this.log.info({ uuid: event.uuid, kind: event.kind, code: event.code }, 'health event (no change)');
    }
  }

  /** Return GPUs to Healthy after their quiet period, when the backend's probe says they answer. */
  private async probeQuietDevices(): Promise<void> {
    // A probe can outlast the interval: one round at a time, so no GPU is probed twice at once.
    if (this.probing) return;
    this.probing = true;
    try {
      await this.probeRound();
    } finally {
      this.probing = false;
    }
  }

  private async probeRound(): Promise<void> {
    const now = new Date();
    let changed = false;
    for (const uuid of this.tracker.dueForProbe(now)) {
      const ok = await this.backend.probe(uuid).catch(() => false);
      if (ok) {
        this.tracker.recovered(uuid, new Date());
        this.log.info({ uuid }, 'GPU healthy again after a quiet period and a successful probe');
        changed = true;
      } else {
        this.tracker.probeFailed(uuid, new Date());
        this.log.warn({ uuid }, 'GPU still not answering its probe; staying unhealthy');
      }
    }
    if (changed) this.broadcast();
  }

  currentList(): ListAndWatchResponse {
    return { devices: listAndWatchDevices(this.devices, this.tracker.unhealthy()) };
  }

  private broadcast(): void {
    const list = this.currentList();
    for (const s of this.streams) {
      s.write(list);
      this.counters.listAndWatchSends++;
    }
  }

  service(): DevicePluginServer {
    return {
      getDevicePluginOptions: unary('GetDevicePluginOptions', async () => ({
        preStartRequired: this.config.preStartRequired,
        getPreferredAllocationAvailable: this.config.getPreferredAllocationAvailable,
      }), this.log),
      listAndWatch: (call) => {
        this.streams.add(call);
        call.write(this.currentList());
        this.counters.listAndWatchSends++;
        const drop = (): void => {
          this.streams.delete(call);
        };
        call.on('cancelled', drop);
        call.on('close', drop);
        call.on('error', drop);
      },
      getPreferredAllocation: unary('GetPreferredAllocation', async (req) => ({
        containerResponses: req.containerRequests.map((c, i) => {
          try {
            return { deviceIDs: preferredAllocation({ available: c.availableDeviceIDs, mustInclude: c.mustIncludeDeviceIDs, size: c.allocationSize }, this.devices, this.topology, this.config.sharing.allocationPolicy) };
          } catch (err) {
            if (err instanceof BerthError) throw new BerthError(err.kind, `container_requests[${i}]: ${err.message}`);
            throw err;
          }
        }),
      }), this.log),
      allocate: unary('Allocate', async (req) => {
        try {
          const res = planAllocate(req, {
            devices: this.devices,
            unhealthy: this.tracker.unhealthy(),
            controlDevices: this.controlDevices,
            strategy: this.config.deviceListStrategy,
            cdiKind: this.config.cdiKind,
            failRequestsGreaterThanOne: this.config.sharing.timeSlicing.failRequestsGreaterThanOne,
            replicas: this.config.sharing.timeSlicing.replicas,
          });
          this.counters.allocations += req.containerRequests.length;
          this.log.info({ containers: req.containerRequests.map((c) => c.devicesIds) }, 'allocated');
          return res;
        } catch (err) {
          this.counters.allocationErrors++;
          throw err;
        }
      }, this.log),
      preStartContainer: unary('PreStartContainer', async (req) => {
        this.log.debug({ devices: req.devicesIds }, 'PreStartContainer');
        return {};
      }, this.log),
    };
  }
}
