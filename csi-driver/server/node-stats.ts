import { existsSync, statfsSync } from 'node:fs';
import { BerthError } from '../../lib/errors.js';
import { blockDeviceSize } from '../../lib/loop.js';
import { isMountPoint } from '../../lib/mount.js';
import { getProjectQuota } from '../../lib/quota.js';
import { VolumeUsage_Unit as Unit, type NodeGetVolumeStatsRequest, type NodeGetVolumeStatsResponse, type VolumeCondition, type VolumeUsage } from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import { walkUsage, type DirectoryUsage } from '../node/usage-walk.js';
import type { VolumeRecord } from '../store/records.js';
import { requireId, requireString } from '../validate.js';

// NodeGetVolumeStats: bytes and inodes as the volume sees them (its own filesystem, or its
// quota for a directory volume), and its condition: abnormal when the bytes behind it or the
// mount at the asked path are gone. An unenforced directory volume has no quota to ask, so its
// tree is walked within bounds (node/usage-walk.ts); a walk cut short still answers, with what
// it counted as used (a lower bound) and an abnormal condition saying which bound it hit: CSI
// has no "unknown" usage, and the condition's message is where a CO shows the reason.

function usageOf(total: number, used: number, available: number, unit: Unit): VolumeUsage {
  return { total: BigInt(Math.max(0, total)), used: BigInt(Math.max(0, used)), available: BigInt(Math.max(0, available)), unit };
}

/** Condition of a volume at a path the CO asks about. */
export function nodeCondition(driver: Driver, rec: VolumeRecord, path: string, block: boolean): VolumeCondition {
  const backing = driver.storage.volumePath(rec);
  if (!existsSync(backing)) return { abnormal: true, message: `the ${rec.type === 'static' ? 'source' : 'backing'} ${backing} of volume ${rec.id} is gone` };
  if (!block && !isMountPoint(path)) return { abnormal: true, message: `volume ${rec.id} is no longer mounted at ${path}` };
  return { abnormal: false, message: 'volume is healthy' };
}

export async function nodeGetVolumeStats(driver: Driver, req: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  const path = requireString(req.volumePath, 'volume_path');
  const rec = driver.volume(id);
  if (!rec) throw new BerthError('not-found', `volume_id: volume "${id}" does not exist`);
  const known = rec.publications[path] ?? (rec.staging?.path === path ? rec.staging : undefined);
  if (!known || !existsSync(path)) throw new BerthError('not-found', `volume_path: volume "${id}" is not published or staged at ${path}`);
  const block = known.block;
  const condition = nodeCondition(driver, rec, path, block);
  if (condition.abnormal) return { usage: [usageOf(rec.capacityBytes, 0, 0, Unit.BYTES)], volumeCondition: condition };

  if (block) {
    const device = rec.staging?.device ?? rec.staticPath;
    const size = device ? blockDeviceSize(device) : rec.capacityBytes;
    return { usage: [usageOf(size, 0, 0, Unit.BYTES)], volumeCondition: condition };
  }
  const fs = statfsSync(path);
  const inodes = usageOf(fs.files, fs.files - fs.ffree, fs.ffree, Unit.INODES);
  if (rec.type !== 'directory') {
    const bytes = usageOf(fs.blocks * fs.bsize, (fs.blocks - fs.bfree) * fs.bsize, fs.bavail * fs.bsize, Unit.BYTES);
    return { usage: [bytes, inodes], volumeCondition: condition };
  }
  // A directory shares its filesystem with everything else on the root: report against the
  // volume's own size, with usage from its project quota (cheap) or a walk (unenforced).
  const quotaFs = driver.storage.quotaFs;
  const c = driver.config;
  const used: DirectoryUsage = rec.projectId !== undefined && quotaFs
    ? (({ spaceBytes, inodes: n }) => ({ bytes: spaceBytes, inodes: n }))(getProjectQuota(quotaFs.device, rec.projectId))
    : await walkUsage(driver.storage.volumePath(rec), { maxEntries: c.statsWalkMaxEntries, maxDepth: c.statsWalkMaxDepth, timeoutMs: c.statsWalkTimeoutMs });
  const available = Math.min(rec.capacityBytes - used.bytes, fs.bavail * fs.bsize);
  return {
    usage: [usageOf(rec.capacityBytes, used.bytes, available, Unit.BYTES), usageOf(fs.files, used.inodes, fs.ffree, Unit.INODES)],
    volumeCondition: used.incomplete ? { abnormal: true, message: `usage is a lower bound: ${used.incomplete}` } : condition,
  };
}
