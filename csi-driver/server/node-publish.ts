import { join } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import { detachLoop } from '../../lib/loop.js';
import { isMountPoint } from '../../lib/mount.js';
import { VolumeCapability_AccessMode_Mode as Mode, type NodePublishVolumeRequest, type NodePublishVolumeResponse, type NodeUnpublishVolumeRequest, type NodeUnpublishVolumeResponse } from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import { coPath, type MountPath, publishVolume, removeTarget, stageVolume, unmountTarget, unstageVolume } from '../node/mounts.js';
import type { VolumeRecord } from '../store/records.js';
import { crashPoint } from '../faults.js';
import { checkHostPath, invalid, parseCapability, parseQuantity, requireId, type Capability } from '../validate.js';
import { checkAccessType } from './node-stage.js';
import { planVolume } from './volume-create.js';

// NodePublishVolume / NodeUnpublishVolume: a bind mount of the staged volume (or of its loop
// device, for block) at the pod's target path. Ephemeral inline volumes are born at their
// publish and die at their unpublish, staged internally under <root>/ephemeral/.

const ephemeralKey = 'csi.storage.k8s.io/ephemeral';

/** Create, and stage internally, the volume behind an inline ephemeral volume. */
async function createEphemeral(driver: Driver, id: string, cap: Capability, context: Record<string, string>): Promise<VolumeRecord> {
  const parameters: Record<string, string> = { type: context.type ?? driver.config.ephemeralDefaultType };
  if (context.fsType) parameters.fsType = context.fsType;
  if (context.sizeEnforcement) parameters.sizeEnforcement = context.sizeEnforcement;
  for (const key of Object.keys(context)) {
    if (!['type', 'fsType', 'size', 'sizeEnforcement'].includes(key) && !key.startsWith('csi.storage.k8s.io/')) {
      throw invalid(`volume_context.${key}`, 'unknown volume attribute (ephemeral volumes take type, fsType, size, sizeEnforcement)');
    }
  }
  const plan = planVolume(driver.config, parameters, [cap], driver.storage.quotaFs);
  const size = context.size ? parseQuantity(context.size, 'volume_context.size') : driver.config.ephemeralDefaultSizeBytes;
  if (size > driver.maxVolumeBytes()) throw new BerthError('resource-exhausted', `volume_context.size: ${size} bytes do not fit under ${driver.config.root}`);
  const rec: VolumeRecord = {
    id,
    name: '',
    type: plan.type,
    fsType: plan.fsType,
    capacityBytes: Math.ceil(size / (1 << 20)) * (1 << 20),
    parameters,
    sizeEnforced: plan.sizeEnforced,
    fsBytes: plan.type === 'filesystem' ? Math.ceil(size / (1 << 20)) * (1 << 20) : undefined,
    ephemeral: true,
    createdAt: new Date().toISOString(),
    publications: {},
  };
  if (plan.type === 'directory' && plan.sizeEnforced) rec.projectId = driver.storage.pickProjectId(driver.volumes(), driver.config.projectIdMin, driver.config.projectIdMax);
  try {
    await driver.storage.createEmpty(rec);
  } catch (err) {
    driver.storage.removeVolume(rec);
    throw err;
  }
  driver.saveVolume(rec, true);
  const path = join(driver.config.root, 'ephemeral', id);
  rec.staging = { path, phase: 'pending', block: false, mountFlags: [], mountGroup: cap.mountGroup || undefined };
  driver.saveVolume(rec, false);
  try {
    // VOLUME_MOUNT_GROUP is advertised, so kubelet leaves fsGroup to us for inline volumes too.
    rec.staging.device = await stageVolume(driver, rec, ephemeralStaging(driver, path), false, [], cap.mountGroup);
  } catch (err) {
    destroyEphemeral(driver, rec);
    throw err;
  }
  rec.staging.phase = 'done';
  driver.saveVolume(rec, false);
  driver.log.info({ volume: id, type: rec.type, bytes: rec.capacityBytes }, 'ephemeral volume created');
  return rec;
}

/** An ephemeral volume's staging path is the driver's own, so its no-symlink rule starts at the root. */
function ephemeralStaging(driver: Driver, path: string): MountPath {
  return { path, field: 'ephemeral staging path', beneath: driver.config.root };
}

/** Remove an ephemeral volume once its last publication is gone. */
function destroyEphemeral(driver: Driver, rec: VolumeRecord): void {
  if (rec.staging) unstageVolume(rec, rec.staging.path, rec.staging.device, false);
  if (rec.staging) removeTarget(rec.staging.path, driver.config.root);
  driver.forgetVolume(rec.id);
  driver.storage.removeVolume(rec);
  driver.log.info({ volume: rec.id }, 'ephemeral volume deleted');
}

export async function nodePublishVolume(driver: Driver, req: NodePublishVolumeRequest): Promise<NodePublishVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  const target = checkHostPath(req.targetPath, 'target_path');
  const cap = parseCapability(req.volumeCapability, 'volume_capability');
  const ephemeral = req.volumeContext[ephemeralKey] === 'true';
  if (ephemeral && cap.block) throw invalid('volume_capability', 'ephemeral inline volumes are filesystems; block is not possible');
  const staging = ephemeral ? undefined : checkHostPath(req.stagingTargetPath, 'staging_target_path');
  return driver.exclusive([id], async () => {
    let rec = driver.volume(id);
    if (!rec && ephemeral) rec = await createEphemeral(driver, id, cap, req.volumeContext);
    if (!rec) throw new BerthError('not-found', `volume_id: volume "${id}" does not exist`);
    checkAccessType(rec, cap);
    if (!ephemeral) {
      if (rec.staging?.phase !== 'done') throw new BerthError('failed-precondition', `volume_id: volume "${id}" must be staged (NodeStageVolume) before it is published`);
      if (rec.staging.path !== staging) throw new BerthError('failed-precondition', `staging_target_path: volume "${id}" is staged at ${rec.staging.path}, not ${staging}`);
    }
    const readonly = req.readonly || cap.mode === Mode.SINGLE_NODE_READER_ONLY;
    const existing = rec.publications[target];
    if (existing?.phase === 'done' && isMountPoint(target)) {
      if (existing.readonly !== readonly || existing.block !== cap.block || existing.mountFlags.join(',') !== cap.mountFlags.join(',')) {
        throw new BerthError('already-exists', `target_path: volume "${id}" is published at ${target} with other options (readonly=${existing.readonly})`);
      }
      return {};
    }
    const others = Object.keys(rec.publications).filter((t) => t !== target);
    if (cap.mode === Mode.SINGLE_NODE_SINGLE_WRITER && others.length) {
      throw new BerthError('failed-precondition', `volume_id: volume "${id}" is SINGLE_NODE_SINGLE_WRITER and already published at ${others.join(', ')}`);
    }
    rec.publications[target] = { phase: 'pending', readonly, block: cap.block, mountFlags: cap.mountFlags };
    driver.saveVolume(rec, false);
    crashPoint('publish:after-intent');
    try {
      const stagedAt = rec.ephemeral ? ephemeralStaging(driver, rec.staging!.path) : coPath(rec.staging!.path, 'staging_target_path');
      rec.publications[target]!.device = publishVolume(rec, driver.storage.volumePath(rec), stagedAt, rec.staging!.device, coPath(target, 'target_path'), cap.block, readonly, cap.mountFlags);
      crashPoint('publish:after-mount');
    } catch (err) {
      try {
        unmountTarget(target);
        removeTarget(target);
      } catch { /* reported below */ }
      delete rec.publications[target];
      driver.saveVolume(rec, false);
      if (rec.ephemeral && Object.keys(rec.publications).length === 0) destroyEphemeral(driver, rec);
      throw err;
    }
    rec.publications[target]!.phase = 'done';
    driver.saveVolume(rec, false);
    driver.log.info({ volume: id, target, readonly, block: cap.block }, 'volume published');
    return {};
  });
}

export async function nodeUnpublishVolume(driver: Driver, req: NodeUnpublishVolumeRequest): Promise<NodeUnpublishVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  const target = checkHostPath(req.targetPath, 'target_path');
  return driver.exclusive([id], () => {
    const rec = driver.volume(id);
    if (!rec) throw new BerthError('not-found', `volume_id: volume "${id}" does not exist`);
    // Only a target this volume was published at is ours to unmount.
    if (!rec.publications[target]) return {};
    unmountTarget(target);
    const own = rec.publications[target].device;
    if (own) detachLoop(own);
    crashPoint('unpublish:after-unmount');
    removeTarget(target);
    delete rec.publications[target];
    if (rec.ephemeral && Object.keys(rec.publications).length === 0) destroyEphemeral(driver, rec);
    else driver.saveVolume(rec, false);
    driver.log.info({ volume: id, target }, 'volume unpublished');
    return {};
  });
}
