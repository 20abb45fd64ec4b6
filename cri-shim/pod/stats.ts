import { type CgroupStats, type CpuRateTracker, nowNs, resolveCgroupPath } from '../../lib/cgroups.js';
import { parseNetDevCounters, type NetDevCounters } from '../../lib/net-dev.js';
import type { ContainerStats, CpuUsage, MemoryUsage, NetworkInterfaceUsage, NetworkUsage, PodSandboxStats } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';
import { CgroupScanner, readSmallFile } from './cgroup-scan.js';
import { type LayerUsage, LayerUsageCache } from './layer-usage.js';

// What ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats report: the
// cgroups runc made (v1 or v2, cgroupfs or systemd paths), plus the writable layer's usage from
// the snapshotter. usage_nano_cores is the rate between this sample and the previous one. The
// list RPCs read every cgroup they need in one pass (cgroup-scan.ts), and the layer usage comes
// from a cache containerd is asked to refresh (layer-usage.ts).

const u64 = (value: bigint | undefined): { value: bigint } | undefined => (value === undefined ? undefined : { value });

function cpuOf(rates: CpuRateTracker, key: string, stats: CgroupStats | undefined, at: bigint): CpuUsage {
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

/** What the stats RPCs keep between calls, per runtime: cgroup directories and samples, layer usage. */
interface StatsState {
  cgroups: CgroupScanner;
  layers: LayerUsageCache;
}

const states = new WeakMap<CriRuntime, StatsState>();

function stateOf(rt: CriRuntime): StatsState {
  let state = states.get(rt);
  if (!state) {
    state = { cgroups: new CgroupScanner(), layers: new LayerUsageCache(rt) };
    states.set(rt, state);
  }
  return state;
}

const cgroupOf = (rt: CriRuntime, c: ContainerRecord): string | undefined => (c.cgroupsPath ? resolveCgroupPath(c.cgroupsPath, rt.config.cgroupDriver) : undefined);

function containerStatsFrom(rt: CriRuntime, c: ContainerRecord, cg: CgroupStats | undefined, layer: LayerUsage | undefined, at: bigint): ContainerStats {
  return {
    attributes: { id: c.id, metadata: c.config.metadata, labels: c.config.labels, annotations: c.config.annotations },
    cpu: cpuOf(rt.cpuRates.containers, c.id, cg, at),
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

/**
 * The stats of `containers`, from one pass over their cgroups and the cached layer usage. A
 * container whose cgroup is gone (exited, removed) reports no CPU or memory numbers.
 */
export async function containersStats(rt: CriRuntime, containers: readonly ContainerRecord[]): Promise<ContainerStats[]> {
  const at = nowNs();
  const { cgroups, layers } = stateOf(rt);
  const [samples, usage] = await Promise.all([
    cgroups.sample(containers.map((c) => cgroupOf(rt, c)).filter((p): p is string => p !== undefined)),
    layers.usage(containers.map((c) => c.id)),
  ]);
  return containers.map((c) => {
    const path = cgroupOf(rt, c);
    return containerStatsFrom(rt, c, path === undefined ? undefined : samples.get(path), usage.get(c.id), at);
  });
}

export async function statsOf(rt: CriRuntime, c: ContainerRecord): Promise<ContainerStats> {
  return (await containersStats(rt, [c]))[0]!;
}

/** The pod cgroup is the parent of its containers' cgroups (kubelet's pod-level cgroup). */
function podCgroup(s: SandboxRecord): string {
  if (!s.cgroupsPath || s.cgroupsPath.includes(':')) return s.cgroupsPath;
  return s.cgroupsPath.slice(0, s.cgroupsPath.lastIndexOf('/')) || s.cgroupsPath;
}

/**
 * The pod network's counters, read through the pause process (its /proc/<pid>/net is the pod's
 * namespace). eth0 is the default interface, as kubelet names it; lo is left out. A host-network
 * pod has none of its own.
 */
function networkOf(s: SandboxRecord, at: bigint): NetworkUsage | undefined {
  if (s.networkDown || !s.netnsPath || s.pid === 0) return undefined;
  let counters: NetDevCounters[];
  try {
    const text = readSmallFile(`/proc/${s.pid}/net/dev`);
    if (text === undefined) return undefined;
    counters = parseNetDevCounters(text).filter((c) => c.name !== 'lo');
  } catch {
    return undefined;
  }
  const usage = (c: NetDevCounters): NetworkInterfaceUsage => ({ name: c.name, rxBytes: u64(c.rxBytes), rxErrors: u64(c.rxErrors), txBytes: u64(c.txBytes), txErrors: u64(c.txErrors) });
  const eth0 = counters.find((c) => c.name === 'eth0');
  return { timestamp: at, defaultInterface: eth0 ? usage(eth0) : undefined, interfaces: counters.map(usage) };
}

const podCgroupOf = (rt: CriRuntime, s: SandboxRecord): string | undefined => {
  const parent = s.config.linux?.cgroupParent ? podCgroup(s) : s.cgroupsPath;
  return parent ? resolveCgroupPath(parent, rt.config.cgroupDriver) : undefined;
};

/**
 * The stats of `sandboxes` with their containers', from one pass over the pods' and the
 * containers' cgroups (each read once) and the cached layer usage.
 */
export async function podsStats(rt: CriRuntime, sandboxes: readonly SandboxRecord[]): Promise<PodSandboxStats[]> {
  const at = nowNs();
  const wanted = new Set(sandboxes.map((s) => s.id));
  const bySandbox = new Map<string, ContainerRecord[]>();
  for (const c of rt.containers.all()) {
    if (!wanted.has(c.sandboxId)) continue;
    const list = bySandbox.get(c.sandboxId);
    if (list) list.push(c);
    else bySandbox.set(c.sandboxId, [c]);
  }
  const { cgroups } = stateOf(rt);
  const podSamples = await cgroups.sample(sandboxes.map((s) => podCgroupOf(rt, s)).filter((p): p is string => p !== undefined), { pids: true });
  const containers = await containersStats(rt, [...bySandbox.values()].flat());
  const statsById = new Map(containers.map((c) => [c.attributes!.id, c]));
  return sandboxes.map((s) => {
    const path = podCgroupOf(rt, s);
    const cg = path === undefined ? undefined : podSamples.get(path);
    return {
      attributes: { id: s.id, metadata: s.config.metadata, labels: s.config.labels, annotations: s.config.annotations },
      linux: {
        cpu: cpuOf(rt.cpuRates.sandboxes, s.id, cg, at),
        memory: memoryOf(cg, at),
        network: networkOf(s, at),
        process: { timestamp: at, processCount: u64(cg?.pids?.current) },
        containers: (bySandbox.get(s.id) ?? []).map((c) => statsById.get(c.id)!),
        io: undefined,
      },
      windows: undefined,
    };
  });
}

export async function podStatsOf(rt: CriRuntime, s: SandboxRecord): Promise<PodSandboxStats> {
  return (await podsStats(rt, [s]))[0]!;
}
