import {
  ContainerConfig,
  ContainerState,
  PodSandboxConfig,
  PodSandboxState,
} from '../../proto/gen/runtime/v1/api.js';
import type { ContainerIO } from '../io/container-io.js';
import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import { NameIndex } from './name-index.js';

// The in-memory index of pods and containers. It is a cache: containerd's container records
// carry every field here (labels for filtering, an extension with the JSON below), so a
// restarted berth-cri rebuilds it from containerd and the tasks' states.

export interface SandboxRecord {
  id: string;
  /** kubelet's reserved name: <name>_<namespace>_<uid>_<attempt>. */
  name: string;
  config: PodSandboxConfig;
  createdAt: bigint;
  runtimeHandler: string;
  state: PodSandboxState;
  /** PID of the pause process while it runs (its namespaces are the pod's). */
  pid: number;
  /** The pod network namespace path given to CNI ('' with host network). */
  netnsPath: string;
  ips: string[];
  /** Directory holding the pod's hostname, hosts and resolv.conf files. */
  dir: string;
  /** Set once StopPodSandbox has torn the network down (so a second stop does nothing). */
  networkDown: boolean;
  cgroupsPath: string;
}

/** An image volume of a container (Mount.image): the read-only view snapshot it shows (pod/image-volumes.ts). */
export interface ImageVolume {
  /** Index in ContainerConfig.mounts. */
  index: number;
  /** The image ID (config digest) it shows: RemoveImage of that image is refused while it is in use. */
  imageId: string;
  /** The view snapshot's key. */
  key: string;
}

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  name: string;
  config: ContainerConfig;
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  reason: string;
  message: string;
  state: ContainerState;
  /** The image as the user named it, its digest reference, and its ID (config digest). */
  imageName: string;
  imageRef: string;
  imageId: string;
  /** Full path of the CRI log file ('' when the pod has no log directory). */
  logPath: string;
  pid: number;
  /** Signal number StopContainer sends first (the config's stop_signal, else the image's StopSignal, else SIGTERM). */
  stopSignal: number;
  /** The process's effective user (ContainerStatus.user); absent in records of older berth-cri. */
  user?: { uid: number; gid: number; additionalGids: number[] };
  /** The OCI linux.cgroupsPath (stats, OOM detection). */
  cgroupsPath: string;
  /** The image volumes' views (pod/image-volumes.ts); absent when it has none. */
  imageVolumes?: ImageVolume[];
  io?: ContainerIO;
  /** The rootfs mounts returned when the snapshot was prepared (memory only: saves a lookup at start). */
  rootfs?: Mount[];
  /** Settles when the exit of the running task has been recorded. */
  exited?: Promise<void>;
}

/** What is persisted in containerd's extension for a sandbox (JSON). */
export function sandboxToJson(s: SandboxRecord): object {
  return {
    id: s.id,
    name: s.name,
    config: PodSandboxConfig.toJSON(s.config),
    createdAt: s.createdAt.toString(),
    runtimeHandler: s.runtimeHandler,
    dir: s.dir,
    netnsPath: s.netnsPath,
    ips: s.ips,
    networkDown: s.networkDown,
    cgroupsPath: s.cgroupsPath,
    stopped: s.state === PodSandboxState.SANDBOX_NOTREADY,
  };
}

export function sandboxFromJson(j: Record<string, unknown>): SandboxRecord {
  return {
    id: String(j.id),
    name: String(j.name),
    config: PodSandboxConfig.fromJSON(j.config),
    createdAt: BigInt(String(j.createdAt ?? '0')),
    runtimeHandler: String(j.runtimeHandler ?? ''),
    state: j.stopped ? PodSandboxState.SANDBOX_NOTREADY : PodSandboxState.SANDBOX_READY,
    pid: 0,
    netnsPath: String(j.netnsPath ?? ''),
    ips: Array.isArray(j.ips) ? j.ips.map(String) : [],
    dir: String(j.dir ?? ''),
    networkDown: j.networkDown === true,
    cgroupsPath: String(j.cgroupsPath ?? ''),
  };
}

export function containerToJson(c: ContainerRecord): object {
  return {
    id: c.id,
    sandboxId: c.sandboxId,
    name: c.name,
    config: ContainerConfig.toJSON(c.config),
    createdAt: c.createdAt.toString(),
    startedAt: c.startedAt.toString(),
    finishedAt: c.finishedAt.toString(),
    exitCode: c.exitCode,
    reason: c.reason,
    message: c.message,
    state: c.state,
    imageName: c.imageName,
    imageRef: c.imageRef,
    imageId: c.imageId,
    logPath: c.logPath,
    stopSignal: c.stopSignal,
    user: c.user,
    cgroupsPath: c.cgroupsPath,
    ...(c.imageVolumes?.length ? { imageVolumes: c.imageVolumes } : {}),
  };
}

export function containerFromJson(j: Record<string, unknown>): ContainerRecord {
  return {
    id: String(j.id),
    sandboxId: String(j.sandboxId),
    name: String(j.name),
    config: ContainerConfig.fromJSON(j.config),
    createdAt: BigInt(String(j.createdAt ?? '0')),
    startedAt: BigInt(String(j.startedAt ?? '0')),
    finishedAt: BigInt(String(j.finishedAt ?? '0')),
    exitCode: Number(j.exitCode ?? 0),
    reason: String(j.reason ?? ''),
    message: String(j.message ?? ''),
    state: Number(j.state ?? ContainerState.CONTAINER_UNKNOWN) as ContainerState,
    imageName: String(j.imageName ?? ''),
    imageRef: String(j.imageRef ?? ''),
    imageId: String(j.imageId ?? ''),
    logPath: String(j.logPath ?? ''),
    pid: 0,
    stopSignal: Number(j.stopSignal ?? 15),
    user: userFromJson(j.user),
    cgroupsPath: String(j.cgroupsPath ?? ''),
    ...(Array.isArray(j.imageVolumes) ? { imageVolumes: imageVolumesFromJson(j.imageVolumes) } : {}),
  };
}

function imageVolumesFromJson(list: unknown[]): ImageVolume[] {
  return list.map((v) => {
    const o = (v ?? {}) as Record<string, unknown>;
    return { index: Number(o.index ?? 0), imageId: String(o.imageId ?? ''), key: String(o.key ?? '') };
  });
}

function userFromJson(u: unknown): ContainerRecord['user'] {
  if (!u || typeof u !== 'object') return undefined;
  const v = u as Record<string, unknown>;
  return { uid: Number(v.uid ?? 0), gid: Number(v.gid ?? 0), additionalGids: Array.isArray(v.additionalGids) ? v.additionalGids.map(Number) : [] };
}

/** Records by ID, with a name index and lookup by unique ID prefix (as crictl allows). */
export class RecordStore<T extends { id: string; name: string }> {
  private readonly byId = new Map<string, T>();
  readonly names = new NameIndex();

  constructor(private readonly what: string) {}

  add(record: T): void {
    this.byId.set(record.id, record);
  }

  delete(id: string): void {
    const r = this.byId.get(id);
    if (r) this.names.release(r.name, id);
    this.byId.delete(id);
  }

  /** Find by full ID or unique prefix; undefined when absent. */
  find(idOrPrefix: string): T | undefined {
    const exact = this.byId.get(idOrPrefix);
    if (exact || idOrPrefix.length === 0) return exact;
    let found: T | undefined;
    for (const [id, r] of this.byId) {
      if (!id.startsWith(idOrPrefix)) continue;
      if (found) return undefined;
      found = r;
    }
    return found;
  }

  all(): T[] {
    return [...this.byId.values()];
  }

  get kind(): string {
    return this.what;
  }
}
