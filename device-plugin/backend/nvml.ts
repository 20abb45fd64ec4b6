import { join } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import { nativeAddon, type NativeAddon } from '../../lib/native.js';
import type { BackendLog } from './fake.js';
import { controlDeviceNodes, NvidiaSmiBackend, pciAddress, readNumaNode } from './nvidia-smi.js';
import type { Gpu, GpuBackend, GpuTopology, HealthEvent } from './types.js';

// A GPU backend over NVML (libnvidia-ml), through the native addon (lib/native/nvml.c), which
// dlopens the library at run time: discovery, probes and Xid/ECC events come straight from the
// driver, without nvidia-smi processes or the kernel log.

export const defaultNvmlLibrary = 'libnvidia-ml.so.1';

export interface NvmlOptions {
  /** The NVML library for dlopen: a soname searched the usual way, or a path. Default: env.BERTH_NVML_LIBRARY, else libnvidia-ml.so.1. */
  library?: string;
  env?: NodeJS.ProcessEnv;
  log?: BackendLog;
  /** Roots for tests: where /sys and /dev are. */
  sysRoot?: string;
  devRoot?: string;
}

/** A topology that knows nothing: every pair is 'unknown' with no NVLink. */
const unknownTopology: GpuTopology = { link: () => 'unknown', nvlinks: () => 0 };

export class NvmlBackend implements GpuBackend {
  readonly name = 'nvml';
  readonly library: string;
  private readonly log: BackendLog;
  /** The addon while NVML is open through it (each open is matched by one nvmlClose). */
  private nvml: NativeAddon | undefined;
  private stopEvents: (() => void) | undefined;

  constructor(private readonly options: NvmlOptions = {}) {
    const env = options.env ?? process.env;
    this.library = options.library ?? (env.BERTH_NVML_LIBRARY || defaultNvmlLibrary);
    this.log = options.log ?? { info: () => {}, warn: () => {} };
  }

  /** Open NVML once; failing to load the addon or the library, or nvmlInit, is not-available. */
  private open(): NativeAddon {
    if (this.nvml) return this.nvml;
    try {
      const addon = nativeAddon('nvmlOpen');
      addon.nvmlOpen(this.library);
      this.nvml = addon;
      return addon;
    } catch (err) {
      throw new BerthError('not-available', `nvml: ${(err as Error).message}`, { cause: err });
    }
  }

  async discover(): Promise<Gpu[]> {
    const nvml = this.open();
    let rows: ReturnType<NativeAddon['nvmlDevices']>;
    try {
      rows = nvml.nvmlDevices();
    } catch (err) {
      throw new BerthError('not-available', `nvml: ${(err as Error).message}`, { cause: err });
    }
    const sys = this.options.sysRoot ?? '/sys';
    const dev = this.options.devRoot ?? '/dev';
    return await Promise.all(
      rows.map(async (row): Promise<Gpu> => {
        const address = pciAddress(row.pciBusId);
        return {
          ...row,
          numaNode: address === undefined ? -1 : await readNumaNode(join(sys, 'bus/pci/devices', address, 'numa_node')),
          devicePath: join(dev, `nvidia${row.index}`),
        };
      }),
    );
  }

  /**
   * NVML could tell links too (nvmlDeviceGetTopologyCommonAncestor, nvmlDeviceGetNvLinkState),
   * but nothing needs it yet: nvidia-smi's `topo -m` answers when nvidia-smi works, and otherwise
   * every pair is 'unknown' with no NVLink (kubelet then gets no preferred allocation hints).
   */
  async topology(): Promise<GpuTopology> {
    const smi = new NvidiaSmiBackend({ env: this.options.env, log: this.log, sysRoot: this.options.sysRoot, devRoot: this.options.devRoot });
    try {
      return await smi.topology();
    } catch (err) {
      this.log.info(`nvml backend: no topology (${(err as Error).message}); every GPU pair is 'unknown'`);
      return unknownTopology;
    } finally {
      await smi.close();
    }
  }

  async controlDevices(): Promise<string[]> {
    return controlDeviceNodes(this.options.devRoot ?? '/dev');
  }

  watchHealth(onEvent: (event: HealthEvent) => void): () => void {
    const nvml = this.open();
    this.stopEvents?.();
    nvml.nvmlWatchEvents((uuid, kind, code) => onEvent({ uuid, kind, code, at: new Date() }));
    const stop = (): void => {
      if (this.stopEvents !== stop) return;
      this.stopEvents = undefined;
      nvml.nvmlStopEvents();
    };
    this.stopEvents = stop;
    return stop;
  }

  async probe(uuid: string): Promise<boolean> {
    try {
      return this.open().nvmlProbe(uuid);
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.stopEvents?.();
    this.nvml?.nvmlClose();
    this.nvml = undefined;
  }
}
