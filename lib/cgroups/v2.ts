import { join } from 'node:path';
import { parseFlatKeyed, parseSingleValue, readCgroupFile, saturatingSub, throttlingFrom } from './files.js';
import type { CgroupCpuStats, CgroupMemoryStats, CgroupPidsStats } from './types.js';

// cgroup v2: one directory per cgroup. cpu.stat's usage keys exist whether or not the cpu
// controller is enabled; memory.* and pids.* only when their controller is.

export async function readV2Cpu(dir: string): Promise<CgroupCpuStats | undefined> {
  const text = await readCgroupFile(join(dir, 'cpu.stat'));
  if (text === undefined) return undefined;
  const stat = parseFlatKeyed(text);
  const usage = stat.get('usage_usec');
  if (usage === undefined) return undefined;
  const cpu: CgroupCpuStats = { usageCoreNanoSeconds: usage * 1000n };
  const user = stat.get('user_usec');
  const system = stat.get('system_usec');
  if (user !== undefined) cpu.userNs = user * 1000n;
  if (system !== undefined) cpu.systemNs = system * 1000n;
  const throttled = throttlingFrom(stat, 'throttled_usec', 1000n);
  if (throttled) cpu.throttled = throttled;
  return cpu;
}

export async function readV2Memory(dir: string): Promise<CgroupMemoryStats | undefined> {
  const [currentText, maxText, statText] = await Promise.all([
    readCgroupFile(join(dir, 'memory.current')),
    readCgroupFile(join(dir, 'memory.max')),
    readCgroupFile(join(dir, 'memory.stat')),
  ]);
  const usageBytes = parseSingleValue(currentText);
  if (usageBytes === undefined || statText === undefined) return undefined;
  const stat = parseFlatKeyed(statText);
  const workingSetBytes = saturatingSub(usageBytes, stat.get('inactive_file') ?? 0n);
  const memory: CgroupMemoryStats = {
    usageBytes,
    workingSetBytes,
    // v2 has no "rss"; anonymous memory is what containerd and cadvisor report in its place.
    rssBytes: stat.get('anon') ?? 0n,
    pageFaults: stat.get('pgfault') ?? 0n,
    majorPageFaults: stat.get('pgmajfault') ?? 0n,
  };
  const limit = parseSingleValue(maxText);
  if (limit !== undefined) {
    memory.limitBytes = limit;
    memory.availableBytes = saturatingSub(limit, workingSetBytes);
  }
  return memory;
}

export async function readV2Pids(dir: string): Promise<CgroupPidsStats | undefined> {
  const current = parseSingleValue(await readCgroupFile(join(dir, 'pids.current')));
  if (current === undefined) return undefined;
  const pids: CgroupPidsStats = { current };
  const limit = parseSingleValue(await readCgroupFile(join(dir, 'pids.max')));
  if (limit !== undefined) pids.limit = limit;
  return pids;
}
