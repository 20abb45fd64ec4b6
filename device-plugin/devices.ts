import { BerthError } from '../lib/errors.js';
import type { Device } from '../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import type { Gpu } from './backend/types.js';

// What kubelet sees: one device ID per GPU, or with time-slicing N IDs per GPU
// (`<uuid>::<n>`, the format NVIDIA's plugin uses), each carrying the GPU it stands for.

/** The separator NVIDIA's plugin uses between a GPU's UUID and its replica number. */
export const replicaSeparator = '::';

/** kubelet's Device.ID limit as the API documents it (at most 63 characters). */
export const maxDeviceIdLength = 63;

export interface AdvertisedDevice {
  /** The ID kubelet sees: the UUID, or `<uuid>::<replica>` with time-slicing. */
  id: string;
  gpu: Gpu;
  /** 0..replicas-1; always 0 without time-slicing. */
  replica: number;
}

/**
 * The devices to advertise, ordered by GPU index then replica. With replicas 1 the ID is the
 * GPU's UUID; with replicas N > 1 the IDs are `<uuid>::0` .. `<uuid>::N-1`.
 */
export function advertise(gpus: Gpu[], replicas: number): AdvertisedDevice[] {
  if (!Number.isInteger(replicas) || replicas < 1) {
    throw new BerthError('invalid-argument', `sharing.timeSlicing.replicas: must be an integer >= 1, got ${replicas}`);
  }
  const seen = new Set<string>();
  const duplicates = new Set<string>();
  for (const gpu of gpus) {
    if (seen.has(gpu.uuid)) duplicates.add(gpu.uuid);
    seen.add(gpu.uuid);
  }
  if (duplicates.size > 0) throw new BerthError('invalid-argument', `gpus: duplicate UUIDs: ${[...duplicates].join(', ')}`);

  const sorted = [...gpus].sort((a, b) => a.index - b.index);
  const devices: AdvertisedDevice[] = [];
  for (const gpu of sorted) {
    for (let replica = 0; replica < replicas; replica++) {
      const id = replicas === 1 ? gpu.uuid : `${gpu.uuid}${replicaSeparator}${replica}`;
      devices.push({ id, gpu, replica });
    }
  }
  const tooLong = devices.filter((d) => d.id.length > maxDeviceIdLength).map((d) => d.id);
  if (tooLong.length > 0) {
    throw new BerthError('invalid-argument', `device IDs longer than ${maxDeviceIdLength} characters: ${tooLong.join(', ')}`);
  }
  return devices;
}

/** The advertised device with this ID, if any. */
export function gpuOf(id: string, devices: AdvertisedDevice[]): AdvertisedDevice | undefined {
  return devices.find((d) => d.id === id);
}

/**
 * ListAndWatch's device list. All replicas of an unhealthy GPU are unhealthy; a GPU whose NUMA
 * node is unknown (-1) gets no topology, so the topology manager does not align it.
 */
export function listAndWatchDevices(devices: AdvertisedDevice[], unhealthy: ReadonlySet<string>): Device[] {
  return devices.map((d) => ({
    ID: d.id,
    health: unhealthy.has(d.gpu.uuid) ? 'Unhealthy' : 'Healthy',
    topology: d.gpu.numaNode >= 0 ? { nodes: [{ ID: BigInt(d.gpu.numaNode) }] } : undefined,
  }));
}
