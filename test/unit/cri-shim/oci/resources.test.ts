import { describe, expect, it } from 'vitest';
import { clampOomScoreAdj, linuxResources } from '../../../../cri-shim/oci/resources.js';
import { LinuxContainerResources, type DeepPartial } from '../../../../proto/gen/runtime/v1/api.js';

const r = (p: DeepPartial<LinuxContainerResources>): LinuxContainerResources => LinuxContainerResources.fromPartial(p);

describe('linuxResources', () => {
  it('leaves unset (zero) values out', () => {
    expect(linuxResources(r({}), -999)).toEqual({ resources: {}, oomScoreAdj: 0 });
  });

  it('maps cpu, cpuset and memory', () => {
    const out = linuxResources(r({ cpuShares: 2, cpuQuota: -1, cpuPeriod: 100000, cpusetCpus: '0-1', cpusetMems: '0', memoryLimitInBytes: 123456789, memorySwapLimitInBytes: 223456789 }), -999);
    expect(out.resources).toEqual({ cpu: { shares: 2, quota: -1, period: 100000, cpus: '0-1', mems: '0' }, memory: { limit: 123456789, swap: 223456789 } });
  });

  it('maps hugepages and unified (cgroup v2) values', () => {
    const out = linuxResources(r({ hugepageLimits: [{ pageSize: '2MB', limit: 4194304 }], unified: { 'memory.high': '100000' } }), -999);
    expect(out.resources.hugepageLimits).toEqual([{ pageSize: '2MB', limit: 4194304 }]);
    expect(out.resources.unified).toEqual({ 'memory.high': '100000' });
  });

  it('clamps oom_score_adj to the daemon minimum and the kernel range', () => {
    expect(linuxResources(r({ oomScoreAdj: -1000 }), -999).oomScoreAdj).toBe(-999);
    expect(linuxResources(r({ oomScoreAdj: 500 }), -999).oomScoreAdj).toBe(500);
    expect(linuxResources(r({ oomScoreAdj: -600 }), -500).oomScoreAdj).toBe(-500);
    expect(clampOomScoreAdj(2000, -999)).toBe(1000);
    expect(clampOomScoreAdj(-5000, -2000)).toBe(-1000);
  });
});
