import { readFileSync } from 'node:fs';
import { type CgroupStats, type CpuRateTracker, nowNs, readCgroupStats, resolveCgroupPath } from '../../lib/cgroups.js';
import type { UsageResponse } from '../../proto/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.js';
import type { ContainerStats, CpuUsage, MemoryUsage, NetworkInterfaceUsage, NetworkUsage, PodSandboxStats } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';

// What ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats report: the
// cgroups runc made (v1 or v2, cgroupfs or systemd paths), plus the writable layer's usage from
// the snapshotter. usage_nano_cores is the rate between this sample and the previous one.

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

async function writableLayer(rt: CriRuntime, id: string): Promise<{ usedBytes: bigint; inodes: bigint } | undefined> {
  try {
    const u = await rt.client.unary<UsageResponse>('snapshot usage', (md, cb) => rt.client.snapshots.usage({ snapshotter: rt.config.snapshotter, key: id }, md, cb));
    return { usedBytes: u.size, inodes: u.inodes };
  } catch {
    return undefined;
  }
}

export async function statsOf(rt: CriRuntime, c: ContainerRecord): Promise<ContainerStats> {
  const at = nowNs();
  const [cg, layer] = await Promise.all([
    c.cgroupsPath ? readCgroupStats(resolveCgroupPath(c.cgroupsPath, rt.config.cgroupDriver)) : Promise.resolve(undefined),
    writableLayer(rt, c.id),
  ]);
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

/** The pod cgroup is the parent of its containers' cgroups (kubelet's pod-level cgroup). */
function podCgroup(s: SandboxRecord): string {
  if (!s.cgroupsPath || s.cgroupsPath.includes(':')) return s.cgroupsPath;
  return s.cgroupsPath.slice(0, s.cgroupsPath.lastIndexOf('/')) || s.cgroupsPath;
}

export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxErrors: bigint;
  txBytes: bigint;
  txErrors: bigint;
}

/** /proc/<pid>/net/dev: one line per interface, receive then transmit counters after the colon. */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const f = line.slice(colon + 1).trim().split(/\s+/);
    if (f.length < 11) continue;
    out.push({ name: line.slice(0, colon).trim(), rxBytes: BigInt(f[0]!), rxErrors: BigInt(f[2]!), txBytes: BigInt(f[8]!), txErrors: BigInt(f[10]!) });
  }
  return out;
}

/**
 * The pod network's counters, read through the pause process (its /proc/<pid>/net is the pod's
 * namespace). eth0 is the default interface, as kubelet names it; lo is left out. A host-network
 * pod has none of its own.
 */
function networkOf(s: SandboxRecord, at: bigint): NetworkUsage | undefined {
  if (s.networkDown || !s.netnsPath || s.pid === 0) return undefined;
  let counters: InterfaceCounters[];
  try {
    counters = parseNetDev(readFileSync(`/proc/${s.pid}/net/dev`, 'utf8')).filter((c) => c.name !== 'lo');
  } catch {
    return undefined;
  }
  const usage = (c: InterfaceCounters): NetworkInterfaceUsage => ({ name: c.name, rxBytes: u64(c.rxBytes), rxErrors: u64(c.rxErrors), txBytes: u64(c.txBytes), txErrors: u64(c.txErrors) });
  const eth0 = counters.find((c) => c.name === 'eth0');
  return { timestamp: at, defaultInterface: eth0 ? usage(eth0) : undefined, interfaces: counters.map(usage) };
}

export async function podStatsOf(rt: CriRuntime, s: SandboxRecord): Promise<PodSandboxStats> {
  const at = nowNs();
  const parent = s.config.linux?.cgroupParent ? podCgroup(s) : s.cgroupsPath;
  const cg = parent ? await readCgroupStats(resolveCgroupPath(parent, rt.config.cgroupDriver)) : undefined;
  const containers = await Promise.all(rt.containersOf(s.id).map((c) => statsOf(rt, c)));
  return {
    attributes: { id: s.id, metadata: s.config.metadata, labels: s.config.labels, annotations: s.config.annotations },
    linux: {
      cpu: cpuOf(rt.cpuRates.sandboxes, s.id, cg, at),
      memory: memoryOf(cg, at),
      network: networkOf(s, at),
      process: { timestamp: at, processCount: u64(cg?.pids?.current) },
      containers,
      io: undefined,
    },
    windows: undefined,
  };
}

