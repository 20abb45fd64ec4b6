import type { CgroupSample } from '../../lib/cgroups/sample.js';
import type { NetDevCounters } from '../../lib/net-dev.js';
import type { ContainerMetrics, Metric, PodSandboxMetrics } from '../../proto/gen/runtime/v1/api.js';
import { type MetricDef, metricDefs as d } from './descriptors.js';

// From samples (what collect.ts read off cgroupfs, /proc and the snapshotter) to CRI Metric
// messages: pure, so the unit tests check every name against its descriptor. CRI carries each
// value as a uint64, so the *_seconds metrics are whole seconds, rounded down, as CRI-O sends them.

/** What one running container looks like at one moment. */
export interface ContainerSample {
  containerId: string;
  /** Label values in baseLabelKeys order. */
  labels: readonly string[];
  cgroup: CgroupSample;
  /** Writable layer usage from the snapshotter; absent when it could not be asked. */
  fsUsageBytes?: bigint;
  /** Open descriptors and sockets of the container's processes (absent when not scanned). */
  fds?: { files: bigint; sockets: bigint };
  /** When the container started, ns since the epoch. */
  startedAtNs: bigint;
  /** Resources the container was given (CRI LinuxContainerResources, 0 = not set). */
  spec: { memorySwapLimitBytes: bigint; cpuPeriod: bigint; cpuQuota: bigint; cpuShares: bigint };
}

/** What one ready pod looks like at one moment. */
export interface PodSample {
  podSandboxId: string;
  /** Label values in baseLabelKeys order, container and name empty. */
  labels: readonly string[];
  /** The pod's own cgroup, when it has one apart from the other pods (a cgroup parent). */
  cgroup?: CgroupSample;
  /** The pod network namespace's interfaces, lo left out; empty for host-network pods. */
  interfaces: readonly NetDevCounters[];
  createdAtNs: bigint;
  containers: readonly ContainerSample[];
}

const nsPerSecond = 1_000_000_000n;

/** Collects metrics of one subject (a pod or a container) with its base label values. */
class MetricList {
  readonly items: Metric[] = [];
  constructor(
    private readonly labels: readonly string[],
    private readonly timestamp: bigint,
  ) {}

  add(def: MetricDef, value: bigint | undefined, extra?: readonly string[]): void {
    if (value === undefined) return;
    // Negative values (a CRI quota of -1) have no uint64 form: left out.
    if (value < 0n) return;
    const labelValues = extra ? [...this.labels, ...extra] : (this.labels as string[]);
    this.items.push({ name: def.name, timestamp: this.timestamp, metricType: def.type, labelValues, value: { value } });
  }
}

function addCgroup(m: MetricList, s: CgroupSample): void {
  const { cpu, memory, threads } = s;
  m.add(d.cpuUsage, cpu.usageNs / nsPerSecond, ['total']);
  if (cpu.userNs !== undefined) m.add(d.cpuUser, cpu.userNs / nsPerSecond);
  if (cpu.systemNs !== undefined) m.add(d.cpuSystem, cpu.systemNs / nsPerSecond);
  if (cpu.periods !== undefined) {
    m.add(d.cfsPeriods, cpu.periods);
    m.add(d.cfsThrottledPeriods, cpu.throttledPeriods);
    if (cpu.throttledNs !== undefined) m.add(d.cfsThrottledSeconds, cpu.throttledNs / nsPerSecond);
  }
  if (memory) {
    m.add(d.memoryUsage, memory.usageBytes);
    m.add(d.memoryMaxUsage, memory.maxUsageBytes);
    m.add(d.memoryWorkingSet, memory.workingSetBytes);
    m.add(d.memoryRss, memory.rssBytes);
    m.add(d.memoryCache, memory.cacheBytes);
    m.add(d.memorySwap, memory.swapBytes);
    m.add(d.memoryMappedFile, memory.mappedFileBytes);
    m.add(d.memoryFailcnt, memory.failcnt);
    m.add(d.memoryFailures, memory.pgfault.container, ['pgfault', 'container']);
    m.add(d.memoryFailures, memory.pgfault.hierarchy, ['pgfault', 'hierarchy']);
    m.add(d.memoryFailures, memory.pgmajfault.container, ['pgmajfault', 'container']);
    m.add(d.memoryFailures, memory.pgmajfault.hierarchy, ['pgmajfault', 'hierarchy']);
    m.add(d.oomEvents, memory.oomKills);
    // cAdvisor reports 0 for "no limit".
    m.add(d.specMemoryLimit, memory.limitBytes ?? 0n);
  }
  m.add(d.processes, BigInt(s.procs.length));
  if (threads) {
    m.add(d.threads, threads.current);
    m.add(d.threadsMax, threads.max ?? 0n);
  }
}

function addInterfaces(m: MetricList, interfaces: readonly NetDevCounters[]): void {
  for (const i of interfaces) {
    const extra = [i.name];
    m.add(d.rxBytes, i.rxBytes, extra);
    m.add(d.rxPackets, i.rxPackets, extra);
    m.add(d.rxErrors, i.rxErrors, extra);
    m.add(d.rxDropped, i.rxDropped, extra);
    m.add(d.txBytes, i.txBytes, extra);
    m.add(d.txPackets, i.txPackets, extra);
    m.add(d.txErrors, i.txErrors, extra);
    m.add(d.txDropped, i.txDropped, extra);
  }
}

export function containerMetrics(c: ContainerSample, nowNs: bigint): ContainerMetrics {
  const m = new MetricList(c.labels, c.cgroup.timestampNs);
  addCgroup(m, c.cgroup);
  m.add(d.fsUsage, c.fsUsageBytes);
  if (c.fds) {
    m.add(d.fileDescriptors, c.fds.files);
    m.add(d.sockets, c.fds.sockets);
  }
  m.add(d.startTime, c.startedAtNs / nsPerSecond);
  m.add(d.lastSeen, nowNs / nsPerSecond);
  if (c.spec.memorySwapLimitBytes > 0n) m.add(d.specMemorySwapLimit, c.spec.memorySwapLimitBytes);
  if (c.spec.cpuPeriod > 0n) m.add(d.specCpuPeriod, c.spec.cpuPeriod);
  if (c.spec.cpuQuota > 0n) m.add(d.specCpuQuota, c.spec.cpuQuota);
  if (c.spec.cpuShares > 0n) m.add(d.specCpuShares, c.spec.cpuShares);
  return { containerId: c.containerId, metrics: m.items };
}

export function podSandboxMetrics(p: PodSample, nowNs: bigint): PodSandboxMetrics {
  const m = new MetricList(p.labels, p.cgroup?.timestampNs ?? nowNs);
  if (p.cgroup) addCgroup(m, p.cgroup);
  addInterfaces(m, p.interfaces);
  m.add(d.startTime, p.createdAtNs / nsPerSecond);
  m.add(d.lastSeen, nowNs / nsPerSecond);
  return { podSandboxId: p.podSandboxId, metrics: m.items, containerMetrics: p.containers.map((c) => containerMetrics(c, nowNs)) };
}
