// What berth reads from a cgroup, named after the CRI's ContainerStats fields. Every counter is a
// bigint, as CRI's UInt64Value is: CPU nanoseconds and wall-clock timestamps outgrow 2^53.

export type CgroupMode = 'v1' | 'v2' | 'hybrid';
export type CgroupDriver = 'cgroupfs' | 'systemd';

export interface CpuThrottling {
  /** CFS enforcement periods that elapsed. */
  periods: bigint;
  /** Periods in which the cgroup was throttled. */
  throttledPeriods: bigint;
  throttledTimeNs: bigint;
}

export interface CgroupCpuStats {
  /** Not read from the cgroup: a rate over two samples, filled in by CpuRateTracker's caller. */
  usageNanoCores?: bigint;
  /** Cumulative CPU time of all tasks, over all cores. */
  usageCoreNanoSeconds: bigint;
  userNs?: bigint;
  systemNs?: bigint;
  throttled?: CpuThrottling;
}

export interface CgroupMemoryStats {
  usageBytes: bigint;
  /** Usage minus inactive file cache, floored at 0: what kubelet evicts on. */
  workingSetBytes: bigint;
  rssBytes: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** Absent when the cgroup has no memory limit. */
  limitBytes?: bigint;
  /** limitBytes minus workingSetBytes (floored at 0), when there is a limit. */
  availableBytes?: bigint;
}

export interface CgroupPidsStats {
  current: bigint;
  /** Absent when unlimited ("max"). */
  limit?: bigint;
}

export interface CgroupStats {
  /** Wall clock, nanoseconds since the epoch, taken just before the files were read. */
  timestampNs: bigint;
  /** Which layout the numbers came from ('hybrid' hosts are read as v1: runc puts limits there). */
  mode: 'v1' | 'v2';
  cpu: CgroupCpuStats;
  /** Absent when the memory controller is not enabled for the cgroup. */
  memory?: CgroupMemoryStats;
  /** Absent when the pids controller is not enabled for the cgroup. */
  pids?: CgroupPidsStats;
}

export interface ReadCgroupOptions {
  /** Where cgroupfs is mounted; tests point it at a fake tree. Default /sys/fs/cgroup. */
  root?: string;
}
