import { BerthError } from '../../lib/errors.js';
import type {
  CreateSnapshotRequest,
  CreateSnapshotResponse,
  DeleteSnapshotRequest,
  DeleteSnapshotResponse,
  GetSnapshotRequest,
  GetSnapshotResponse,
  ListSnapshotsRequest,
  ListSnapshotsResponse,
} from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import { flushStaged } from '../storage.js';
import type { SnapshotRecord, VolumeRecord } from '../store/records.js';
import { invalid, requireId, requireString } from '../validate.js';
import { crashPoint } from '../faults.js';
import { snapshotMessage } from './messages.js';
import { page } from './volume-query.js';

// Snapshots: a copy of a volume's bytes under snapshots/, shared with the volume (reflink) on
// filesystems that can, a plain sparse copy elsewhere. The copy is complete before the RPC
// answers, so every snapshot is ready_to_use.

function checkSnapshotParameters(parameters: Record<string, string>): void {
  for (const key of Object.keys(parameters)) {
    if (!key.startsWith('csi.storage.k8s.io/')) throw invalid(`parameters.${key}`, 'unknown parameter (snapshots take none)');
  }
}

/** Copy one volume into a new snapshot record (the caller holds the volume's lock). */
export async function takeSnapshot(driver: Driver, vol: VolumeRecord, name: string, groupId?: string): Promise<SnapshotRecord> {
  if (vol.type === 'static') throw invalid('source_volume_id', `"${vol.id}" is a static volume; berth-csi does not snapshot pre-existing disks`);
  flushStaged(vol);
  const id = driver.newId('snap');
  let copy: SnapshotRecord['copy'];
  try {
    copy = await driver.storage.snapshot(vol, id);
  } catch (err) {
    driver.storage.removeSnapshot(id, vol.type);
    throw err;
  }
  crashPoint('snapshot:after-copy');
  const rec: SnapshotRecord = {
    id,
    name,
    sourceVolumeId: vol.id,
    sourceType: vol.type,
    fsType: vol.fsType,
    sizeBytes: vol.capacityBytes,
    createdAt: new Date().toISOString(),
    groupId,
    copy,
  };
  driver.saveSnapshot(rec);
  driver.log.info({ snapshot: id, name, volume: vol.id, copy, group: groupId }, 'snapshot created');
  return rec;
}

export async function createSnapshot(driver: Driver, req: CreateSnapshotRequest): Promise<CreateSnapshotResponse> {
  const name = requireString(req.name, 'name');
  const sourceId = requireId(req.sourceVolumeId, 'source_volume_id');
  checkSnapshotParameters(req.parameters);
  return driver.exclusive([`snapshot-name:${name}`, sourceId], async () => {
    const existing = driver.snapshots().find((s) => s.name === name);
    if (existing) {
      if (existing.sourceVolumeId !== sourceId) {
        throw new BerthError('already-exists', `name: snapshot "${name}" exists (${existing.id}) for another volume (${existing.sourceVolumeId})`);
      }
      return { snapshot: snapshotMessage(existing) };
    }
    const vol = driver.volume(sourceId);
    if (!vol || vol.ephemeral) throw new BerthError('not-found', `source_volume_id: volume "${sourceId}" does not exist`);
    return { snapshot: snapshotMessage(await takeSnapshot(driver, vol, name)) };
  });
}

export async function deleteSnapshot(driver: Driver, req: DeleteSnapshotRequest): Promise<DeleteSnapshotResponse> {
  const id = requireId(req.snapshotId, 'snapshot_id');
  return driver.exclusive([id], () => {
    const rec = driver.snapshot(id);
    if (!rec) return {};
    if (rec.groupId && driver.group(rec.groupId)) {
      throw new BerthError('failed-precondition', `snapshot_id: snapshot "${id}" belongs to group snapshot ${rec.groupId}; delete the group snapshot instead`);
    }
    driver.forgetSnapshot(id);
    driver.storage.removeSnapshot(id, rec.sourceType);
    driver.log.info({ snapshot: id }, 'snapshot deleted');
    return {};
  });
}

export async function listSnapshots(driver: Driver, req: ListSnapshotsRequest): Promise<ListSnapshotsResponse> {
  let found = driver.snapshots();
  if (req.snapshotId) found = found.filter((s) => s.id === req.snapshotId);
  if (req.sourceVolumeId) found = found.filter((s) => s.sourceVolumeId === req.sourceVolumeId);
  const { items, nextToken } = page(found, req.maxEntries, req.startingToken);
  return { entries: items.map((s) => ({ snapshot: snapshotMessage(s) })), nextToken };
}

export async function getSnapshot(driver: Driver, req: GetSnapshotRequest): Promise<GetSnapshotResponse> {
  const id = requireId(req.snapshotId, 'snapshot_id');
  const rec = driver.snapshot(id);
  if (!rec) throw new BerthError('not-found', `snapshot_id: snapshot "${id}" does not exist`);
  return { snapshot: snapshotMessage(rec) };
}
