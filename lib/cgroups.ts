import { detectCgroupMode, defaultCgroupRoot, v2CgroupDir } from './cgroups/hierarchy.js';
import type { CgroupStats, ReadCgroupOptions } from './cgroups/types.js';
import { readV1Cpu, readV1Memory, readV1Pids } from './cgroups/v1.js';
import { readV2Cpu, readV2Memory, readV2Pids } from './cgroups/v2.js';

// Resource usage of a container or pod from its cgroup, for CRI ContainerStats and
// PodSandboxStats. Layout details live in lib/cgroups/; this module picks the layout and
// assembles one sample.

export { CpuRateTracker } from './cgroups/cpu-rate.js';
export {
  defaultCgroupRoot,
  detectCgroupMode,
  expandSlice,
  parseMountInfo,
  resolveCgroupPath,
  v1CgroupDir,
  v1Hierarchies,
  type V1Hierarchy,
} from './cgroups/hierarchy.js';
export type * from './cgroups/types.js';

// Wall-clock nanoseconds: Date.now() only has millisecond resolution, too coarse for rates over
// close samples, so the monotonic clock supplies the digits below it.
const wallAtStartNs = BigInt(Date.now()) * 1_000_000n;
const monotonicAtStart = process.hrtime.bigint();

export function nowNs(): bigint {
  return wallAtStartNs + (process.hrtime.bigint() - monotonicAtStart);
}

/**
 * One sample of the cgroup at `relPath` (as resolveCgroupPath gives it), or undefined when the
 * cgroup does not exist (any more). Hybrid hosts are read through their v1 hierarchies, where
 * runc accounts containers.
 */
export async function readCgroupStats(relPath: string, opts: ReadCgroupOptions = {}): Promise<CgroupStats | undefined> {
  const root = opts.root ?? defaultCgroupRoot;
  const timestampNs = nowNs();
  if (detectCgroupMode(root) === 'v2') {
    const dir = v2CgroupDir(relPath, root);
    const [cpu, memory, pids] = await Promise.all([readV2Cpu(dir), readV2Memory(dir), readV2Pids(dir)]);
    if (!cpu) return undefined;
    return { timestampNs, mode: 'v2', cpu, ...(memory ? { memory } : {}), ...(pids ? { pids } : {}) };
  }
  const [cpu, memory, pids] = await Promise.all([readV1Cpu(relPath, root), readV1Memory(relPath, root), readV1Pids(relPath, root)]);
  if (!cpu) return undefined;
  return { timestampNs, mode: 'v1', cpu, ...(memory ? { memory } : {}), ...(pids ? { pids } : {}) };
}
