import { existsSync } from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import type { NodeStageVolumeRequest, NodeStageVolumeResponse, NodeUnstageVolumeRequest, NodeUnstageVolumeResponse } from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import { coPath, isBlockDevice, stageVolume, stagingIntact, unstageVolume } from '../node/mounts.js';
import type { VolumeRecord } from '../store/records.js';
import { crashPoint } from '../faults.js';
import { checkHostPath, invalid, parseCapability, requireId, type Capability } from '../validate.js';

// NodeStageVolume / NodeUnstageVolume: the once-per-node step. filesystem volumes get their
// loop device and mount here, directory volumes a bind mount, block volumes a loop device;
// static local PVs (a disk or directory named in the volume context) are recorded on first
// stage and forgotten at unstage.

/** A static local PV from its volume context, or undefined when the context names none. */
function staticVolume(driver: Driver, id: string, context: Record<string, string>): VolumeRecord | undefined {
  if (context.type !== 'static') return undefined;
  const path = context.path;
  if (!path) throw invalid('volume_context.path', 'is required for a static volume (the disk, partition or directory to publish)');
  if (!isAbsolute(path) || normalize(path) !== path) throw invalid('volume_context.path', `"${path}" must be an absolute, normalized path`);
  const allowed = driver.config.staticPathPrefixes.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`));
  if (!allowed) throw invalid('volume_context.path', `"${path}" is outside the configured staticPathPrefixes (${driver.config.staticPathPrefixes.join(', ')})`);
  if (!existsSync(path)) throw new BerthError('not-found', `volume_context.path: ${path} does not exist on node ${driver.config.nodeId}`);
  const fsType = context.fsType;
  if (fsType !== undefined && fsType !== 'ext4' && fsType !== 'xfs') throw invalid('volume_context.fsType', `"${fsType}" is not supported (ext4, xfs)`);
  return {
    id,
    name: '',
    type: 'static',
    fsType,
    capacityBytes: 0,
    parameters: {},
    sizeEnforced: false,
    staticPath: path,
    createdAt: new Date().toISOString(),
    publications: {},
  };
}

/** The capability must match what the volume is: a block volume is never mounted, a filesystem never raw. */
export function checkAccessType(rec: VolumeRecord, cap: Capability): void {
  if (rec.type === 'block' && !cap.block) throw invalid('volume_capability', `volume ${rec.id} is a block volume; ask for the block access type`);
  if ((rec.type === 'filesystem' || rec.type === 'directory') && cap.block) throw invalid('volume_capability', `volume ${rec.id} is a ${rec.type} volume; it cannot be used as a raw block device`);
  if (rec.type === 'static' && cap.block && rec.staticPath && existsSync(rec.staticPath) && !isBlockDevice(rec.staticPath)) {
    throw invalid('volume_capability', `static volume ${rec.id} is the directory ${rec.staticPath}; it cannot be used as a raw block device`);
  }
}

export async function nodeStageVolume(driver: Driver, req: NodeStageVolumeRequest): Promise<NodeStageVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  const path = checkHostPath(req.stagingTargetPath, 'staging_target_path');
  const cap = parseCapability(req.volumeCapability, 'volume_capability');
  return driver.exclusive([id], async () => {
    const known = driver.volume(id);
    const rec = known ?? staticVolume(driver, id, req.volumeContext);
    if (!rec) throw new BerthError('not-found', `volume_id: volume "${id}" does not exist`);
    if (rec.ephemeral) throw new BerthError('failed-precondition', `volume_id: "${id}" is an ephemeral inline volume; it is only published`);
    checkAccessType(rec, cap);
    // Not refused: a provisioner's --default-fstype can disagree with the StorageClass's own
    // fsType parameter, and the volume's filesystem is what it is.
    if (cap.fsType && rec.fsType && cap.fsType !== rec.fsType) {
      driver.log.warn({ volume: id, asked: cap.fsType, actual: rec.fsType }, 'volume_capability.mount.fs_type differs from the volume\'s filesystem; mounting it as what it is');
    }
    if (rec.staging) {
      if (rec.staging.path !== path) {
        throw new BerthError('failed-precondition', `volume_id: volume "${id}" is already staged at ${rec.staging.path}`);
      }
      if (stagingIntact(driver, rec)) {
        if (rec.staging.block !== cap.block || rec.staging.mountFlags.join(',') !== cap.mountFlags.join(',')) {
          throw new BerthError('already-exists', `volume_id: volume "${id}" is staged at ${path} with another access type or other mount flags`);
        }
        return {};
      }
    }
    // Record the intent before touching the kernel: a crash from here on is undone at start.
    rec.staging = { path, phase: 'pending', block: cap.block, mountFlags: cap.mountFlags, mountGroup: cap.mountGroup || undefined };
    driver.saveVolume(rec, false);
    crashPoint('stage:after-intent');
    try {
      rec.staging.device = await stageVolume(driver, rec, coPath(path, 'staging_target_path'), cap.block, cap.mountFlags, cap.mountGroup);
      crashPoint('stage:after-mount');
    } catch (err) {
      try {
        unstageVolume(rec, path, rec.staging.device, cap.block);
      } catch (undoErr) {
        driver.log.warn({ volume: id, err: (undoErr as Error).message }, 'could not undo a failed stage');
      }
      delete rec.staging;
      if (known) driver.saveVolume(rec, false);
      else driver.forgetVolume(id, false);
      throw err;
    }
    rec.staging.phase = 'done';
    driver.saveVolume(rec, false);
    driver.log.info({ volume: id, path, device: rec.staging.device, block: cap.block }, 'volume staged');
    return {};
  });
}

export async function nodeUnstageVolume(driver: Driver, req: NodeUnstageVolumeRequest): Promise<NodeUnstageVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  const path = checkHostPath(req.stagingTargetPath, 'staging_target_path');
  return driver.exclusive([id], () => {
    const rec = driver.volume(id);
    if (!rec) throw new BerthError('not-found', `volume_id: volume "${id}" does not exist`);
    // Not staged (or staged elsewhere): nothing to undo here.
    if (!rec.staging || rec.staging.path !== path) return {};
    const targets = Object.keys(rec.publications);
    if (targets.length) throw new BerthError('failed-precondition', `volume_id: volume "${id}" is still published at ${targets.join(', ')}; unpublish it first`);
    unstageVolume(rec, path, rec.staging.device, rec.staging.block);
    delete rec.staging;
    if (rec.type === 'static') driver.forgetVolume(id, false);
    else driver.saveVolume(rec, false);
    driver.log.info({ volume: id, path }, 'volume unstaged');
    return {};
  });
}
