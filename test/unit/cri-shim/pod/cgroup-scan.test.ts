import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCgroupStats } from '../../../../lib/cgroups.js';
import { CgroupScanner, flatKeyed } from '../../../../cri-shim/pod/cgroup-scan.js';
import { fakeV1, files, pod, root, useFakeRoot } from '../../lib/cgroups/fixtures.js';

// The one-pass cgroup reader of the stats RPCs, against fake v1 and v2 trees: the same numbers
// as lib/cgroups' reader, each cgroup read once per pass, fresh samples reused only briefly.

useFakeRoot();

function fakeV2(path = pod, usageUsec = 2500000): void {
  files(root, { 'cgroup.controllers': 'cpu memory pids\n' });
  files(join(root, path), {
    'cpu.stat': `usage_usec ${usageUsec}\nuser_usec 1500000\nsystem_usec 1000000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n`,
    'memory.current': '104857600\n',
    'memory.max': '209715200\n',
    'memory.stat': 'anon 73400320\nfile 20971520\ninactive_file 10485760\npgfault 12345\npgmajfault 6\n',
    'pids.current': '3\n',
    'pids.max': '100\n',
  });
}

const withoutTime = <T extends { timestampNs: bigint } | undefined>(s: T) => (s ? { ...s, timestampNs: 0n } : s);

describe('CgroupScanner', () => {
  for (const [mode, fake] of [['v1', () => fakeV1()], ['v2', () => fakeV2()]] as const) {
    it(`reads what lib/cgroups reads (${mode}), with detail`, async () => {
      fake();
      const scanner = new CgroupScanner({ root });
      const got = (await scanner.sample([pod], { detail: true })).get(pod);
      expect(withoutTime(got)).toEqual(withoutTime(await readCgroupStats(pod, { root })));
    });

    it(`reads only CPU usage, memory and (when asked) pids.current for CRI stats (${mode})`, async () => {
      fake();
      const got = new CgroupScanner({ root }).sampleOne(pod, { pids: true });
      const full = await readCgroupStats(pod, { root });
      expect(got?.cpu).toEqual({ usageCoreNanoSeconds: full!.cpu.usageCoreNanoSeconds });
      expect(got?.memory).toEqual(full!.memory);
      expect(got?.pids).toEqual({ current: full!.pids!.current });
      expect(new CgroupScanner({ root }).sampleOne(pod)?.pids).toBeUndefined();
    });
  }

  it('reads each cgroup once per pass and says which are gone', async () => {
    fakeV2();
    fakeV2('/kubepods/pod2/c');
    const scanner = new CgroupScanner({ root, maxAgeMs: 0 });
    const samples = await scanner.sample([pod, '/kubepods/pod2/c', pod, '/gone']);
    expect([...samples.keys()]).toEqual([pod, '/kubepods/pod2/c', '/gone']);
    expect(samples.get('/gone')).toBeUndefined();
    expect(samples.get('/kubepods/pod2/c')?.cpu.usageCoreNanoSeconds).toBe(2_500_000_000n);
    expect(scanner.reads).toBe(3);
  });

  it('reuses a sample only while it is fresh, and re-reads one that lacks what is asked', async () => {
    fakeV2();
    const scanner = new CgroupScanner({ root, maxAgeMs: 60_000 });
    expect(scanner.sampleOne(pod)?.cpu.usageCoreNanoSeconds).toBe(2_500_000_000n);
    fakeV2(pod, 3000000);
    expect(scanner.sampleOne(pod)?.cpu.usageCoreNanoSeconds).toBe(2_500_000_000n);
    expect(scanner.sampleOne(pod, { pids: true })?.cpu.usageCoreNanoSeconds).toBe(3_000_000_000n);
    expect(scanner.reads).toBe(2);
    const fresh = new CgroupScanner({ root, maxAgeMs: 0 });
    fresh.sampleOne(pod);
    fakeV2(pod, 4000000);
    expect(fresh.sampleOne(pod)?.cpu.usageCoreNanoSeconds).toBe(4_000_000_000n);
  });
});

describe('flatKeyed', () => {
  it('takes only the keys asked for, skipping malformed lines', () => {
    const m = flatKeyed('cache 1\nrss 5\nbad\nrss_huge x\n\ntotal_rss 7', new Set(['rss', 'total_rss', 'rss_huge', 'bad']));
    expect([...m]).toEqual([['rss', 5n], ['total_rss', 7n]]);
  });
});
