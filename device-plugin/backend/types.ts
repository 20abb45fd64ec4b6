// The hardware behind berth-gpu, as one interface (the resource-manager split NVIDIA's plugin
// makes in internal/rm): discovery, health events and topology. The gRPC server and the
// allocation logic never talk to NVML, nvidia-smi or the fake directly.

/** One physical GPU as a backend reports it. */
export interface Gpu {
  /** Minor number: /dev/nvidia<index>. */
  index: number;
  /** GPU-xxxxxxxx-xxxx-... as NVML and nvidia-smi print it; the device ID kubelet sees. */
  uuid: string;
  name: string;
  memoryMiB: number;
  /** Domain:bus:device.function, e.g. 00000000:3B:00.0. */
  pciBusId: string;
  /** NUMA node of the PCI device; -1 when unknown (kubelet then gets no topology). */
  numaNode: number;
  /** Host path of the GPU's device node (/dev/nvidiaN, or under the fake backend's dir). */
  devicePath: string;
}

/** A health event from the hardware: an Xid error, or an ECC error count going up. */
export interface HealthEvent {
  uuid: string;
  kind: 'xid' | 'ecc-double-bit' | 'ecc-single-bit';
  /** The Xid code, or the new error count for ECC events. */
  code: number;
  at: Date;
}

/** How two GPUs are connected, from the best link to the worst (nvidia-smi topo -m's legend). */
export type LinkKind = 'nvlink' | 'pix' | 'pxb' | 'phb' | 'node' | 'sys' | 'unknown';

export interface GpuTopology {
  /** Link between two GPUs by UUID, in either order; 'unknown' when the backend cannot tell. */
  link(a: string, b: string): LinkKind;
  /** Number of NVLink lanes between two GPUs (0 when none). */
  nvlinks(a: string, b: string): number;
}

export interface GpuBackend {
  /** 'nvml', 'nvidia-smi' or 'fake', for logs and metrics. */
  readonly name: string;
  /** The GPUs present now. Throws a BerthError('not-available') when the backend cannot work here. */
  discover(): Promise<Gpu[]>;
  topology(): Promise<GpuTopology>;
  /**
   * Extra device nodes every GPU container needs, those that exist: nvidiactl, nvidia-uvm,
   * nvidia-uvm-tools, nvidia-modeset (host paths).
   */
  controlDevices(): Promise<string[]>;
  /** Start delivering health events; returns a function that stops them. */
  watchHealth(onEvent: (event: HealthEvent) => void): () => void;
  /**
   * Whether a GPU answers again (used before returning a device to Healthy after a quiet
   * period): a fresh query through the backend that the device is present and responsive.
   */
  probe(uuid: string): Promise<boolean>;
  close(): Promise<void>;
}
