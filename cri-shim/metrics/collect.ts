import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { expandSlice, nowNs, resolveCgroupPath } from '../../lib/cgroups.js';
import { readCgroupSample } from '../../lib/cgroups/sample.js';
import { parseNetDevCounters, type NetDevCounters } from '../../lib/net-dev.js';
import type { UsageResponse } from '../../proto/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.js';
import { ContainerState, PodSandboxState, type PodSandboxMetrics } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';
import { type ContainerSample, podSandboxMetrics, type PodSample } from './pod-metrics.js';

// ListPodSandboxMetrics' reading side: for every ready pod and its running containers, one
// pass over each cgroup (lib/cgroups/sample.ts), the pod netns's /proc/<pause>/net/dev, the
// containers' open descriptors and the snapshotter's usage of their writable layers. Pods are
// read a few at a time so a node with many pods does not queue hundreds of file reads at once;
// a pod or container that goes away meanwhile is left out, never an error.

/** Pods read at the same time. */
const podConcurrency = 4;
/** File descriptors looked at per container to count sockets (a bound on the /proc scan). */
const maxFdsScanned = 4096;

/** The cgroup the pod's containers share: only a pod given its own cgroup parent has one. */
export function podCgroupPath(s: SandboxRecord, driver: 'cgroupfs' | 'systemd'): string | undefined {
  if (!s.config.linux?.cgroupParent || !s.cgroupsPath) return undefined;
  if (driver === 'systemd') {
    const slice = s.cgroupsPath.split(':')[0];
    return slice ? expandSlice(slice) : undefined;
  }
  const cut = s.cgroupsPath.lastIndexOf('/');
  return cut > 0 ? s.cgroupsPath.slice(0, cut) : undefined;
}

/** The pod netns's interfaces other than lo, through the pause process; none when it has no netns of its own. */
function podInterfaces(s: SandboxRecord): NetDevCounters[] {
  if (s.networkDown || !s.netnsPath || s.pid <= 0) return [];
  try {
    return parseNetDevCounters(readFileSync(`/proc/${s.pid}/net/dev`, 'utf8')).filter((i) => i.name !== 'lo');
  } catch {
    return [];
  }
}

/**
 * Open descriptors and sockets of `pids` (from cgroup.procs). /proc reads are served by the
 * kernel without blocking on a disk, so they run synchronously, up to maxFdsScanned links.
 */
export function countFds(pids: readonly number[], procRoot = '/proc'): { files: bigint; sockets: bigint } {
  let files = 0;
  let sockets = 0;
  let budget = maxFdsScanned;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`${procRoot}/${pid}/fd`);
    } catch {
      continue; // the process exited
    }
    files += fds.length;
    for (const fd of fds) {
      if (budget-- <= 0) break;
      try {
        if (readlinkSync(`${procRoot}/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
      } catch {
        // closed meanwhile
      }
    }
  }
  return { files: BigInt(files), sockets: BigInt(sockets) };
}

async function writableLayerBytes(rt: CriRuntime, id: string): Promise<bigint | undefined> {
  try {
    const u = await rt.client.unary<UsageResponse>('snapshot usage', (md, cb) => rt.client.snapshots.usage({ snapshotter: rt.config.snapshotter, key: id }, md, cb));
    return u.size;
  } catch {
    return undefined;
  }
}

async function containerSample(rt: CriRuntime, s: SandboxRecord, c: ContainerRecord): Promise<ContainerSample | undefined> {
  if (!c.cgroupsPath) return undefined;
  const [cgroup, fsUsageBytes] = await Promise.all([readCgroupSample(resolveCgroupPath(c.cgroupsPath, rt.config.cgroupDriver)), writableLayerBytes(rt, c.id)]);
  if (!cgroup) return undefined;
  const meta = s.config.metadata;
  const r = c.config.linux?.resources;
  const sample: ContainerSample = {
    containerId: c.id,
    labels: [c.config.metadata?.name ?? '', c.id, c.imageName, c.id, meta?.namespace ?? '', meta?.name ?? ''],
    cgroup,
    fds: countFds(cgroup.procs),
    startedAtNs: c.startedAt,
    spec: { memorySwapLimitBytes: r?.memorySwapLimitInBytes ?? 0n, cpuPeriod: r?.cpuPeriod ?? 0n, cpuQuota: r?.cpuQuota ?? 0n, cpuShares: r?.cpuShares ?? 0n },
  };
  if (fsUsageBytes !== undefined) sample.fsUsageBytes = fsUsageBytes;
  return sample;
}

async function podSample(rt: CriRuntime, s: SandboxRecord, containers: readonly ContainerRecord[]): Promise<PodSample> {
  const podPath = podCgroupPath(s, rt.config.cgroupDriver);
  const [cgroup, samples] = await Promise.all([
    podPath ? readCgroupSample(resolveCgroupPath(podPath, 'cgroupfs')) : Promise.resolve(undefined),
    Promise.all(containers.map((c) => containerSample(rt, s, c))),
  ]);
  const meta = s.config.metadata;
  const pod: PodSample = {
    podSandboxId: s.id,
    labels: ['', s.id, '', '', meta?.namespace ?? '', meta?.name ?? ''],
    interfaces: podInterfaces(s),
    createdAtNs: s.createdAt,
    containers: samples.filter((c): c is ContainerSample => c !== undefined),
  };
  if (cgroup) pod.cgroup = cgroup;
  return pod;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Metrics of every ready pod and its running containers. */
export async function collectPodSandboxMetrics(rt: CriRuntime): Promise<PodSandboxMetrics[]> {
  const running = new Map<string, ContainerRecord[]>();
  for (const c of rt.containers.all()) {
    if (c.state !== ContainerState.CONTAINER_RUNNING) continue;
    const list = running.get(c.sandboxId);
    if (list) list.push(c);
    else running.set(c.sandboxId, [c]);
  }
  const pods = rt.sandboxes.all().filter((s) => s.state === PodSandboxState.SANDBOX_READY);
  const samples = await mapLimit(pods, podConcurrency, (s) => podSample(rt, s, running.get(s.id) ?? []));
  const now = nowNs();
  // A pod removed while it was read is not reported.
  return samples.filter((p) => rt.sandboxes.find(p.podSandboxId)).map((p) => podSandboxMetrics(p, now));
}
