import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCgroupStats } from '../../../lib/cgroups.js';
import { fakeV1, files, pod, root, useFakeRoot } from './cgroups/fixtures.js';

// The cgroupfs readers against fake v1 and v2 trees in a temp dir.

useFakeRoot();

function fakeV2(): void {
  files(root, { 'cgroup.controllers': 'cpu memory pids\n' });
  files(join(root, pod), {
    'cpu.stat': 'usage_usec 2500000\nuser_usec 1500000\nsystem_usec 1000000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n',
    'memory.current': '104857600\n',
    'memory.max': 'max\n',
    'memory.stat': 'anon 73400320\nfile 20971520\ninactive_file 10485760\npgfault 12345\npgmajfault 6\n',
    'pids.current': '3\n',
    'pids.max': '100\n',
  });
}

describe('readCgroupStats, v1', () => {
  it('reads cpu, memory and pids, each from its own hierarchy', async () => {
    fakeV1();
    const s = await readCgroupStats(pod, { root });
    expect(s?.mode).toBe('v1');
    expect(s?.cpu).toEqual({
      usageCoreNanoSeconds: 2_500_000_000n,
      userNs: 1_500_000_000n,
      systemNs: 800_000_000n,
      throttled: { periods: 10n, throttledPeriods: 3n, throttledTimeNs: 4000n },
    });
    expect(s?.memory).toEqual({
      usageBytes: 104857600n,
      workingSetBytes: 104857600n - 10485760n,
      rssBytes: 73400320n,
      pageFaults: 12345n,
      majorPageFaults: 6n,
      limitBytes: 209715200n,
      availableBytes: 209715200n - (104857600n - 10485760n),
    });
    expect(s?.pids).toEqual({ current: 7n });
    expect(s?.timestampNs).toBeGreaterThan(1_600_000_000_000_000_000n);
  });

  it('works with cpu and cpuacct mounted apart', async () => {
    fakeV1('cpuacct');
    const s = await readCgroupStats(pod, { root });
    expect(s?.cpu.usageCoreNanoSeconds).toBe(2_500_000_000n);
    expect(s?.cpu.throttled).toBeUndefined();
  });

  it('treats the page-counter maximum as no limit and floors the working set at 0', async () => {
    fakeV1();
    files(join(root, 'memory', pod), {
      'memory.limit_in_bytes': '9223372036854771712\n',
      'memory.usage_in_bytes': '100\n',
      'memory.stat': 'total_inactive_file 4096\ntotal_rss 50\n',
    });
    const m = (await readCgroupStats(pod, { root }))?.memory;
    expect(m?.limitBytes).toBeUndefined();
    expect(m?.availableBytes).toBeUndefined();
    expect(m?.workingSetBytes).toBe(0n);
    expect(m?.pageFaults).toBe(0n);
  });

  it('is undefined when the cgroup is gone', async () => {
    fakeV1();
    expect(await readCgroupStats('/kubepods/burstable/pod1/gone', { root })).toBeUndefined();
  });

  it('reads a hybrid host through its v1 hierarchies', async () => {
    fakeV1();
    files(root, { 'unified/cgroup.controllers': '\n' });
    expect((await readCgroupStats(pod, { root }))?.mode).toBe('v1');
  });
});

describe('readCgroupStats, v2', () => {
  it('reads cpu.stat, memory.current/max/stat and pids', async () => {
    fakeV2();
    const s = await readCgroupStats(pod, { root });
    expect(s?.mode).toBe('v2');
    expect(s?.cpu).toEqual({
      usageCoreNanoSeconds: 2_500_000_000n,
      userNs: 1_500_000_000n,
      systemNs: 1_000_000_000n,
      throttled: { periods: 10n, throttledPeriods: 2n, throttledTimeNs: 300_000n },
    });
    expect(s?.memory).toEqual({
      usageBytes: 104857600n,
      workingSetBytes: 104857600n - 10485760n,
      rssBytes: 73400320n,
      pageFaults: 12345n,
      majorPageFaults: 6n,
    });
    expect(s?.pids).toEqual({ current: 3n, limit: 100n });
  });

  it('reports a memory limit and leaves out controllers that are not enabled', async () => {
    fakeV2();
    files(join(root, pod), { 'memory.max': '209715200\n' });
    rmSync(join(root, pod, 'pids.current'));
    const s = await readCgroupStats(pod, { root });
    expect(s?.memory?.limitBytes).toBe(209715200n);
    expect(s?.pids).toBeUndefined();
  });

  it('is undefined when the cgroup is gone', async () => {
    fakeV2();
    expect(await readCgroupStats('/nope', { root })).toBeUndefined();
  });
});
