import {
  CpuRateTracker,
  nowNs,
  readCgroupStats,
  resolveCgroupPath,
  type CgroupStats,
} from '../../lib/cgroups.js';
import type {
  ContainerStats,
  ContainerStatsRequest,
  ContainerStatsResponse,
  CpuUsage,
  ListContainerStatsRequest,
  ListContainerStatsResponse,
  ListPodSandboxStatsRequest,
  ListPodSandboxStatsResponse,
  MemoryUsage,
  PodSandboxStats,
  PodSandboxStatsRequest,
  PodSandboxStatsResponse,
} from '../../proto/gen/runtime/v1/api.js';
import type { UsageResponse } from '../../proto/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';
import { selectContainers, selectSandboxes } from './status-list.js';

// ContainerStats / ListContainerStats / PodSandboxStats / ListPodSandboxStats from the cgroups
// runc made (v1 or v2, cgroupfs or systemd paths), plus the writable layer's usage from the
// snapshotter. usage_nano_cores is the rate between this sample and the previous one.

const rates = new CpuRateTracker();
const u64 = (value: bigint | undefined): { value: bigint } | undefined => (value === undefined ? undefined : { value });

function cpuOf(key: string, stats: CgroupStats | undefined, at: bigint): CpuUsage {
  if (!stats) return { timestamp: at, usageCoreNanoSeconds: undefined, usageNanoCores: undefined, psi: undefined };
  const rate = rates.update(key, stats.cpu.usageCoreNanoSeconds, stats.timestampNs);
  return { timestamp: stats.timestampNs, usageCoreNanoSeconds: u64(stats.cpu.usageCoreNanoSeconds), usageNanoCores: u64(rate ?? 0n), psi: undefined };
}

function memoryOf(stats: CgroupStats | undefined, at: bigint): MemoryUsage {
  const m = stats?.memory;
  return {
    timestamp: stats?.timestampNs ?? at,
    workingSetBytes: u64(m?.workingSetBytes),
    availableBytes: u64(m?.availableBytes),
    usageBytes: u64(m?.usageBytes),
    rssBytes: u64(m?.rssBytes),
    pageFaults: u64(m?.pageFaults),
    majorPageFaults: u64(m?.majorPageFaults),
    psi: undefined,
  };
}

async function writableLayer(rt: CriRuntime, id: string): Promise<{ usedBytes: bigint; inodes: bigint } | undefined> {
  try {
    const u = await rt.client.unary<UsageResponse>('snapshot usage', (md, cb) => rt.client.snapshots.usage({ snapshotter: rt.config.snapshotter, key: id }, md, cb));
    return { usedBytes: u.size, inodes: u.inodes };
  } catch {
    return undefined;
  }
}

async function statsOf(rt: CriRuntime, c: ContainerRecord): Promise<ContainerStats> {
  const at = nowNs();
  const [cg, layer] = await Promise.all([
    c.cgroupsPath ? readCgroupStats(resolveCgroupPath(c.cgroupsPath, rt.config.cgroupDriver)) : Promise.resolve(undefined),
    writableLayer(rt, c.id),
  ]);
  return {
    attributes: { id: c.id, metadata: c.config.metadata, labels: c.config.labels, annotations: c.config.annotations },
    cpu: cpuOf(c.id, cg, at),
    memory: memoryOf(cg, at),
    writableLayer: {
      timestamp: at,
      fsId: { mountpoint: `${rt.config.root}` },
      usedBytes: u64(layer?.usedBytes ?? 0n),
      inodesUsed: u64(layer?.inodes ?? 0n),
    },
    swap: undefined,
    io: undefined,
  };
}

export async function containerStats(rt: CriRuntime, req: ContainerStatsRequest): Promise<ContainerStatsResponse> {
  return { stats: await statsOf(rt, rt.container(req.containerId)) };
}

export async function listContainerStats(rt: CriRuntime, req: ListContainerStatsRequest): Promise<ListContainerStatsResponse> {
  const selected = selectContainers(rt, req.filter);
  return { stats: await Promise.all(selected.map((c) => statsOf(rt, c))) };
}

/** The pod cgroup is the parent of its containers' cgroups (kubelet's pod-level cgroup). */
function podCgroup(s: SandboxRecord): string {
  if (!s.cgroupsPath || s.cgroupsPath.includes(':')) return s.cgroupsPath;
  return s.cgroupsPath.slice(0, s.cgroupsPath.lastIndexOf('/')) || s.cgroupsPath;
}

async function podStatsOf(rt: CriRuntime, s: SandboxRecord): Promise<PodSandboxStats> {
  const at = nowNs();
  const parent = s.config.linux?.cgroupParent ? podCgroup(s) : s.cgroupsPath;
  const cg = parent ? await readCgroupStats(resolveCgroupPath(parent, rt.config.cgroupDriver)) : undefined;
  const containers = await Promise.all(rt.containersOf(s.id).map((c) => statsOf(rt, c)));
  return {
    attributes: { id: s.id, metadata: s.config.metadata, labels: s.config.labels, annotations: s.config.annotations },
    linux: {
      cpu: cpuOf(`pod:${s.id}`, cg, at),
      memory: memoryOf(cg, at),
      network: undefined,
      process: { timestamp: at, processCount: u64(cg?.pids?.current) },
      containers,
      io: undefined,
    },
    windows: undefined,
  };
}

export async function podSandboxStats(rt: CriRuntime, req: PodSandboxStatsRequest): Promise<PodSandboxStatsResponse> {
  return { stats: await podStatsOf(rt, rt.sandbox(req.podSandboxId)) };
}

export async function listPodSandboxStats(rt: CriRuntime, req: ListPodSandboxStatsRequest): Promise<ListPodSandboxStatsResponse> {
  const selected = selectSandboxes(rt, req.filter);
  return { stats: await Promise.all(selected.map((s) => podStatsOf(rt, s))) };
}

export function forgetStats(id: string): void {
  rates.delete(id);
  rates.delete(`pod:${id}`);
}
