import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, realpathSync, renameSync, rmdirSync, rmSync, unlinkSync, statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '../lib/errors.js';
import { run } from '../lib/exec.js';
import { getProjectQuota, projectQuotaSupport, setProjectId, setProjectQuota, syncFilesystem } from '../lib/quota.js';
import type { FsType, VolumeRecord, VolumeType } from './store/records.js';

// The bytes behind volumes and snapshots, under the root:
//   volumes/<id>        directory volume (a project quota caps it where the root allows)
//   volumes/<id>.img    filesystem volume (sparse file holding ext4/xfs) or block volume
//   snapshots/<id>[.img] the same shapes, frozen copies
// Nothing here touches the state journal; callers record what they made.

const mib = 1 << 20;

/** Smallest volume of each kind: mkfs.xfs refuses filesystems under 300 MiB. */
export function minimumSize(type: VolumeType, fsType?: FsType): number {
  if (type === 'filesystem') return fsType === 'xfs' ? 300 * mib : 16 * mib;
  return mib;
}

export interface QuotaFs {
  device: string;
  mountPoint: string;
  fstype: string;
}

export class Storage {
  readonly volumesDir: string;
  readonly snapshotsDir: string;
  /** The filesystem of volumes/ when it enforces project quotas. */
  readonly quotaFs: QuotaFs | undefined;

  readonly root: string;

  constructor(root: string) {
    mkdirSync(root, { recursive: true, mode: 0o711 });
    // The kernel reports loop backing files by their real path; compare like with like.
    this.root = realpathSync(root);
    this.volumesDir = join(root, 'volumes');
    this.snapshotsDir = join(root, 'snapshots');
    mkdirSync(this.volumesDir, { recursive: true, mode: 0o711 });
    mkdirSync(this.snapshotsDir, { recursive: true, mode: 0o700 });
    this.quotaFs = projectQuotaSupport(this.volumesDir);
  }

  volumePath(rec: Pick<VolumeRecord, 'id' | 'type' | 'staticPath'>): string {
    if (rec.type === 'static') return rec.staticPath!;
    return join(this.volumesDir, rec.type === 'directory' ? rec.id : `${rec.id}.img`);
  }

  snapshotPath(id: string, sourceType: VolumeType): string {
    return join(this.snapshotsDir, sourceType === 'directory' ? id : `${id}.img`);
  }

  /** Bytes free for new volumes on the root's filesystem. */
  freeBytes(): number {
    const s = statfsSync(this.root);
    return s.bavail * s.bsize;
  }

  /** Bytes a volume holds on disk now (sparse files and quota-capped directories grow into their size). */
  allocatedBytes(rec: VolumeRecord): number {
    const path = this.volumePath(rec);
    try {
      if (rec.type === 'directory') {
        return rec.projectId !== undefined && this.quotaFs ? getProjectQuota(this.quotaFs.device, rec.projectId).spaceBytes : 0;
      }
      return statSync(path).blocks * 512;
    } catch {
      return 0;
    }
  }

  /** Make an empty volume of `rec.capacityBytes`: a directory, or a sparse file (formatted for filesystem volumes). */
  async createEmpty(rec: VolumeRecord): Promise<void> {
    const path = this.volumePath(rec);
    if (rec.type === 'directory') {
      mkdirSync(path, { mode: 0o777 });
      this.applyQuota(rec);
      return;
    }
    this.makeSparseFile(path, rec.capacityBytes);
    if (rec.type === 'filesystem') await this.format(path, rec.fsType ?? 'ext4');
  }

  /** Make a volume as a copy of `sourcePath` (a snapshot or another volume of the same type). */
  async createFrom(rec: VolumeRecord, sourcePath: string): Promise<'reflink' | 'copy'> {
    const path = this.volumePath(rec);
    const how = await copyTree(sourcePath, path, rec.type === 'directory');
    if (rec.type === 'directory') this.applyQuota(rec);
    else this.growFile(path, rec.capacityBytes);
    return how;
  }

  /** Copy a volume into a snapshot. */
  async snapshot(rec: VolumeRecord, snapshotId: string): Promise<'reflink' | 'copy'> {
    return copyTree(this.volumePath(rec), this.snapshotPath(snapshotId, rec.type), rec.type === 'directory');
  }

  removeVolume(rec: VolumeRecord): void {
    if (rec.type === 'static') return;
    removeTree(this.volumePath(rec));
  }

  removeSnapshot(id: string, sourceType: VolumeType): void {
    rmSync(this.snapshotPath(id, sourceType), { recursive: true, force: true });
  }

  /** Grow the bytes behind a volume (the filesystem inside is grown on the node). */
  grow(rec: VolumeRecord, bytes: number): void {
    if (rec.type === 'directory') this.applyQuota({ ...rec, capacityBytes: bytes });
    else if (rec.type !== 'static') this.growFile(this.volumePath(rec), bytes);
  }

  /** A project ID not used by any of `records`, from the configured range. */
  pickProjectId(records: VolumeRecord[], min: number, max: number): number {
    const used = new Set(records.map((r) => r.projectId).filter((id) => id !== undefined));
    for (let id = min; id <= max; id++) if (!used.has(id)) return id;
    throw new BerthError('resource-exhausted', `no free project ID left in ${min}-${max} for a directory quota`);
  }

  /** Names under volumes/ and snapshots/, for recovery to remove what no record owns. */
  listBacking(): { volumes: string[]; snapshots: string[] } {
    const ids = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).map((n) => n.replace(/\.img$/, '')) : []);
    return { volumes: ids(this.volumesDir), snapshots: ids(this.snapshotsDir) };
  }

  private applyQuota(rec: VolumeRecord): void {
    if (rec.projectId === undefined || !this.quotaFs) return;
    const path = this.volumePath(rec);
    setProjectId(path, rec.projectId);
    setProjectQuota(this.quotaFs.device, rec.projectId, { bytes: rec.capacityBytes, inodes: 0 });
  }

  private makeSparseFile(path: string, bytes: number): void {
    const fd = openSync(path, 'wx', 0o600);
    try {
      ftruncateSync(fd, bytes);
    } finally {
      closeSync(fd);
    }
  }

  private growFile(path: string, bytes: number): void {
    const fd = openSync(path, 'r+');
    try {
      // Only ever grow: a shrink would cut off the filesystem's tail.
      const { size } = statSync(path);
      if (bytes > size) ftruncateSync(fd, bytes);
    } finally {
      closeSync(fd);
    }
  }

  private async format(path: string, fsType: FsType): Promise<void> {
    // No reserved blocks and no discard pass: the file is sparse already, and the user asked
    // for every byte of its size.
    if (fsType === 'xfs') await run('mkfs.xfs', ['-q', '-f', '-K', path]);
    // -T default: mke2fs's "small" profile (1 KiB blocks, many inodes) would leave a 64 MiB
    // volume 83% usable instead of 90%.
    else await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-T', 'default', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', path]);
  }
}

/**
 * Flush what the kernel still holds for a staged volume (the mounted filesystem's dirty pages,
 * or a block volume's loop device cache), so a copy of its backing bytes holds it.
 */
export function flushStaged(rec: VolumeRecord): void {
  if (rec.staging?.phase !== 'done' || rec.type === 'static') return;
  if (!rec.staging.block) syncFilesystem(rec.staging.path);
  else if (rec.staging.device) {
    const fd = openSync(rec.staging.device, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * Remove a file or directory tree. An empty directory or a single file goes with one syscall;
 * rmSync's recursive walk (lstat, readdir, then the removal) costs about a millisecond more,
 * which is a tenth of a directory volume's whole create-to-delete cycle.
 */
function removeTree(path: string): void {
  try {
    rmdirSync(path);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') {
      try {
        unlinkSync(path);
        return;
      } catch { /* fall through to the general case */ }
    }
  }
  rmSync(path, { recursive: true, force: true });
}

/**
 * Copy a file or directory tree, sharing blocks (reflink) where the filesystem can and
 * keeping holes otherwise. The copy lands under a temporary name and is renamed into place,
 * so a crash never leaves a half copy under the final name.
 */
async function copyTree(source: string, target: string, isDirectory: boolean): Promise<'reflink' | 'copy'> {
  if (!existsSync(source)) throw new BerthError('failed-precondition', `the source ${source} is gone; cannot copy it`);
  const tmp = `${target}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  // cp refuses --reflink=always with any --sparse but auto; a reflink keeps holes anyway.
  const args = (reflink: string): string[] =>
    isDirectory ? ['-a', `--reflink=${reflink}`, '--no-target-directory', source, tmp] : [`--reflink=${reflink}`, `--sparse=${reflink === 'always' ? 'auto' : 'always'}`, source, tmp];
  let how: 'reflink' | 'copy' = 'reflink';
  const shared = await run('cp', args('always'), { allowFailure: true });
  if (shared.code !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    how = 'copy';
    await run('cp', args('never'));
  }
  renameSync(tmp, target);
  return how;
}
