import type { LinuxContainerResources } from '../../proto/gen/runtime/v1/api.js';
import type { LinuxResources } from './spec-types.js';

// CRI LinuxContainerResources → OCI linux.resources (and the process's oom_score_adj). Zero means
// "not set" in proto3, so zero values are left out rather than written as limits.

const num = (v: bigint | undefined): number => Number(v ?? 0n);

/** oom_score_adj within the kernel's range and never below what berth itself may set. */
export function clampOomScoreAdj(value: number, minOomScoreAdj: number): number {
  return Math.min(1000, Math.max(value, minOomScoreAdj, -1000));
}

export function linuxResources(r: LinuxContainerResources, minOomScoreAdj: number): { resources: LinuxResources; oomScoreAdj?: number } {
  const resources: LinuxResources = {};
  const cpu: NonNullable<LinuxResources['cpu']> = {};
  if (num(r.cpuShares) > 0) cpu.shares = num(r.cpuShares);
  if (num(r.cpuQuota) !== 0) cpu.quota = num(r.cpuQuota);
  if (num(r.cpuPeriod) > 0) cpu.period = num(r.cpuPeriod);
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length) resources.cpu = cpu;

  const memory: NonNullable<LinuxResources['memory']> = {};
  if (num(r.memoryLimitInBytes) > 0) memory.limit = num(r.memoryLimitInBytes);
  if (num(r.memorySwapLimitInBytes) !== 0) memory.swap = num(r.memorySwapLimitInBytes);
  if (Object.keys(memory).length) resources.memory = memory;

  if (r.hugepageLimits?.length) {
    resources.hugepageLimits = r.hugepageLimits.map((h) => ({ pageSize: h.pageSize, limit: num(h.limit) }));
  }
  if (r.unified && Object.keys(r.unified).length) resources.unified = { ...r.unified };

  const out: { resources: LinuxResources; oomScoreAdj?: number } = { resources };
  // Kubelet always sends the value it wants (0 included), so it is always applied.
  if (r.oomScoreAdj !== undefined) out.oomScoreAdj = clampOomScoreAdj(num(r.oomScoreAdj), minOomScoreAdj);
  return out;
}
