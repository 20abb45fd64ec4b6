import { BerthError } from '../../lib/errors.js';
import type { ControllerExpandVolumeRequest, ControllerExpandVolumeResponse, NodeExpandVolumeRequest, NodeExpandVolumeResponse } from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import { expandOnNode } from '../node/mounts.js';
import { invalid, requireId, requireString, sizeForRange } from '../validate.js';

// Expansion, online or offline. The controller half grows the bytes behind the volume (the
// sparse file, or the directory's quota); the node half makes the loop device and the
// filesystem follow. A filesystem volume grown while unstaged is grown at its next NodeStage.

export async function controllerExpandVolume(driver: Driver, req: ControllerExpandVolumeRequest): Promise<ControllerExpandVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  if (!req.capacityRange) throw invalid('capacity_range', 'is required');
  return driver.exclusive([id], () => {
    const rec = driver.requireVolume(id);
    if (rec.type === 'static') throw new BerthError('failed-precondition', `volume_id: "${id}" is a static volume; its size is the disk's`);
    const size = sizeForRange(req.capacityRange, rec.capacityBytes, rec.capacityBytes, 'capacity_range');
    const needsNode = rec.type === 'filesystem' || (rec.type === 'block' && rec.staging !== undefined);
    if (size <= rec.capacityBytes) return { capacityBytes: BigInt(rec.capacityBytes), nodeExpansionRequired: needsNode && (rec.fsBytes ?? rec.capacityBytes) < rec.capacityBytes };
    const growth = size - rec.capacityBytes;
    const room = driver.availableBytes();
    if (growth > room) throw new BerthError('out-of-range', `capacity_range: growing by ${growth} bytes does not fit; ${room} bytes are available under ${driver.config.root}`);
    if (driver.config.maxVolumeSizeBytes > 0 && size > driver.config.maxVolumeSizeBytes) {
      throw new BerthError('out-of-range', `capacity_range: ${size} bytes is above the largest volume allowed (${driver.config.maxVolumeSizeBytes})`);
    }
    driver.storage.grow(rec, size);
    rec.capacityBytes = size;
    driver.saveVolume(rec, true);
    driver.log.info({ volume: id, bytes: size }, 'volume expanded (controller)');
    return { capacityBytes: BigInt(size), nodeExpansionRequired: needsNode };
  });
}

export async function nodeExpandVolume(driver: Driver, req: NodeExpandVolumeRequest): Promise<NodeExpandVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  const path = requireString(req.volumePath, 'volume_path');
  return driver.exclusive([id], async () => {
    const rec = driver.requireVolume(id);
    const here = rec.publications[path] ?? (rec.staging?.path === path ? rec.staging : undefined);
    if (!here) throw new BerthError('not-found', `volume_path: volume "${id}" is not published or staged at ${path}`);
    const wanted = Number(req.capacityRange?.requiredBytes ?? 0n);
    if (wanted > rec.capacityBytes) {
      throw new BerthError('out-of-range', `capacity_range.required_bytes: ${wanted} is above the volume's size ${rec.capacityBytes}; expand it through the controller first`);
    }
    await expandOnNode(rec);
    driver.saveVolume(rec, false);
    driver.log.info({ volume: id, bytes: rec.capacityBytes }, 'volume expanded (node)');
    return { capacityBytes: BigInt(rec.capacityBytes) };
  });
}
