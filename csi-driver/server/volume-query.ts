import { BerthError } from '../../lib/errors.js';
import type {
  ControllerGetVolumeRequest,
  ControllerGetVolumeResponse,
  GetCapacityRequest,
  GetCapacityResponse,
  ListVolumesRequest,
  ListVolumesResponse,
  ValidateVolumeCapabilitiesRequest,
  ValidateVolumeCapabilitiesResponse,
} from '../../proto/gen/csi.js';
import { topologyKey } from '../config.js';
import type { Driver } from '../driver.js';
import { minimumSize } from '../storage.js';
import type { VolumeRecord } from '../store/records.js';
import { capabilityProblem, invalid, parseCapability, requireId } from '../validate.js';
import { planVolume } from './volume-create.js';
import { backingCondition, volumeMessage } from './messages.js';

// The read-only controller RPCs: ValidateVolumeCapabilities, ListVolumes, ControllerGetVolume
// and GetCapacity.

export async function validateVolumeCapabilities(driver: Driver, req: ValidateVolumeCapabilitiesRequest): Promise<ValidateVolumeCapabilitiesResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  if (req.volumeCapabilities.length === 0) throw invalid('volume_capabilities', 'at least one capability is required');
  const rec = driver.volume(id);
  if (!rec || rec.ephemeral) throw new BerthError('not-found', `volume_id: volume "${id}" does not exist`);
  for (const [i, cap] of req.volumeCapabilities.entries()) {
    const problem = capabilityProblem(cap, `volume_capabilities[${i}]`) ?? accessTypeProblem(rec, Boolean(cap.block), i);
    // An unsupported capability is an answer, not an error: no `confirmed`, and why.
    if (problem) return { message: problem };
  }
  return {
    confirmed: { volumeContext: req.volumeContext, volumeCapabilities: req.volumeCapabilities, parameters: req.parameters, mutableParameters: {} },
    message: '',
  };
}

function accessTypeProblem(rec: VolumeRecord, block: boolean, i: number): string | undefined {
  if (rec.type === 'block' && !block) return `volume_capabilities[${i}]: volume ${rec.id} is a block volume; it cannot be mounted as a filesystem`;
  if ((rec.type === 'filesystem' || rec.type === 'directory') && block) return `volume_capabilities[${i}]: volume ${rec.id} is a ${rec.type} volume; it cannot be used as a raw block device`;
  return undefined;
}

/** Paging tokens carry the last ID of the previous page; the prefix tells ours from garbage. */
const tokenPrefix = 'after:';

/** One page of `items` sorted by ID, after the token's cursor (ABORTED for a token we did not issue). */
export function page<T extends { id: string }>(items: T[], maxEntries: number, startingToken: string): { items: T[]; nextToken: string } {
  if (maxEntries < 0) throw invalid('max_entries', `${maxEntries} must not be negative`);
  let start = 0;
  const sorted = [...items].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (startingToken) {
    if (!startingToken.startsWith(tokenPrefix)) throw new BerthError('aborted', `starting_token: "${startingToken.slice(0, 80)}" is not a token this driver issued`);
    const after = startingToken.slice(tokenPrefix.length);
    start = sorted.findIndex((x) => x.id > after);
    if (start < 0) start = sorted.length;
  }
  const end = maxEntries > 0 ? Math.min(sorted.length, start + maxEntries) : sorted.length;
  const slice = sorted.slice(start, end);
  return { items: slice, nextToken: end < sorted.length && slice.length ? `${tokenPrefix}${slice.at(-1)!.id}` : '' };
}

export async function listVolumes(driver: Driver, req: ListVolumesRequest): Promise<ListVolumesResponse> {
  const listed = driver.volumes().filter((v) => !v.ephemeral && v.type !== 'static');
  const { items, nextToken } = page(listed, req.maxEntries, req.startingToken);
  return {
    entries: items.map((rec) => ({ volume: volumeMessage(driver, rec), status: { publishedNodeIds: [], volumeCondition: backingCondition(driver, rec) } })),
    nextToken,
  };
}

export async function controllerGetVolume(driver: Driver, req: ControllerGetVolumeRequest): Promise<ControllerGetVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  const rec = driver.requireVolume(id);
  return { volume: volumeMessage(driver, rec), status: { publishedNodeIds: [], volumeCondition: backingCondition(driver, rec) } };
}

/**
 * Free space of the root for volumes of the asked kind: what is free on disk, minus the
 * reserve, minus what existing volumes were promised and have not written yet. Zero for a
 * topology that is not this node, and for directory volumes when their size cannot be
 * enforced and the driver would refuse them.
 */
export async function getCapacity(driver: Driver, req: GetCapacityRequest): Promise<GetCapacityResponse> {
  const caps = req.volumeCapabilities.map((c, i) => parseCapability(c, `volume_capabilities[${i}]`));
  const zero = { availableCapacity: 0n, maximumVolumeSize: 0n, minimumVolumeSize: 0n };
  const segment = req.accessibleTopology?.segments[topologyKey];
  if (segment !== undefined && segment !== driver.config.nodeId) return zero;
  let plan;
  try {
    plan = planVolume(driver.config, req.parameters, caps, driver.storage.quotaFs);
  } catch (err) {
    if (err instanceof BerthError && err.kind === 'failed-precondition') return zero;
    throw err;
  }
  const available = driver.availableBytes();
  return {
    availableCapacity: BigInt(available),
    maximumVolumeSize: BigInt(driver.maxVolumeBytes(available)),
    minimumVolumeSize: BigInt(minimumSize(plan.type, plan.fsType)),
  };
}
