import { BerthError } from '../lib/errors.js';
import type { Gpu, GpuTopology, LinkKind } from './backend/types.js';
import type { AdvertisedDevice } from './devices.js';

// GetPreferredAllocation: choose `size` of the available IDs, the must-include ones first.
// Greedy at GPU level: each step takes the best GPU by
//   [pack: already chosen, most used] / [spread: fewest used] replicas (time-slicing only),
//   then on a preferred NUMA node, then most NVLink lanes to the GPUs chosen so far,
//   then best PCIe link to them, then lowest index; and that GPU's lowest free replica.
// With nothing to start from, every tied first GPU is tried as the seed and the set with the
// most NVLink lanes wins, so a well-linked pair beats the lowest-index pair.

export interface PreferredAllocationInput {
  available: string[];
  mustInclude: string[];
  size: number;
}

export type AllocationPolicy = 'spread' | 'pack';

/** Higher is better; the order of nvidia-smi topo -m's legend. */
const linkRank: Record<LinkKind, number> = { nvlink: 6, pix: 5, pxb: 4, phb: 3, node: 2, sys: 1, unknown: 0 };

interface GpuSlot {
  gpu: Gpu;
  /** Available, not yet chosen replicas, lowest replica first. */
  free: AdvertisedDevice[];
  /** Replicas not free: allocated elsewhere, or chosen in this request. */
  used: number;
  chosen: boolean;
}

function fail(message: string): never {
  throw new BerthError('invalid-argument', message);
}

function unique(ids: string[]): string[] {
  return [...new Set(ids)];
}

interface Search {
  preferredNumas: ReadonlySet<number>;
  topology: GpuTopology;
  policy: AllocationPolicy;
  sharing: boolean;
}

function cloneSlots(slots: Map<string, GpuSlot>): Map<string, GpuSlot> {
  return new Map([...slots].map(([uuid, s]) => [uuid, { ...s, free: [...s.free] }]));
}

/** Sort key of a GPU for the next pick; compared lexicographically, lower first. */
function keyOf(slot: GpuSlot, chosenGpus: readonly string[], s: Search): number[] {
  let lanes = 0;
  let links = 0;
  for (const other of chosenGpus) {
    if (other === slot.gpu.uuid) continue;
    lanes += s.topology.nvlinks(slot.gpu.uuid, other);
    links += linkRank[s.topology.link(slot.gpu.uuid, other)];
  }
  const numa = s.preferredNumas.has(slot.gpu.numaNode) ? 1 : 0;
  const topo = [-numa, -lanes, -links, slot.gpu.index];
  if (!s.sharing) return topo;
  return s.policy === 'pack' ? [slot.chosen ? 0 : 1, -slot.used, ...topo] : [slot.used, ...topo];
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

function take(slot: GpuSlot, picked: string[], chosenGpus: string[]): void {
  const device = slot.free.shift()!;
  picked.push(device.id);
  slot.used++;
  if (!slot.chosen) chosenGpus.push(slot.gpu.uuid);
  slot.chosen = true;
}

/** Greedily pick `count` more IDs. */
function fill(slots: Map<string, GpuSlot>, chosenGpus: string[], count: number, s: Search): string[] {
  const picked: string[] = [];
  while (picked.length < count) {
    let best: GpuSlot | undefined;
    let bestKey: number[] = [];
    for (const slot of slots.values()) {
      if (slot.free.length === 0) continue;
      const key = keyOf(slot, chosenGpus, s);
      if (!best || compareKeys(key, bestKey) < 0) {
        best = slot;
        bestKey = key;
      }
    }
    if (!best) break;
    take(best, picked, chosenGpus);
  }
  return picked;
}

/** How good a chosen set of GPUs is: off-NUMA count (lower), NVLink lanes and link ranks (higher). */
function scoreOf(gpus: Gpu[], s: Search): number[] {
  let lanes = 0;
  let links = 0;
  for (let i = 0; i < gpus.length; i++) {
    for (let j = i + 1; j < gpus.length; j++) {
      lanes += s.topology.nvlinks(gpus[i]!.uuid, gpus[j]!.uuid);
      links += linkRank[s.topology.link(gpus[i]!.uuid, gpus[j]!.uuid)];
    }
  }
  const offNuma = gpus.filter((g) => !s.preferredNumas.has(g.numaNode)).length;
  return [offNuma, -lanes, -links];
}

/** The NUMA nodes to prefer: those of the must-include GPUs, else the one with most available GPUs. */
function preferredNumasOf(mustGpus: Gpu[], availableGpus: Gpu[]): Set<number> {
  const fromMust = new Set(mustGpus.map((g) => g.numaNode).filter((n) => n >= 0));
  if (fromMust.size > 0) return fromMust;
  const counts = new Map<number, number>();
  for (const gpu of availableGpus) if (gpu.numaNode >= 0) counts.set(gpu.numaNode, (counts.get(gpu.numaNode) ?? 0) + 1);
  let best: number | undefined;
  for (const [node, count] of counts) {
    if (best === undefined || count > counts.get(best)! || (count === counts.get(best)! && node < best)) best = node;
  }
  return best === undefined ? new Set() : new Set([best]);
}

/**
 * The preferred IDs for one container: every must-include ID (in request order), then the
 * best of the rest, `size` in all or every available ID when fewer are available.
 */
export function preferredAllocation(
  req: PreferredAllocationInput,
  devices: AdvertisedDevice[],
  topology: GpuTopology,
  policy: AllocationPolicy,
): string[] {
  if (!Number.isInteger(req.size) || req.size < 1) fail(`allocation_size: must be an integer >= 1, got ${req.size}`);
  const available = unique(req.available);
  const mustInclude = unique(req.mustInclude);
  if (req.size < mustInclude.length) {
    fail(`allocation_size: ${req.size} is smaller than the ${mustInclude.length} must_include_deviceIDs (${mustInclude.join(', ')})`);
  }
  const byId = new Map(devices.map((d) => [d.id, d]));
  const unknown = available.filter((id) => !byId.has(id));
  if (unknown.length > 0) fail(`available_deviceIDs: unknown device IDs: ${unknown.join(', ')}`);
  const availableSet = new Set(available);
  const missing = mustInclude.filter((id) => !availableSet.has(id));
  if (missing.length > 0) fail(`must_include_deviceIDs: not in available_deviceIDs: ${missing.join(', ')}`);

  // One slot per GPU with its total replica count from the advertised list.
  const slots = new Map<string, GpuSlot>();
  let maxReplicas = 1;
  for (const d of devices) {
    const slot = slots.get(d.gpu.uuid) ?? { gpu: d.gpu, free: [], used: 0, chosen: false };
    slot.used++;
    slots.set(d.gpu.uuid, slot);
    maxReplicas = Math.max(maxReplicas, slot.used);
  }
  for (const id of available) {
    const d = byId.get(id)!;
    const slot = slots.get(d.gpu.uuid)!;
    slot.free.push(d);
    slot.used--;
  }
  for (const slot of slots.values()) slot.free.sort((a, b) => a.replica - b.replica);

  const chosenGpus: string[] = [];
  const mustGpus: Gpu[] = [];
  for (const id of mustInclude) {
    const d = byId.get(id)!;
    const slot = slots.get(d.gpu.uuid)!;
    slot.free = slot.free.filter((f) => f.id !== id);
    slot.used++;
    if (!slot.chosen) {
      chosenGpus.push(d.gpu.uuid);
      mustGpus.push(d.gpu);
    }
    slot.chosen = true;
  }

  const search: Search = {
    preferredNumas: preferredNumasOf(mustGpus, [...slots.values()].filter((s) => s.free.length > 0).map((s) => s.gpu)),
    topology,
    policy,
    sharing: maxReplicas > 1,
  };
  const count = Math.min(req.size, available.length) - mustInclude.length;
  if (count <= 0) return mustInclude;
  if (chosenGpus.length > 0) return [...mustInclude, ...fill(slots, chosenGpus, count, search)];

  // Nothing to start from: try every GPU tied for the first pick as the seed.
  const firstKeys = [...slots.values()].filter((s) => s.free.length > 0).map((s) => ({ slot: s, key: keyOf(s, [], search) }));
  const prefixLength = firstKeys[0]!.key.length - 1; // all but the index
  firstKeys.sort((a, b) => compareKeys(a.key, b.key));
  const top = firstKeys[0]!.key.slice(0, prefixLength);
  const seeds = firstKeys.filter((k) => compareKeys(k.key.slice(0, prefixLength), top) === 0).map((k) => k.slot.gpu.uuid);

  let best: { ids: string[]; score: number[] } | undefined;
  for (const seed of seeds) {
    const trial = cloneSlots(slots);
    const picked: string[] = [];
    const trialChosen: string[] = [];
    take(trial.get(seed)!, picked, trialChosen);
    picked.push(...fill(trial, trialChosen, count - 1, search));
    const score = scoreOf(trialChosen.map((uuid) => trial.get(uuid)!.gpu), search);
    if (!best || compareKeys(score, best.score) < 0) best = { ids: picked, score };
  }
  return best!.ids;
}
