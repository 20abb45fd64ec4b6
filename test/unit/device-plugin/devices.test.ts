import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../../device-plugin/backend/types.js';
import { advertise, gpuOf, listAndWatchDevices, maxDeviceIdLength } from '../../../device-plugin/devices.js';
import { errorOf } from './fixtures.js';

function gpu(index: number, numaNode = 0): Gpu {
  return {
    index,
    uuid: `GPU-0000000${index}-aaaa-bbbb-cccc-dddddddddddd`,
    name: 'NVIDIA A100-SXM4-80GB',
    memoryMiB: 81920,
    pciBusId: `00000000:${(0x10 + index).toString(16).toUpperCase()}:00.0`,
    numaNode,
    devicePath: `/dev/nvidia${index}`,
  };
}

describe('advertise', () => {
  it('with replicas 1 advertises each GPU once under its UUID', () => {
    const gpus = [gpu(0), gpu(1)];
    expect(advertise(gpus, 1)).toEqual([
      { id: gpus[0]!.uuid, gpu: gpus[0], replica: 0 },
      { id: gpus[1]!.uuid, gpu: gpus[1], replica: 0 },
    ]);
  });

  it('with replicas N advertises <uuid>::0 .. <uuid>::N-1 per GPU', () => {
    const gpus = [gpu(0), gpu(1)];
    const devices = advertise(gpus, 3);
    expect(devices.map((d) => d.id)).toEqual([
      `${gpus[0]!.uuid}::0`, `${gpus[0]!.uuid}::1`, `${gpus[0]!.uuid}::2`,
      `${gpus[1]!.uuid}::0`, `${gpus[1]!.uuid}::1`, `${gpus[1]!.uuid}::2`,
    ]);
    expect(devices.map((d) => d.replica)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(devices[4]!.gpu).toBe(gpus[1]);
  });

  it('orders devices by GPU index whatever order the backend reports', () => {
    const devices = advertise([gpu(2), gpu(0), gpu(1)], 1);
    expect(devices.map((d) => d.gpu.index)).toEqual([0, 1, 2]);
  });

  it('keeps real UUID replica IDs within 63 characters even at 64 replicas', () => {
    const devices = advertise([gpu(0)], 64);
    expect(devices).toHaveLength(64);
    expect(Math.max(...devices.map((d) => d.id.length))).toBeLessThanOrEqual(maxDeviceIdLength);
  });

  it('no GPUs advertise nothing', () => {
    expect(advertise([], 4)).toEqual([]);
  });

  it('rejects replicas below 1 or fractional', () => {
    for (const replicas of [0, -1, 1.5]) {
      const err = errorOf(() => advertise([gpu(0)], replicas));
      expect(err.kind).toBe('invalid-argument');
      expect(err.message).toContain('replicas');
    }
  });

  it('rejects duplicate UUIDs, naming them', () => {
    const err = errorOf(() => advertise([gpu(0), { ...gpu(1), uuid: gpu(0).uuid }], 1));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toContain(gpu(0).uuid);
  });

  it('rejects IDs longer than 63 characters, naming them', () => {
    const long = { ...gpu(0), uuid: `GPU-${'x'.repeat(58)}` };
    expect(advertise([long], 1)[0]!.id).toHaveLength(62);
    const err = errorOf(() => advertise([long], 2));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toContain(`${long.uuid}::0`);
  });
});

describe('gpuOf', () => {
  const devices = advertise([gpu(0), gpu(1)], 2);

  it('finds the advertised device of a replica ID', () => {
    expect(gpuOf(`${gpu(1).uuid}::1`, devices)).toEqual({ id: `${gpu(1).uuid}::1`, gpu: gpu(1), replica: 1 });
  });

  it('an unknown ID, or a bare UUID under time-slicing, is undefined', () => {
    expect(gpuOf('GPU-nope', devices)).toBeUndefined();
    expect(gpuOf(gpu(0).uuid, devices)).toBeUndefined();
  });
});

describe('listAndWatchDevices', () => {
  it('reports healthy devices with their NUMA node as topology', () => {
    expect(listAndWatchDevices(advertise([gpu(0, 1)], 1), new Set())).toEqual([
      { ID: gpu(0).uuid, health: 'Healthy', topology: { nodes: [{ ID: 1n }] } },
    ]);
  });

  it('an unknown NUMA node (-1) gets no topology', () => {
    const [device] = listAndWatchDevices(advertise([gpu(0, -1)], 1), new Set());
    expect(device!.topology).toBeUndefined();
  });

  it('every replica of an unhealthy GPU is unhealthy, the others stay healthy', () => {
    const devices = advertise([gpu(0, 0), gpu(1, 1)], 2);
    expect(listAndWatchDevices(devices, new Set([gpu(0).uuid])).map((d) => [d.ID, d.health])).toEqual([
      [`${gpu(0).uuid}::0`, 'Unhealthy'],
      [`${gpu(0).uuid}::1`, 'Unhealthy'],
      [`${gpu(1).uuid}::0`, 'Healthy'],
      [`${gpu(1).uuid}::1`, 'Healthy'],
    ]);
  });

  it('NUMA node 0 is a topology, not a missing one', () => {
    const [device] = listAndWatchDevices(advertise([gpu(0, 0)], 1), new Set());
    expect(device!.topology).toEqual({ nodes: [{ ID: 0n }] });
  });
});
