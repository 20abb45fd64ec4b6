import { readFile } from 'node:fs/promises';
import type { CpuThrottling } from './types.js';

// Reading cgroupfs interface files. A cgroup can vanish between two reads (the container exited
// and runc removed it), so a missing file is a value, not an error.

/** The file's text, or undefined when it (or its cgroup) does not exist. */
export async function readCgroupFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENODEV: the cgroup was removed while the file was open.
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENODEV') return undefined;
    throw err;
  }
}

/** "key value" lines (memory.stat, cpu.stat, cpuacct.stat) into a map of counters. */
export function parseFlatKeyed(text: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const [key, value, extra] = line.trim().split(/\s+/);
    if (!key || value === undefined || extra !== undefined || !/^\d+$/.test(value)) continue;
    out.set(key, BigInt(value));
  }
  return out;
}

/** A single-number file; "max" (v2's unlimited) is undefined, as is anything unparseable. */
export function parseSingleValue(text: string | undefined): bigint | undefined {
  const value = text?.trim();
  if (!value || !/^\d+$/.test(value)) return undefined;
  return BigInt(value);
}

export function saturatingSub(a: bigint, b: bigint): bigint {
  return a > b ? a - b : 0n;
}

/** CFS throttling from a cpu.stat map; the time key and its unit differ between v1 and v2. */
export function throttlingFrom(stat: Map<string, bigint>, timeKey: string, nsPerUnit: bigint): CpuThrottling | undefined {
  const periods = stat.get('nr_periods');
  const throttledPeriods = stat.get('nr_throttled');
  const time = stat.get(timeKey);
  if (periods === undefined || throttledPeriods === undefined || time === undefined) return undefined;
  return { periods, throttledPeriods, throttledTimeNs: time * nsPerUnit };
}
