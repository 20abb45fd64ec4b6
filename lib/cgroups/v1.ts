import { join } from 'node:path';
import { parseFlatKeyed, parseSingleValue, readCgroupFile, saturatingSub, throttlingFrom } from './files.js';
import { v1CgroupDir } from './hierarchy.js';
import type { CgroupCpuStats, CgroupMemoryStats, CgroupPidsStats } from './types.js';

// cgroup v1: each controller in its own hierarchy, each read from its own directory.

// cpuacct.stat counts in USER_HZ ticks, which the kernel fixes at 100 per second for userland.
const nsPerTick = 10_000_000n;

// v1 shows "no limit" as the page counter maximum times the page size (about 2^63); anything
// this large is not a limit anyone set.
const unlimitedV1 = 1n << 62n;

export async function readV1Cpu(relPath: string, root: string): Promise<CgroupCpuStats | undefined> {
  const acct = v1CgroupDir('cpuacct', relPath, root);
  if (!acct) return undefined;
  const usage = parseSingleValue(await readCgroupFile(join(acct, 'cpuacct.usage')));
  if (usage === undefined) return undefined;
  const cpu: CgroupCpuStats = { usageCoreNanoSeconds: usage };
  const statText = await readCgroupFile(join(acct, 'cpuacct.stat'));
  if (statText !== undefined) {
    const stat = parseFlatKeyed(statText);
    const user = stat.get('user');
    const system = stat.get('system');
    if (user !== undefined) cpu.userNs = user * nsPerTick;
    if (system !== undefined) cpu.systemNs = system * nsPerTick;
  }
  // Throttling is the cpu controller's, which may be mounted apart from cpuacct.
  const cpuDir = v1CgroupDir('cpu', relPath, root);
  const cfsText = cpuDir ? await readCgroupFile(join(cpuDir, 'cpu.stat')) : undefined;
  const throttled = cfsText === undefined ? undefined : throttlingFrom(parseFlatKeyed(cfsText), 'throttled_time', 1n);
  if (throttled) cpu.throttled = throttled;
  return cpu;
}

export async function readV1Memory(relPath: string, root: string): Promise<CgroupMemoryStats | undefined> {
  const dir = v1CgroupDir('memory', relPath, root);
  if (!dir) return undefined;
  const [usageText, limitText, statText] = await Promise.all([
    readCgroupFile(join(dir, 'memory.usage_in_bytes')),
    readCgroupFile(join(dir, 'memory.limit_in_bytes')),
    readCgroupFile(join(dir, 'memory.stat')),
  ]);
  const usageBytes = parseSingleValue(usageText);
  if (usageBytes === undefined || statText === undefined) return undefined;
  const stat = parseFlatKeyed(statText);
  // total_* include the cgroup's descendants (hierarchical accounting); the plain keys are the
  // fallback for kernels or fakes without them.
  const pick = (key: string) => stat.get(`total_${key}`) ?? stat.get(key) ?? 0n;
  const workingSetBytes = saturatingSub(usageBytes, pick('inactive_file'));
  const memory: CgroupMemoryStats = {
    usageBytes,
    workingSetBytes,
    rssBytes: pick('rss'),
    pageFaults: pick('pgfault'),
    majorPageFaults: pick('pgmajfault'),
  };
  const limit = parseSingleValue(limitText);
  if (limit !== undefined && limit < unlimitedV1) {
    memory.limitBytes = limit;
    memory.availableBytes = saturatingSub(limit, workingSetBytes);
  }
  return memory;
}

export async function readV1Pids(relPath: string, root: string): Promise<CgroupPidsStats | undefined> {
  const dir = v1CgroupDir('pids', relPath, root);
  if (!dir) return undefined;
  const current = parseSingleValue(await readCgroupFile(join(dir, 'pids.current')));
  if (current === undefined) return undefined;
  const pids: CgroupPidsStats = { current };
  const limit = parseSingleValue(await readCgroupFile(join(dir, 'pids.max')));
  if (limit !== undefined) pids.limit = limit;
  return pids;
}
