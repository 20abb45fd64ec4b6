import { existsSync } from 'node:fs';
import type { Snapshot, Topology, Volume, VolumeCondition } from '../../proto/gen/csi.js';
import { topologyKey } from '../config.js';
import type { Driver } from '../driver.js';
import type { SnapshotRecord, VolumeRecord } from '../store/records.js';

// Records as CSI messages, shared by the RPCs that answer with volumes and snapshots.

export function nodeTopology(driver: Driver): Topology {
  return { segments: { [topologyKey]: driver.config.nodeId } };
}

export function volumeMessage(driver: Driver, rec: VolumeRecord): Volume {
  const context: Record<string, string> = { type: rec.type, sizeEnforced: String(rec.sizeEnforced) };
  if (rec.fsType) context.fsType = rec.fsType;
  return {
    volumeId: rec.id,
    capacityBytes: BigInt(rec.capacityBytes),
    volumeContext: context,
    contentSource: rec.source?.snapshotId
      ? { snapshot: { snapshotId: rec.source.snapshotId } }
      : rec.source?.volumeId
        ? { volume: { volumeId: rec.source.volumeId } }
        : undefined,
    accessibleTopology: [nodeTopology(driver)],
  };
}

export function snapshotMessage(rec: SnapshotRecord): Snapshot {
  const ms = Date.parse(rec.createdAt);
  return {
    snapshotId: rec.id,
    sourceVolumeId: rec.sourceVolumeId,
    sizeBytes: BigInt(rec.sizeBytes),
    creationTime: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 },
    // Copies are made before CreateSnapshot answers, so a snapshot is usable once it exists.
    readyToUse: true,
    groupSnapshotId: rec.groupId ?? '',
  };
}

/** Whether the bytes behind a volume are still there (the controller's view of its health). */
export function backingCondition(driver: Driver, rec: VolumeRecord): VolumeCondition {
  const path = driver.storage.volumePath(rec);
  if (!existsSync(path)) return { abnormal: true, message: `the volume's ${rec.type === 'directory' ? 'directory' : rec.type === 'static' ? 'source' : 'backing file'} ${path} is gone` };
  return { abnormal: false, message: 'volume is healthy' };
}
