import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CpuRateTracker,
  detectCgroupMode,
  expandSlice,
  parseMountInfo,
  readCgroupStats,
  resolveCgroupPath,
  v1CgroupDir,
} from '../../../lib/cgroups.js';

// cgroupfs readers against fake v1 and v2 trees in a temp dir, and the pure path and rate logic.

let root = '';
beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'berth-cgroups-')); });
afterEach(() => rmSync(root, { recursive: true, force: true }));

function files(base: string, content: Record<string, string>): void {
  for (const [name, text] of Object.entries(content)) {
    const path = join(base, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }
}

const pod = '/kubepods/burstable/pod1/ctr1';

function fakeV1(cpuDir = 'cpu,cpuacct'): void {
  files(join(root, cpuDir, pod), {
    'cpuacct.usage': '2500000000\n',
    'cpuacct.stat': 'user 150\nsystem 80\n',
    'cpu.stat': 'nr_periods 10\nnr_throttled 3\nthrottled_time 4000\n',
  });
  files(join(root, 'memory', pod), {
    'memory.usage_in_bytes': '104857600\n',
    'memory.limit_in_bytes': '209715200\n',
    'memory.stat': [
      'cache 1000', 'rss 5', 'inactive_file 7', 'pgfault 1', 'pgmajfault 1',
      'total_cache 20971520', 'total_rss 73400320', 'total_inactive_file 10485760', 'total_pgfault 12345', 'total_pgmajfault 6', '',
    ].join('\n'),
  });
  files(join(root, 'pids', pod), { 'pids.current': '7\n', 'pids.max': 'max\n' });
}

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

describe('detectCgroupMode', () => {
  it('is v2 when the root has cgroup.controllers', () => {
    files(root, { 'cgroup.controllers': 'cpu\n' });
    expect(detectCgroupMode(root)).toBe('v2');
  });
  it('is hybrid when only <root>/unified is cgroup2', () => {
    files(root, { 'unified/cgroup.controllers': '\n', 'memory/memory.stat': '' });
    expect(detectCgroupMode(root)).toBe('hybrid');
  });
  it('is v1 otherwise', () => {
    files(root, { 'memory/memory.stat': '' });
    expect(detectCgroupMode(root)).toBe('v1');
  });
});

describe('resolveCgroupPath', () => {
  it('cgroupfs: the path as given', () => {
    expect(resolveCgroupPath('/kubepods/besteffort/pod1/abc', 'cgroupfs')).toBe('/kubepods/besteffort/pod1/abc');
  });
  it('systemd: slice:prefix:name becomes the expanded slices and a scope', () => {
    expect(resolveCgroupPath('kubepods-burstable-pod1.slice:cri-containerd:abc', 'systemd'))
      .toBe('/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope');
  });
  it('systemd: an empty slice means system.slice, a name that is a slice is kept as is', () => {
    expect(resolveCgroupPath(':runc:abc', 'systemd')).toBe('/system.slice/runc-abc.scope');
    expect(resolveCgroupPath('kubepods.slice:x:kubepods-pod2.slice', 'systemd')).toBe('/kubepods.slice/kubepods-pod2.slice');
    expect(resolveCgroupPath('-.slice:p:n', 'systemd')).toBe('/p-n.scope');
  });
  it('systemd: rejects a path that is not slice:prefix:name, and bad slices', () => {
    expect(() => resolveCgroupPath('/kubepods/pod1', 'systemd')).toThrow(/slice:prefix:name/);
    expect(() => resolveCgroupPath('a--b.slice:p:n', 'systemd')).toThrow(/invalid slice/);
    expect(() => resolveCgroupPath('a/b.slice:p:n', 'systemd')).toThrow(/invalid slice/);
    expect(() => resolveCgroupPath('kubepods:p:n', 'systemd')).toThrow(/invalid slice/);
  });
  it('expandSlice nests each dash-separated prefix', () => {
    expect(expandSlice('a-b-c.slice')).toBe('/a.slice/a-b.slice/a-b-c.slice');
    expect(expandSlice('-')).toBe('/');
  });
});

describe('parseMountInfo', () => {
  const text = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct',
    '35 31 0:32 /kube /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    '90 20 0:29 / /mnt/other\\040dir rw - cgroup cgroup rw,cpu,cpuacct',
  ].join('\n');

  it('maps both controllers of a joint mount to it and prefers mounts under the root', () => {
    const h = parseMountInfo(text);
    expect(h.get('cpu')).toEqual({ mountPoint: '/sys/fs/cgroup/cpu,cpuacct', mountRoot: '/' });
    expect(h.get('cpuacct')?.mountPoint).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(h.get('name=systemd')?.mountPoint).toBe('/sys/fs/cgroup/systemd');
    expect(h.has('pids')).toBe(false);
  });
  it('unescapes octal escapes in mount points', () => {
    expect(parseMountInfo(text, '/mnt').get('cpu')?.mountPoint).toBe('/mnt/other dir');
  });
});

describe('v1CgroupDir on a fake tree', () => {
  it('finds a controller inside a joint-mount directory', () => {
    fakeV1();
    expect(v1CgroupDir('cpuacct', pod, root)).toBe(join(root, 'cpu,cpuacct', pod));
    expect(v1CgroupDir('memory', pod, root)).toBe(join(root, 'memory', pod));
    expect(v1CgroupDir('blkio', pod, root)).toBeUndefined();
  });
});

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

describe('CpuRateTracker', () => {
  it('has no rate for the first sample, then the slope in nanocores', () => {
    const t = new CpuRateTracker();
    expect(t.update('c', 1_000_000_000n, 10_000_000_000n)).toBeUndefined();
    // half a core: 0.5 s of CPU over 1 s of wall time
    expect(t.update('c', 1_500_000_000n, 11_000_000_000n)).toBe(500_000_000n);
    expect(t.get('c')).toBe(500_000_000n);
  });

  it('keeps keys apart, ignores stale samples and restarts after the counter went back', () => {
    const t = new CpuRateTracker();
    t.update('a', 0n, 1_000_000_000n);
    t.update('b', 0n, 1_000_000_000n);
    expect(t.update('a', 2_000_000_000n, 2_000_000_000n)).toBe(2_000_000_000n);
    expect(t.update('a', 9_000_000_000n, 2_000_000_000n)).toBe(2_000_000_000n);
    expect(t.update('a', 10n, 3_000_000_000n)).toBeUndefined();
    expect(t.update('b', 1_000_000_000n, 3_000_000_000n)).toBe(500_000_000n);
  });

  it('forgets a deleted key', () => {
    const t = new CpuRateTracker();
    t.update('a', 0n, 1n);
    t.update('a', 10n, 2n);
    expect(t.delete('a')).toBe(true);
    expect(t.size).toBe(0);
    expect(t.update('a', 20n, 3n)).toBeUndefined();
  });
});
