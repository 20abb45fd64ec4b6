import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { parseMountInfo, type MountInfo } from './mount.js';
import { nativeAddon } from './native.js';

// Project quotas cap a directory-backed CSI volume: the volume's directory gets a project id
// (inherited by everything created below it) and the filesystem enforces the project's limits.
// That needs XFS or ext4 (made with -O quota,project) mounted with -o prjquota, and a kernel
// with quota support for it (CONFIG_XFS_QUOTA; CONFIG_QUOTA and CONFIG_QFMT_V2 for ext4).
// ext4 lets processes with CAP_SYS_RESOURCE past the hard limits; XFS enforces them on everyone.

/** A project's limits; 0 means no limit. */
export interface ProjectQuotaLimits {
  bytes: number;
  inodes: number;
}

/** A project's usage and hard limits (0 = no limit). */
export interface ProjectQuota {
  spaceBytes: number;
  inodes: number;
  blockHardLimitBytes: number;
  inodeHardLimit: number;
}

/** A mounted filesystem that accounts and enforces project quotas. */
export interface QuotaFilesystem {
  /** The block device quotactl(2) takes (the mount source). */
  device: string;
  mountPoint: string;
  fstype: string;
}

/** Give `dir` (a volume's fresh, empty directory) project id `projectId`, inherited by all created below it. */
export function setProjectId(dir: string, projectId: number): void {
  nativeAddon('setProjectId').setProjectId(dir, projectId);
}

/** The project id of a file or directory. */
export function getProjectId(path: string): number {
  return nativeAddon('getProjectId').getProjectId(path);
}

/** Set a project's hard limits on the filesystem of block device `device`. */
export function setProjectQuota(device: string, projectId: number, limits: ProjectQuotaLimits): void {
  nativeAddon('quotaSetProject').quotaSetProject(device, projectId, limits.bytes, limits.inodes);
}

/** A project's usage and limits on the filesystem of block device `device`. */
export function getProjectQuota(device: string, projectId: number): ProjectQuota {
  try {
    return nativeAddon('quotaGetProject').quotaGetProject(device, projectId);
  } catch (err) {
    // XFS answers ENOENT for a project it keeps no record of (no usage, no limits), as for a
    // device that does not exist; ext4 answers zeros.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !existsSync(device)) throw err;
    return { spaceBytes: 0, inodes: 0, blockHardLimitBytes: 0, inodeHardLimit: 0 };
  }
}

/** Flush the filesystem holding `path` to disk, e.g. before a snapshot copies a volume. */
export function syncFilesystem(path: string): void {
  nativeAddon('syncfs').syncfs(path);
}

/** The filesystem holding `dir` when it enforces project quotas; undefined when it does not. */
export function projectQuotaSupport(dir: string): QuotaFilesystem | undefined {
  return quotaFilesystemOf(realpathSync(dir), readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** The filesystem holding the resolved `path` per `mountinfo` text, when it enforces project quotas. */
export function quotaFilesystemOf(path: string, mountinfo: string): QuotaFilesystem | undefined {
  const mount = mountHolding(path, parseMountInfo(mountinfo));
  if (!mount || !enforcesProjectQuota(mount)) return undefined;
  return { device: mount.source, mountPoint: mount.mountPoint, fstype: mount.fstype };
}

/** The mount `path` lies on: the longest mount point prefix, the later of mounts stacked on one point. */
function mountHolding(path: string, mounts: MountInfo[]): MountInfo | undefined {
  let best: MountInfo | undefined;
  for (const mount of mounts) {
    if (!isUnder(path, mount.mountPoint)) continue;
    if (!best || mount.mountPoint.length >= best.mountPoint.length) best = mount;
  }
  return best;
}

function isUnder(path: string, mountPoint: string): boolean {
  return mountPoint === '/' || path === mountPoint || path.startsWith(`${mountPoint}/`);
}

/**
 * Accounting and enforcement both on. XFS shows 'prjquota' for that ('pqnoenforce' when it only
 * accounts; 'pquota' is the alias mount(8) accepts); ext4 shows 'prjquota' when mounted with it.
 */
function enforcesProjectQuota(mount: MountInfo): boolean {
  const options = new Set(mount.superOptions);
  if (mount.fstype === 'xfs') return options.has('prjquota') || options.has('pquota');
  if (mount.fstype === 'ext4') return options.has('prjquota');
  return false;
}
