import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseProcs, readCgroupSample, sampleFromV1, sampleFromV2 } from '../../../../lib/cgroups/sample.js';
import { fakeV1, files, pod, root, useFakeRoot } from './fixtures.js';

// The one-pass cgroup reader behind ListPodSandboxMetrics, against fake v1 and v2 trees.

useFakeRoot();
const at = () => 42n;

function moreV1(): void {
  fakeV1();
  files(join(root, 'memory', pod), {
    'memory.max_usage_in_bytes': '157286400\n',
    'memory.failcnt': '4\n',
    'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
    'memory.stat': [
      'cache 1000', 'rss 5', 'mapped_file 3', 'inactive_file 7', 'pgfault 11', 'pgmajfault 1',
      'total_cache 20971520', 'total_rss 73400320', 'total_mapped_file 4096', 'total_swap 8192',
      'total_inactive_file 10485760', 'total_pgfault 12345', 'total_pgmajfault 6', '',
    ].join('\n'),
  });
  files(join(root, 'pids', pod), { 'cgroup.procs': '100\n101\n', 'pids.current': '7\n', 'pids.max': '512\n' });
}

function fakeV2(): void {
  files(root, { 'cgroup.controllers': 'cpu memory pids\n' });
  files(join(root, pod), {
    'cpu.stat': 'usage_usec 2500000\nuser_usec 1500000\nsystem_usec 1000000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n',
    'memory.current': '104857600\n',
    'memory.peak': '150000000\n',
    'memory.max': 'max\n',
    'memory.stat': 'anon 73400320\nfile 20971520\nfile_mapped 4096\ninactive_file 10485760\npgfault 12345\npgmajfault 6\n',
    'memory.events': 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n',
    'memory.swap.current': '0\n',
    'pids.current': '3\n',
    'pids.max': 'max\n',
    'cgroup.procs': '7\n8\n9\n',
  });
}

describe('readCgroupSample, v1', () => {
  it('reads cpu, memory, pids and cgroup.procs from their hierarchies in one pass', async () => {
    moreV1();
    const s = await readCgroupSample(pod, { root, now: at });
    expect(s).toEqual({
      mode: 'v1',
      timestampNs: 42n,
      cpu: { usageNs: 2_500_000_000n, userNs: 1_500_000_000n, systemNs: 800_000_000n, periods: 10n, throttledPeriods: 3n, throttledNs: 4000n },
      memory: {
        usageBytes: 104857600n,
        workingSetBytes: 104857600n - 10485760n,
        rssBytes: 73400320n,
        cacheBytes: 20971520n,
        mappedFileBytes: 4096n,
        swapBytes: 8192n,
        maxUsageBytes: 157286400n,
        limitBytes: 209715200n,
        failcnt: 4n,
        oomKills: 2n,
        pgfault: { container: 11n, hierarchy: 12345n },
        pgmajfault: { container: 1n, hierarchy: 6n },
      },
      threads: { current: 7n, max: 512n },
      procs: [100, 101],
    });
  });

  it('leaves out what the kernel does not have (no oom_kill, no swap accounting, no limit)', async () => {
    moreV1();
    files(join(root, 'memory', pod), {
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\n',
      'memory.limit_in_bytes': '9223372036854771712\n',
      'memory.stat': 'total_rss 1\ntotal_inactive_file 0\n',
    });
    const m = (await readCgroupSample(pod, { root }))?.memory;
    expect(m?.oomKills).toBeUndefined();
    expect(m?.swapBytes).toBeUndefined();
    expect(m?.limitBytes).toBeUndefined();
    expect(m?.cacheBytes).toBe(0n);
  });

  it('is undefined for a cgroup that is gone (the container exited meanwhile)', async () => {
    moreV1();
    expect(await readCgroupSample('/kubepods/burstable/pod1/gone', { root })).toBeUndefined();
  });

  it('works with cpu and cpuacct mounted apart and no memory hierarchy', async () => {
    fakeV1('cpuacct');
    rmSync(join(root, 'memory'), { recursive: true });
    const s = await readCgroupSample(pod, { root });
    expect(s?.cpu.usageNs).toBe(2_500_000_000n);
    expect(s?.cpu.periods).toBeUndefined();
    expect(s?.memory).toBeUndefined();
  });
});

describe('readCgroupSample, v2', () => {
  it('reads cpu.stat, memory.*, pids.* and cgroup.procs of one directory', async () => {
    fakeV2();
    expect(await readCgroupSample(pod, { root, now: at })).toEqual({
      mode: 'v2',
      timestampNs: 42n,
      cpu: { usageNs: 2_500_000_000n, userNs: 1_500_000_000n, systemNs: 1_000_000_000n, periods: 10n, throttledPeriods: 2n, throttledNs: 300_000n },
      memory: {
        usageBytes: 104857600n,
        workingSetBytes: 104857600n - 10485760n,
        rssBytes: 73400320n,
        cacheBytes: 20971520n,
        mappedFileBytes: 4096n,
        swapBytes: 0n,
        maxUsageBytes: 150000000n,
        oomKills: 1n,
        pgfault: { container: 12345n, hierarchy: 12345n },
        pgmajfault: { container: 6n, hierarchy: 6n },
      },
      threads: { current: 3n },
      procs: [7, 8, 9],
    });
  });

  it('leaves out controllers that are not enabled, and is undefined once the cgroup is gone', async () => {
    fakeV2();
    for (const f of ['memory.current', 'pids.current']) rmSync(join(root, pod, f));
    const s = await readCgroupSample(pod, { root });
    expect(s?.memory).toBeUndefined();
    expect(s?.threads).toBeUndefined();
    expect(await readCgroupSample('/nope', { root })).toBeUndefined();
  });
});

describe('the pure parts', () => {
  it('parseProcs takes at most the limit and skips junk', () => {
    expect(parseProcs('1\n2\n\nx\n3\n', 2)).toEqual([1, 2]);
    expect(parseProcs(undefined)).toEqual([]);
    expect(parseProcs('5')).toEqual([5]);
  });

  it('a sample without usage is no sample', () => {
    expect(sampleFromV1({}, 1n)).toBeUndefined();
    expect(sampleFromV2({ 'cpu.stat': 'nr_periods 1\n' }, 1n)).toBeUndefined();
  });
});
