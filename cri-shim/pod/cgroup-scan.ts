import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { defaultCgroupRoot, detectCgroupMode, nowNs, v1CgroupDir } from '../../lib/cgroups.js';
import { saturatingSub, throttlingFrom } from '../../lib/cgroups/files.js';
import { v2CgroupDir } from '../../lib/cgroups/hierarchy.js';
import type { CgroupCpuStats, CgroupMemoryStats, CgroupStats } from '../../lib/cgroups.js';

// Samples of many cgroups in one pass, for the stats RPCs that kubelet calls for every pod and
// container at once (ListContainerStats, ListPodSandboxStats, ListPodSandboxMetrics).
//
// What makes a pass cheap: each cgroup is read once however many answers need it (a pod's
// stats carry its containers' stats, and kubelet asks for container stats and pod stats back to
// back), only the files the caller asks for are opened, and the small files are read with plain
// open/read/close into one reused buffer rather than through the thread pool and a string per
// read step. The directories of each cgroup (one per v1 controller) are worked out once.
//
// A pass hands the event loop back every few cgroups, so other RPCs are not held up behind it.

/** What a sample holds beyond CRI's stats (CPU usage, memory, process count). */
export interface SampleWanted {
  /** pids.current (a pod's process count). */
  pids?: boolean;
  /** CPU user/system split and CFS throttling, pids.max: what metrics report, CRI stats do not. */
  detail?: boolean;
}

export interface CgroupScannerOptions {
  /** Where cgroupfs is mounted (a fake tree in tests). */
  root?: string;
  /**
   * A sample younger than this is reused rather than read again. Short: it only joins reads that
   * are really one look at the node (a pod's stats and its containers', the calls kubelet makes
   * back to back), never two looks a caller makes apart to see a change.
   */
  maxAgeMs?: number;
}

interface Dirs {
  /** v2: the one directory. v1: each controller's (undefined when not mounted). */
  v2?: string;
  cpuacct?: string;
  cpu?: string;
  memory?: string;
  pids?: string;
}

interface Entry {
  dirs: Dirs;
  usedAt: number;
  sample?: CgroupStats;
  sampledAt: number;
  /** What the cached sample was read with. */
  pids: boolean;
  detail: boolean;
  /** The cgroup did not exist at sampledAt. */
  missing: boolean;
}

const cgroupsPerSlice = 32;
/** Directory entries of cgroups not asked about for this long are dropped. */
const forgetAfterMs = 10 * 60_000;

export class CgroupScanner {
  private readonly root: string;
  private readonly maxAgeMs: number;
  private readonly entries = new Map<string, Entry>();
  private lastPrune = Date.now();

  constructor(options: CgroupScannerOptions = {}) {
    this.root = options.root ?? defaultCgroupRoot;
    this.maxAgeMs = options.maxAgeMs ?? 200;
  }

  /**
   * A sample of each cgroup in `relPaths` (as resolveCgroupPath gives them), undefined for one
   * that does not exist. Each cgroup is read at most once per call.
   */
  async sample(relPaths: Iterable<string>, wanted: SampleWanted = {}): Promise<Map<string, CgroupStats | undefined>> {
    const out = new Map<string, CgroupStats | undefined>();
    let read = 0;
    for (const path of relPaths) {
      if (out.has(path)) continue;
      const before = this.reads;
      out.set(path, this.sampleOne(path, wanted));
      if (this.reads !== before && ++read % cgroupsPerSlice === 0) await yieldToLoop();
    }
    this.prune();
    return out;
  }

  /** One cgroup's sample, read now unless a fresh enough one is at hand. */
  sampleOne(relPath: string, wanted: SampleWanted = {}): CgroupStats | undefined {
    const now = Date.now();
    let entry = this.entries.get(relPath);
    if (!entry) {
      entry = { dirs: this.dirsOf(relPath), usedAt: now, sampledAt: 0, pids: false, detail: false, missing: false };
      this.entries.set(relPath, entry);
    }
    entry.usedAt = now;
    const covers = (!wanted.pids || entry.pids) && (!wanted.detail || entry.detail);
    if (now - entry.sampledAt < this.maxAgeMs && covers) return entry.missing ? undefined : entry.sample;
    this.reads += 1;
    const sample = entry.dirs.v2 !== undefined ? readV2(entry.dirs.v2, wanted) : readV1(entry.dirs, wanted);
    entry.sample = sample;
    entry.missing = sample === undefined;
    entry.sampledAt = now;
    entry.pids = wanted.pids === true;
    entry.detail = wanted.detail === true;
    return sample;
  }

  /** Forget a cgroup (its pod or container is gone). */
  forget(relPath: string): void {
    this.entries.delete(relPath);
  }

  /** How many cgroups have been read from cgroupfs (not served from a fresh sample). */
  reads = 0;

  get size(): number {
    return this.entries.size;
  }

  private dirsOf(relPath: string): Dirs {
    // Hybrid hosts are read through their v1 hierarchies, where runc accounts containers.
    if (detectCgroupMode(this.root) === 'v2') return { v2: v2CgroupDir(relPath, this.root) };
    return {
      cpuacct: v1CgroupDir('cpuacct', relPath, this.root),
      cpu: v1CgroupDir('cpu', relPath, this.root),
      memory: v1CgroupDir('memory', relPath, this.root),
      pids: v1CgroupDir('pids', relPath, this.root),
    };
  }

  private prune(): void {
    const now = Date.now();
    if (now - this.lastPrune < forgetAfterMs) return;
    this.lastPrune = now;
    for (const [path, e] of this.entries) if (now - e.usedAt > forgetAfterMs) this.entries.delete(path);
  }
}

// One buffer for every read: cgroup files are small (memory.stat, the largest, is ~1.5 KiB).
let buffer = Buffer.allocUnsafe(16 * 1024);

/** A cgroup file's text, or undefined when it (or its cgroup) is gone. */
export function readSmallFile(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
  try {
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const bigger = Buffer.allocUnsafe(buffer.length * 2);
        buffer.copy(bigger);
        buffer = bigger;
      }
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return buffer.toString('latin1', 0, length);
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  } finally {
    closeSync(fd);
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  // ENODEV: the cgroup was removed while the file was open.
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENODEV';
}

const digits = /^\d+$/;

function singleValue(path: string | undefined): bigint | undefined {
  if (path === undefined) return undefined;
  const text = readSmallFile(path)?.trim();
  return text && digits.test(text) ? BigInt(text) : undefined;
}

/** The values of `keys` in a flat-keyed file ("key value" lines); other lines are skipped unparsed. */
export function flatKeyed(text: string, keys: ReadonlySet<string>): Map<string, bigint> {
  const out = new Map<string, bigint>();
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const space = text.indexOf(' ', start);
    if (space > start && space < end) {
      const key = text.slice(start, space);
      if (keys.has(key)) {
        const value = text.slice(space + 1, end).trim();
        if (digits.test(value)) out.set(key, BigInt(value));
      }
    }
    start = end + 1;
  }
  return out;
}

// v1 counts cpuacct.stat in USER_HZ ticks (100 a second for userland); "no limit" is the page
// counter maximum times the page size, about 2^63.
const nsPerTick = 10_000_000n;
const unlimitedV1 = 1n << 62n;

const v1MemoryKeys = new Set(['inactive_file', 'rss', 'pgfault', 'pgmajfault', 'total_inactive_file', 'total_rss', 'total_pgfault', 'total_pgmajfault']);
const v1CpuacctKeys = new Set(['user', 'system']);
const throttleKeys = (timeKey: string) => new Set(['nr_periods', 'nr_throttled', timeKey]);
const v1ThrottleKeys = throttleKeys('throttled_time');
const v2CpuKeys = new Set(['usage_usec', 'user_usec', 'system_usec', 'nr_periods', 'nr_throttled', 'throttled_usec']);
const v2MemoryKeys = new Set(['inactive_file', 'anon', 'pgfault', 'pgmajfault']);

function readV1(dirs: Dirs, wanted: SampleWanted): CgroupStats | undefined {
  const timestampNs = nowNs();
  if (!dirs.cpuacct) return undefined;
  const usage = singleValue(join(dirs.cpuacct, 'cpuacct.usage'));
  if (usage === undefined) return undefined;
  const cpu: CgroupCpuStats = { usageCoreNanoSeconds: usage };
  if (wanted.detail) {
    const acct = readSmallFile(join(dirs.cpuacct, 'cpuacct.stat'));
    if (acct !== undefined) {
      const stat = flatKeyed(acct, v1CpuacctKeys);
      const user = stat.get('user');
      const system = stat.get('system');
      if (user !== undefined) cpu.userNs = user * nsPerTick;
      if (system !== undefined) cpu.systemNs = system * nsPerTick;
    }
    const cfs = dirs.cpu ? readSmallFile(join(dirs.cpu, 'cpu.stat')) : undefined;
    const throttled = cfs === undefined ? undefined : throttlingFrom(flatKeyed(cfs, v1ThrottleKeys), 'throttled_time', 1n);
    if (throttled) cpu.throttled = throttled;
  }
  const out: CgroupStats = { timestampNs, mode: 'v1', cpu };
  if (dirs.memory) {
    const usageBytes = singleValue(join(dirs.memory, 'memory.usage_in_bytes'));
    const statText = usageBytes === undefined ? undefined : readSmallFile(join(dirs.memory, 'memory.stat'));
    if (usageBytes !== undefined && statText !== undefined) {
      const stat = flatKeyed(statText, v1MemoryKeys);
      // total_* include the descendants (hierarchical accounting), the plain keys are the fallback.
      const pick = (key: string) => stat.get(`total_${key}`) ?? stat.get(key) ?? 0n;
      const workingSetBytes = saturatingSub(usageBytes, pick('inactive_file'));
      const memory: CgroupMemoryStats = { usageBytes, workingSetBytes, rssBytes: pick('rss'), pageFaults: pick('pgfault'), majorPageFaults: pick('pgmajfault') };
      const limit = singleValue(join(dirs.memory, 'memory.limit_in_bytes'));
      if (limit !== undefined && limit < unlimitedV1) {
        memory.limitBytes = limit;
        memory.availableBytes = saturatingSub(limit, workingSetBytes);
      }
      out.memory = memory;
    }
  }
  if ((wanted.pids || wanted.detail) && dirs.pids) readPids(dirs.pids, wanted, out);
  return out;
}

function readV2(dir: string, wanted: SampleWanted): CgroupStats | undefined {
  const timestampNs = nowNs();
  const cpuText = readSmallFile(join(dir, 'cpu.stat'));
  if (cpuText === undefined) return undefined;
  const stat = flatKeyed(cpuText, v2CpuKeys);
  const usage = stat.get('usage_usec');
  if (usage === undefined) return undefined;
  const cpu: CgroupCpuStats = { usageCoreNanoSeconds: usage * 1000n };
  if (wanted.detail) {
    const user = stat.get('user_usec');
    const system = stat.get('system_usec');
    if (user !== undefined) cpu.userNs = user * 1000n;
    if (system !== undefined) cpu.systemNs = system * 1000n;
    const throttled = throttlingFrom(stat, 'throttled_usec', 1000n);
    if (throttled) cpu.throttled = throttled;
  }
  const out: CgroupStats = { timestampNs, mode: 'v2', cpu };
  // memory.* exist only where the memory controller is enabled.
  const usageBytes = singleValue(join(dir, 'memory.current'));
  const statText = usageBytes === undefined ? undefined : readSmallFile(join(dir, 'memory.stat'));
  if (usageBytes !== undefined && statText !== undefined) {
    const m = flatKeyed(statText, v2MemoryKeys);
    const workingSetBytes = saturatingSub(usageBytes, m.get('inactive_file') ?? 0n);
    // v2 has no "rss"; anonymous memory is what containerd and cadvisor report in its place.
    const memory: CgroupMemoryStats = { usageBytes, workingSetBytes, rssBytes: m.get('anon') ?? 0n, pageFaults: m.get('pgfault') ?? 0n, majorPageFaults: m.get('pgmajfault') ?? 0n };
    const limit = singleValue(join(dir, 'memory.max'));
    if (limit !== undefined) {
      memory.limitBytes = limit;
      memory.availableBytes = saturatingSub(limit, workingSetBytes);
    }
    out.memory = memory;
  }
  if (wanted.pids || wanted.detail) readPids(dir, wanted, out);
  return out;
}

function readPids(dir: string, wanted: SampleWanted, out: CgroupStats): void {
  const current = singleValue(join(dir, 'pids.current'));
  if (current === undefined) return;
  out.pids = { current };
  if (wanted.detail) {
    const limit = singleValue(join(dir, 'pids.max'));
    if (limit !== undefined) out.pids.limit = limit;
  }
}
