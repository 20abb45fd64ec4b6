import { BerthError } from '../../lib/errors.js';
import {
  GroupControllerServiceCapability_RPC_Type as GroupRpc,
  type CreateVolumeGroupSnapshotRequest,
  type CreateVolumeGroupSnapshotResponse,
  type DeleteVolumeGroupSnapshotRequest,
  type DeleteVolumeGroupSnapshotResponse,
  type GetVolumeGroupSnapshotRequest,
  type GetVolumeGroupSnapshotResponse,
  type GroupControllerGetCapabilitiesResponse,
  type VolumeGroupSnapshot,
} from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import type { GroupSnapshotRecord, SnapshotRecord, VolumeRecord } from '../store/records.js';
import { invalid, requireId, requireString } from '../validate.js';
import { snapshotMessage } from './messages.js';
import { takeSnapshot } from './snapshots.js';

// csi.v1.GroupController: snapshots of several volumes taken together (a database and its
// log volume). Every member volume is locked for the whole group, so no stage, publish or
// expansion runs between the member copies.

export function groupCapabilities(): GroupControllerGetCapabilitiesResponse {
  return { capabilities: [{ rpc: { type: GroupRpc.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT } }] };
}

function groupMessage(driver: Driver, rec: GroupSnapshotRecord): VolumeGroupSnapshot {
  const members = rec.snapshotIds.map((id) => driver.snapshot(id)).filter((s): s is SnapshotRecord => s !== undefined);
  const ms = Date.parse(rec.createdAt);
  return {
    groupSnapshotId: rec.id,
    snapshots: members.map(snapshotMessage),
    creationTime: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 },
    readyToUse: members.length === rec.snapshotIds.length,
  };
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

export async function createGroupSnapshot(driver: Driver, req: CreateVolumeGroupSnapshotRequest): Promise<CreateVolumeGroupSnapshotResponse> {
  const name = requireString(req.name, 'name');
  if (req.sourceVolumeIds.length === 0) throw invalid('source_volume_ids', 'at least one volume is required');
  const sources = req.sourceVolumeIds.map((id, i) => requireId(id, `source_volume_ids[${i}]`));
  if (new Set(sources).size !== sources.length) throw invalid('source_volume_ids', 'lists a volume twice');
  for (const key of Object.keys(req.parameters)) {
    if (!key.startsWith('csi.storage.k8s.io/')) throw invalid(`parameters.${key}`, 'unknown parameter (group snapshots take none)');
  }
  return driver.exclusive([`group-name:${name}`, ...sources], async () => {
    const existing = driver.groups().find((g) => g.name === name);
    if (existing) {
      if (!sameSet(existing.sourceVolumeIds, sources)) {
        throw new BerthError('already-exists', `name: group snapshot "${name}" exists (${existing.id}) for another set of volumes`);
      }
      return { groupSnapshot: groupMessage(driver, existing) };
    }
    const volumes: VolumeRecord[] = sources.map((id, i) => {
      const vol = driver.volume(id);
      if (!vol || vol.ephemeral) throw new BerthError('not-found', `source_volume_ids[${i}]: volume "${id}" does not exist`);
      return vol;
    });
    const rec: GroupSnapshotRecord = { id: driver.newId('group'), name, sourceVolumeIds: sources, snapshotIds: [], createdAt: new Date().toISOString() };
    const taken: SnapshotRecord[] = [];
    try {
      for (const vol of volumes) taken.push(await takeSnapshot(driver, vol, `${rec.id}/${vol.id}`, rec.id));
    } catch (err) {
      // All or nothing: a group with a member missing is no point in time.
      for (const snap of taken) {
        driver.forgetSnapshot(snap.id);
        driver.storage.removeSnapshot(snap.id, snap.sourceType);
      }
      throw err;
    }
    rec.snapshotIds = taken.map((s) => s.id);
    driver.saveGroup(rec);
    driver.log.info({ group: rec.id, name, volumes: sources }, 'group snapshot created');
    return { groupSnapshot: groupMessage(driver, rec) };
  });
}

/** CSI: snapshot_ids must name exactly the group's members (INVALID_ARGUMENT on a mismatch). */
function checkMembers(rec: GroupSnapshotRecord, snapshotIds: string[]): void {
  if (snapshotIds.length === 0) throw invalid('snapshot_ids', 'is required: the IDs of the snapshots in the group');
  if (!sameSet(rec.snapshotIds, snapshotIds)) {
    throw invalid('snapshot_ids', `do not match the members of group snapshot ${rec.id} (${rec.snapshotIds.join(', ')})`);
  }
}

export async function deleteGroupSnapshot(driver: Driver, req: DeleteVolumeGroupSnapshotRequest): Promise<DeleteVolumeGroupSnapshotResponse> {
  const id = requireId(req.groupSnapshotId, 'group_snapshot_id');
  // Hold the members too, as DeleteSnapshot does: a restore from one may be copying it.
  return driver.exclusive([id, ...(driver.group(id)?.snapshotIds ?? [])], () => {
    const rec = driver.group(id);
    if (!rec) return {};
    checkMembers(rec, req.snapshotIds);
    for (const snapId of rec.snapshotIds) {
      const snap = driver.snapshot(snapId);
      if (!snap) continue;
      driver.forgetSnapshot(snapId);
      driver.storage.removeSnapshot(snapId, snap.sourceType);
    }
    driver.forgetGroup(id);
    driver.log.info({ group: id }, 'group snapshot deleted');
    return {};
  });
}

export async function getGroupSnapshot(driver: Driver, req: GetVolumeGroupSnapshotRequest): Promise<GetVolumeGroupSnapshotResponse> {
  const id = requireId(req.groupSnapshotId, 'group_snapshot_id');
  const rec = driver.group(id);
  if (!rec) throw new BerthError('not-found', `group_snapshot_id: group snapshot "${id}" does not exist`);
  if (req.snapshotIds.length) checkMembers(rec, req.snapshotIds);
  return { groupSnapshot: groupMessage(driver, rec) };
}
