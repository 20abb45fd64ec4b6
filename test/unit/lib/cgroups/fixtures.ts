import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

// Fake cgroup trees in a temp dir, shared by the unit tests of lib/cgroups.ts and lib/cgroups/.

/** The root of the fake trees: a fresh temp dir during each test of a file that calls useFakeRoot(). */
export let root = '';

/** Give each test of the calling file a fresh `root`, removed after it. */
export function useFakeRoot(): void {
  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'berth-cgroups-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));
}

export function files(base: string, content: Record<string, string>): void {
  for (const [name, text] of Object.entries(content)) {
    const path = join(base, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }
}

export const pod = '/kubepods/burstable/pod1/ctr1';

export function fakeV1(cpuDir = 'cpu,cpuacct'): void {
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
