import { describe, expect, it } from 'vitest';
import type { Gpu, GpuTopology, LinkKind } from '../../../device-plugin/backend/types.js';
import { advertise } from '../../../device-plugin/devices.js';
import { preferredAllocation } from '../../../device-plugin/preferred.js';
import { errorOf } from './fixtures.js';

// A DGX-like node: NUMA 0 holds GPUs 0-3, NUMA 1 GPUs 4-7. NVLink pairs with different lane
// counts, including a fat cross-NUMA link (3-4) that must lose to a same-NUMA one.
const uuid = (i: number): string => `GPU-${String(i).repeat(8)}-0000-0000-0000-000000000000`;
function gpu(index: number, numaNode = index < 4 ? 0 : 1): Gpu {
  return { index, uuid: uuid(index), name: 'H100', memoryMiB: 81920, pciBusId: `00000000:${10 + index}:00.0`, numaNode, devicePath: `/dev/nvidia${index}` };
}
const dgx = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => gpu(i));
const lanes: Record<string, number> = { '0-1': 2, '2-3': 4, '0-2': 1, '1-3': 1, '4-5': 4, '6-7': 2, '3-4': 6 };

function topologyOf(gpus: Gpu[], laneTable: Record<string, number>, pcie: Record<string, LinkKind> = {}): GpuTopology {
  const byUuid = new Map(gpus.map((g) => [g.uuid, g]));
  const key = (a: string, b: string): string => {
    const [x, y] = [byUuid.get(a)!.index, byUuid.get(b)!.index].sort((p, q) => p - q);
    return `${x}-${y}`;
  };
  return {
    nvlinks: (a, b) => laneTable[key(a, b)] ?? 0,
    link: (a, b) => {
      if ((laneTable[key(a, b)] ?? 0) > 0) return 'nvlink';
      if (pcie[key(a, b)]) return pcie[key(a, b)]!;
      return byUuid.get(a)!.numaNode === byUuid.get(b)!.numaNode ? 'node' : 'sys';
    },
  };
}
const dgxTopology = topologyOf(dgx, lanes);
const devices = advertise(dgx, 1);
const all = devices.map((d) => d.id);
const ids = (...indexes: number[]): string[] => indexes.map(uuid);
const rep = (i: number, r: number): string => `${uuid(i)}::${r}`;

describe('preferredAllocation without time-slicing (8-GPU DGX-like node)', () => {
  const prefer = (available: string[], mustInclude: string[], size: number): string[] =>
    preferredAllocation({ available, mustInclude, size }, devices, dgxTopology, 'spread');

  it('picks the NVLink pair with the most lanes on one NUMA node, not the lowest indexes', () => {
    expect(prefer(all, [], 2)).toEqual(ids(2, 3));
  });

  it('three GPUs: the 4-lane pair plus the GPU best linked to it', () => {
    expect(prefer(all, [], 3)).toEqual(ids(2, 3, 0));
  });

  it('four GPUs: one whole NUMA node', () => {
    expect(new Set(prefer(all, [], 4))).toEqual(new Set(ids(0, 1, 2, 3)));
  });

  it('one GPU: the lowest index on the NUMA node with the most available GPUs', () => {
    expect(prefer(all, [], 1)).toEqual(ids(0));
    expect(prefer(ids(0, 5, 6), [], 1)).toEqual(ids(5));
  });

  it('a must-include GPU keeps its NUMA node even against a fatter cross-NUMA NVLink', () => {
    expect(prefer(all, ids(3), 2)).toEqual(ids(3, 2));
    expect(prefer(all, ids(4), 2)).toEqual(ids(4, 5));
  });

  it('must-include IDs come first, in request order', () => {
    expect(prefer(all, ids(1, 0), 3)).toEqual([...ids(1, 0), uuid(2)]);
  });

  it('without must-include, prefers the NUMA node with the most available GPUs', () => {
    expect(prefer(ids(1, 4, 5, 6), [], 2)).toEqual(ids(4, 5));
    expect(new Set(prefer(ids(0, 1, 4, 5, 6, 7), [], 4))).toEqual(new Set(ids(4, 5, 6, 7)));
  });

  it('spills to the other NUMA node only when the preferred one runs out', () => {
    const got = prefer(ids(0, 1, 2, 4, 5), [], 4);
    expect(new Set(got.slice(0, 3))).toEqual(new Set(ids(0, 1, 2)));
    expect(got[3]).toBe(uuid(4));
  });

  it('on PCIe-only GPUs prefers the pair behind one switch', () => {
    const plain = [0, 1, 2, 3].map((i) => gpu(i, 0));
    const topo = topologyOf(plain, {}, { '1-2': 'pix', '0-3': 'pxb' });
    expect(preferredAllocation({ available: ids(0, 1, 2, 3), mustInclude: [], size: 2 }, advertise(plain, 1), topo, 'spread')).toEqual(ids(1, 2));
  });

  it('GPUs with unknown NUMA nodes are still allocated, by index', () => {
    const plain = [0, 1, 2].map((i) => gpu(i, -1));
    const topo = topologyOf(plain, {});
    expect(preferredAllocation({ available: ids(2, 0, 1), mustInclude: [], size: 2 }, advertise(plain, 1), topo, 'pack')).toEqual(ids(0, 1));
  });

  it('returns exactly size IDs, or every available one when fewer are available', () => {
    for (let size = 1; size <= 8; size++) expect(new Set(prefer(all, [], size)).size).toBe(size);
    expect(new Set(prefer(ids(6, 7), [], 4))).toEqual(new Set(ids(6, 7)));
  });

  it('a must-include set as large as size is returned as it is', () => {
    expect(prefer(all, ids(7, 0), 2)).toEqual(ids(7, 0));
  });

  it('never returns an ID that is not available', () => {
    const available = ids(0, 3, 5, 6);
    for (let size = 1; size <= 4; size++) for (const id of prefer(available, [], size)) expect(available).toContain(id);
  });

  it('duplicate IDs in the request count once', () => {
    expect(prefer([...ids(2, 3), ...ids(2, 3)], ids(2, 2), 2)).toEqual(ids(2, 3));
  });
});

describe('preferredAllocation errors', () => {
  const prefer = (available: string[], mustInclude: string[], size: number): string[] =>
    preferredAllocation({ available, mustInclude, size }, devices, dgxTopology, 'spread');

  it('size below 1 is invalid-argument', () => {
    for (const size of [0, -2, 1.5]) {
      const err = errorOf(() => prefer(all, [], size));
      expect(err.kind).toBe('invalid-argument');
      expect(err.message).toContain('allocation_size');
    }
  });

  it('size below the must-include count is invalid-argument naming them', () => {
    const err = errorOf(() => prefer(all, ids(0, 1), 1));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toContain(uuid(0));
    expect(err.message).toContain(uuid(1));
  });

  it('unknown available IDs are invalid-argument naming all of them', () => {
    const err = errorOf(() => prefer([...ids(0), 'GPU-x', 'GPU-y'], [], 1));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toBe('available_deviceIDs: unknown device IDs: GPU-x, GPU-y');
  });

  it('must-include IDs outside available are invalid-argument naming them', () => {
    const err = errorOf(() => prefer(ids(0, 1), [uuid(0), uuid(5), 'GPU-z'], 3));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toBe(`must_include_deviceIDs: not in available_deviceIDs: ${uuid(5)}, GPU-z`);
  });
});

describe('preferredAllocation with time-slicing', () => {
  // Four GPUs, two per NUMA node, NVLink 0-1; two replicas each.
  const small = [gpu(0, 0), gpu(1, 0), gpu(2, 1), gpu(3, 1)];
  const topo = topologyOf(small, { '0-1': 4 });
  const shared = advertise(small, 2);
  const everything = shared.map((d) => d.id);
  const prefer = (policy: 'spread' | 'pack', available: string[], mustInclude: string[], size: number): string[] =>
    preferredAllocation({ available, mustInclude, size }, shared, topo, policy);

  it('spread picks replicas of distinct, NVLink-connected GPUs first', () => {
    expect(prefer('spread', everything, [], 2)).toEqual([rep(0, 0), rep(1, 0)]);
  });

  it('spread uses every GPU once before any GPU twice', () => {
    const got = prefer('spread', everything, [], 4);
    expect(new Set(got.map((id) => id.split('::')[0]))).toEqual(new Set(ids(0, 1, 2, 3)));
    expect(prefer('spread', everything, [], 5)).toHaveLength(5);
  });

  it('pack fills one GPU before the next, then the best-linked next GPU', () => {
    expect(prefer('pack', everything, [], 2)).toEqual([rep(0, 0), rep(0, 1)]);
    expect(prefer('pack', everything, [], 3)).toEqual([rep(0, 0), rep(0, 1), rep(1, 0)]);
  });

  it('spread avoids a GPU whose replicas are already used by other pods', () => {
    const available = everything.filter((id) => id !== rep(0, 0));
    expect(prefer('spread', available, [], 1)).toEqual([rep(1, 0)]);
  });

  it('pack prefers a GPU whose replicas are already used by other pods', () => {
    const available = everything.filter((id) => id !== rep(2, 0));
    expect(prefer('pack', available, [], 1)).toEqual([rep(2, 1)]);
  });

  it('must-include counts as used: spread moves on, pack stays', () => {
    expect(prefer('spread', everything, [rep(0, 0)], 2)).toEqual([rep(0, 0), rep(1, 0)]);
    expect(prefer('pack', everything, [rep(0, 0)], 2)).toEqual([rep(0, 0), rep(0, 1)]);
    expect(prefer('pack', everything, [rep(2, 1)], 3)).toEqual([rep(2, 1), rep(2, 0), rep(3, 0)]);
  });

  it('on the DGX-like node spread picks the 4-lane same-NUMA pair', () => {
    const dgxShared = advertise(dgx, 2);
    const got = preferredAllocation({ available: dgxShared.map((d) => d.id), mustInclude: [], size: 2 }, dgxShared, dgxTopology, 'spread');
    expect(got).toEqual([rep(2, 0), rep(3, 0)]);
  });

  it('returns every available replica when fewer than size are available', () => {
    expect(new Set(prefer('spread', [rep(3, 0), rep(3, 1)], [], 5))).toEqual(new Set([rep(3, 0), rep(3, 1)]));
  });

  it('a bare UUID is unknown under time-slicing', () => {
    expect(errorOf(() => prefer('spread', [uuid(0)], [], 1)).message).toContain(uuid(0));
  });
});
