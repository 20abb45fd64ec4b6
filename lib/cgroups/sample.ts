import { join } from 'node:path';
import { nowNs } from '../cgroups.js';
import { parseFlatKeyed, parseSingleValue, readCgroupFile, saturatingSub } from './files.js';
import { defaultCgroupRoot, detectCgroupMode, v1CgroupDir, v2CgroupDir } from './hierarchy.js';

// Everything the cAdvisor-named metrics (CRI ListPodSandboxMetrics) need from one cgroup, read
// in one pass: each interface file once, all at the same time, then turned into numbers by pure
// functions (sampleFromV1/sampleFromV2) that the unit tests feed with fixture texts. The stats
// RPCs keep their smaller reader (lib/cgroups.ts); this one reads more files, for more metrics.

export interface CpuSample {
  usageNs: bigint;
  userNs?: bigint;
  systemNs?: bigint;
  periods?: bigint;
  throttledPeriods?: bigint;
  throttledNs?: bigint;
}

export interface MemorySample {
  usageBytes: bigint;
  /** Usage minus inactive file cache, floored at 0 (what kubelet evicts on). */
  workingSetBytes: bigint;
  rssBytes: bigint;
  cacheBytes: bigint;
  mappedFileBytes: bigint;
  /** Absent where swap is not accounted. */
  swapBytes?: bigint;
  /** v1 memory.max_usage_in_bytes, v2 memory.peak (kernels since 5.19). */
  maxUsageBytes?: bigint;
  /** Absent when unlimited. */
  limitBytes?: bigint;
  /** v1 only: how often usage hit the limit. */
  failcnt?: bigint;
  /** OOM kills inside the cgroup (v2 memory.events, v1 memory.oom_control since 4.13). */
  oomKills?: bigint;
  /** Page faults of the cgroup itself and of its whole subtree (v2 counts are always the subtree's). */
  pgfault: { container: bigint; hierarchy: bigint };
  pgmajfault: { container: bigint; hierarchy: bigint };
}

export interface CgroupSample {
  mode: 'v1' | 'v2';
  /** Wall clock, ns since the epoch, taken just before the files were read. */
  timestampNs: bigint;
  cpu: CpuSample;
  memory?: MemorySample;
  /** Tasks (threads) in the cgroup and their limit (absent: unlimited). */
  threads?: { current: bigint; max?: bigint };
  /** Process IDs from cgroup.procs, at most `maxProcs` of them. */
  procs: number[];
}

/** Interface file texts of one cgroup, by file name; undefined where a file does not exist. */
export type CgroupFiles = Readonly<Record<string, string | undefined>>;

/** Files read per layout, by controller (v1: the hierarchy each comes from). */
const v1Files = {
  cpuacct: ['cpuacct.usage', 'cpuacct.stat'],
  cpu: ['cpu.stat'],
  memory: ['memory.usage_in_bytes', 'memory.max_usage_in_bytes', 'memory.limit_in_bytes', 'memory.failcnt', 'memory.stat', 'memory.oom_control'],
  pids: ['pids.current', 'pids.max', 'cgroup.procs'],
} as const;
const v2Files = ['cpu.stat', 'memory.current', 'memory.peak', 'memory.max', 'memory.stat', 'memory.events', 'memory.swap.current', 'pids.current', 'pids.max', 'cgroup.procs'] as const;

// cpuacct.stat counts in USER_HZ ticks, which the kernel fixes at 100 per second for userland.
const nsPerTick = 10_000_000n;
// v1 shows "no limit" as the page counter maximum times the page size (about 2^63).
const unlimitedV1 = 1n << 62n;

/** At most this many PIDs are taken from cgroup.procs (process counting and fd scans stay bounded). */
export const maxProcs = 1024;

export function parseProcs(text: string | undefined, limit = maxProcs): number[] {
  const out: number[] = [];
  if (!text) return out;
  let start = 0;
  while (start < text.length && out.length < limit) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const pid = Number(text.slice(start, end));
    if (Number.isInteger(pid) && pid > 0) out.push(pid);
    start = end + 1;
  }
  return out;
}

function threadsFrom(files: CgroupFiles): CgroupSample['threads'] {
  const current = parseSingleValue(files['pids.current']);
  if (current === undefined) return undefined;
  const max = parseSingleValue(files['pids.max']);
  return max === undefined ? { current } : { current, max };
}

/** A v1 sample from its files (names as in v1Files), or undefined when cpuacct.usage is gone. */
export function sampleFromV1(files: CgroupFiles, timestampNs: bigint): CgroupSample | undefined {
  const usageNs = parseSingleValue(files['cpuacct.usage']);
  if (usageNs === undefined) return undefined;
  const cpu: CpuSample = { usageNs };
  const acct = parseFlatKeyed(files['cpuacct.stat'] ?? '');
  const user = acct.get('user');
  const system = acct.get('system');
  if (user !== undefined) cpu.userNs = user * nsPerTick;
  if (system !== undefined) cpu.systemNs = system * nsPerTick;
  const cfs = parseFlatKeyed(files['cpu.stat'] ?? '');
  if (cfs.has('nr_periods')) {
    cpu.periods = cfs.get('nr_periods');
    cpu.throttledPeriods = cfs.get('nr_throttled') ?? 0n;
    cpu.throttledNs = cfs.get('throttled_time') ?? 0n;
  }
  const sample: CgroupSample = { mode: 'v1', timestampNs, cpu, procs: parseProcs(files['cgroup.procs']) };
  const usageBytes = parseSingleValue(files['memory.usage_in_bytes']);
  const statText = files['memory.stat'];
  if (usageBytes !== undefined && statText !== undefined) {
    const stat = parseFlatKeyed(statText);
    // total_* include the descendants (hierarchical accounting); the plain keys are the cgroup's own.
    const total = (key: string): bigint => stat.get(`total_${key}`) ?? stat.get(key) ?? 0n;
    const own = (key: string): bigint => stat.get(key) ?? 0n;
    const memory: MemorySample = {
      usageBytes,
      workingSetBytes: saturatingSub(usageBytes, total('inactive_file')),
      rssBytes: total('rss'),
      cacheBytes: total('cache'),
      mappedFileBytes: total('mapped_file'),
      pgfault: { container: own('pgfault'), hierarchy: total('pgfault') },
      pgmajfault: { container: own('pgmajfault'), hierarchy: total('pgmajfault') },
    };
    // total_swap is there only with swap accounting (memsw) on.
    const swap = stat.get('total_swap') ?? stat.get('swap');
    if (swap !== undefined) memory.swapBytes = swap;
    const maxUsage = parseSingleValue(files['memory.max_usage_in_bytes']);
    if (maxUsage !== undefined) memory.maxUsageBytes = maxUsage;
    const limit = parseSingleValue(files['memory.limit_in_bytes']);
    if (limit !== undefined && limit < unlimitedV1) memory.limitBytes = limit;
    const failcnt = parseSingleValue(files['memory.failcnt']);
    if (failcnt !== undefined) memory.failcnt = failcnt;
    const oomKill = parseFlatKeyed(files['memory.oom_control'] ?? '').get('oom_kill');
    if (oomKill !== undefined) memory.oomKills = oomKill;
    sample.memory = memory;
  }
  const threads = threadsFrom(files);
  if (threads) sample.threads = threads;
  return sample;
}

/** A v2 sample from its files (names as in v2Files), or undefined when cpu.stat is gone. */
export function sampleFromV2(files: CgroupFiles, timestampNs: bigint): CgroupSample | undefined {
  const stat = parseFlatKeyed(files['cpu.stat'] ?? '');
  const usageUs = stat.get('usage_usec');
  if (usageUs === undefined) return undefined;
  const cpu: CpuSample = { usageNs: usageUs * 1000n };
  const user = stat.get('user_usec');
  const system = stat.get('system_usec');
  if (user !== undefined) cpu.userNs = user * 1000n;
  if (system !== undefined) cpu.systemNs = system * 1000n;
  if (stat.has('nr_periods')) {
    cpu.periods = stat.get('nr_periods');
    cpu.throttledPeriods = stat.get('nr_throttled') ?? 0n;
    cpu.throttledNs = (stat.get('throttled_usec') ?? 0n) * 1000n;
  }
  const sample: CgroupSample = { mode: 'v2', timestampNs, cpu, procs: parseProcs(files['cgroup.procs']) };
  const usageBytes = parseSingleValue(files['memory.current']);
  const memText = files['memory.stat'];
  if (usageBytes !== undefined && memText !== undefined) {
    const mem = parseFlatKeyed(memText);
    const get = (key: string): bigint => mem.get(key) ?? 0n;
    // v2's memory.stat is the subtree's, so both scopes read the same counters.
    const memory: MemorySample = {
      usageBytes,
      workingSetBytes: saturatingSub(usageBytes, get('inactive_file')),
      // v2 has no "rss": anonymous memory is what cAdvisor reports in its place, "file" as cache.
      rssBytes: get('anon'),
      cacheBytes: get('file'),
      mappedFileBytes: get('file_mapped'),
      pgfault: { container: get('pgfault'), hierarchy: get('pgfault') },
      pgmajfault: { container: get('pgmajfault'), hierarchy: get('pgmajfault') },
    };
    const swap = parseSingleValue(files['memory.swap.current']);
    if (swap !== undefined) memory.swapBytes = swap;
    const peak = parseSingleValue(files['memory.peak']);
    if (peak !== undefined) memory.maxUsageBytes = peak;
    const limit = parseSingleValue(files['memory.max']);
    if (limit !== undefined) memory.limitBytes = limit;
    const oomKill = parseFlatKeyed(files['memory.events'] ?? '').get('oom_kill');
    if (oomKill !== undefined) memory.oomKills = oomKill;
    sample.memory = memory;
  }
  const threads = threadsFrom(files);
  if (threads) sample.threads = threads;
  return sample;
}

async function readAll(entries: readonly (readonly [string, string | undefined])[]): Promise<Record<string, string | undefined>> {
  const texts = await Promise.all(entries.map(([, path]) => (path === undefined ? undefined : readCgroupFile(path))));
  const out: Record<string, string | undefined> = {};
  entries.forEach(([name], i) => (out[name] = texts[i]));
  return out;
}

/**
 * One sample of the cgroup at `relPath` (as resolveCgroupPath gives it), or undefined when it
 * does not exist (any more): a container that went away between the listing and the read.
 * Hybrid hosts are read through their v1 hierarchies, where runc accounts containers.
 */
export async function readCgroupSample(relPath: string, opts: { root?: string; now?: () => bigint } = {}): Promise<CgroupSample | undefined> {
  const root = opts.root ?? defaultCgroupRoot;
  const timestampNs = (opts.now ?? nowNs)();
  if (detectCgroupMode(root) === 'v2') {
    const dir = v2CgroupDir(relPath, root);
    return sampleFromV2(await readAll(v2Files.map((f) => [f, join(dir, f)] as const)), timestampNs);
  }
  const entries: (readonly [string, string | undefined])[] = [];
  for (const [controller, names] of Object.entries(v1Files)) {
    const dir = v1CgroupDir(controller, relPath, root);
    for (const name of names) entries.push([name, dir === undefined ? undefined : join(dir, name)]);
  }
  return sampleFromV1(await readAll(entries), timestampNs);
}
