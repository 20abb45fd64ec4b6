import { BerthError } from '../../lib/errors.js';
import type { CreateVolumeRequest, CreateVolumeResponse, TopologyRequirement } from '../../proto/gen/csi.js';
import { topologyKey, type CsiConfig, type SizeEnforcement } from '../config.js';
import type { Driver } from '../driver.js';
import { flushStaged, minimumSize, type QuotaFs } from '../storage.js';
import type { FsType, VolumeRecord, VolumeType } from '../store/records.js';
import { invalid, parseCapability, requireId, requireString, sizeFitsRange, sizeForRange, type Capability } from '../validate.js';
import { crashPoint } from '../faults.js';
import { volumeMessage } from './messages.js';

// CreateVolume: a directory, a formatted sparse file or a block file under the root, empty or
// copied from a snapshot or another volume. Idempotent on the name.

/** StorageClass parameters berth-csi understands; anything else is a typo worth reporting. */
const knownParameters = new Set(['type', 'fsType', 'csi.storage.k8s.io/fstype', 'sizeEnforcement']);

export interface VolumePlan {
  type: Exclude<VolumeType, 'static'>;
  fsType?: FsType;
  sizeEnforced: boolean;
}

/** Decide the kind of volume from the parameters and capabilities (pure, no I/O). */
export function planVolume(config: CsiConfig, parameters: Record<string, string>, caps: Capability[], quotaFs: QuotaFs | undefined): VolumePlan {
  for (const key of Object.keys(parameters)) {
    if (!knownParameters.has(key) && !key.startsWith('csi.storage.k8s.io/')) {
      throw invalid(`parameters.${key}`, `unknown parameter (berth-csi knows ${[...knownParameters].join(', ')})`);
    }
  }
  const wantsBlock = caps.some((c) => c.block);
  const wantsMount = caps.some((c) => !c.block);
  const asked = parameters.type;
  if (asked !== undefined && !['filesystem', 'directory', 'block'].includes(asked)) {
    throw invalid('parameters.type', `"${asked}" is not a volume type (filesystem, directory, block)`);
  }
  const type = (asked ?? (wantsBlock ? 'block' : config.defaultType)) as VolumePlan['type'];
  if (type === 'block' && wantsMount) throw invalid('volume_capabilities', 'a block volume cannot also be mounted as a filesystem; ask for the block access type only');
  if (type !== 'block' && wantsBlock) throw invalid('volume_capabilities', `a ${type} volume cannot be used as a raw block device (use parameters.type: block)`);
  if (type === 'block') return { type, sizeEnforced: true };

  if (type === 'directory') {
    if (quotaFs) return { type, sizeEnforced: true };
    const mode = parameters.sizeEnforcement ?? config.directorySizeEnforcement;
    if (mode !== 'refuse' && mode !== 'unenforced') throw invalid('parameters.sizeEnforcement', `"${mode}" must be refuse or unenforced`);
    if ((mode as SizeEnforcement) === 'refuse') {
      throw new BerthError(
        'failed-precondition',
        `directory volumes need project quotas to enforce their size, and the filesystem of ${config.root} has none (mount it with prjquota, or set parameters.sizeEnforcement: unenforced to accept volumes without a size limit)`,
      );
    }
    return { type, sizeEnforced: false };
  }

  const fsParam = parameters.fsType ?? parameters['csi.storage.k8s.io/fstype'];
  const fsFromCaps = caps.find((c) => c.fsType)?.fsType;
  const fsType = (fsParam || fsFromCaps || config.defaultFsType) as string;
  if (fsType !== 'ext4' && fsType !== 'xfs') throw invalid('parameters.fsType', `"${fsType}" is not supported (ext4, xfs)`);
  if (fsFromCaps && fsFromCaps !== fsType) {
    throw invalid('volume_capabilities.mount.fs_type', `"${fsFromCaps}" contradicts parameters.fsType "${fsType}"`);
  }
  return { type, fsType, sizeEnforced: true };
}

/** RESOURCE_EXHAUSTED when the requisite topology excludes this node (CSI CreateVolume errors). */
function checkTopology(driver: Driver, req: TopologyRequirement | undefined): void {
  if (!req || req.requisite.length === 0) return;
  const ours = req.requisite.some((t) => t.segments[topologyKey] === undefined || t.segments[topologyKey] === driver.config.nodeId);
  if (!ours) {
    throw new BerthError('resource-exhausted', `accessibility_requirements.requisite: berth-csi on node ${driver.config.nodeId} can only create volumes with ${topologyKey}=${driver.config.nodeId}`);
  }
}

function sameParameters(a: Record<string, string>, b: Record<string, string>): boolean {
  const strip = (p: Record<string, string>): string =>
    JSON.stringify(Object.entries(p).filter(([k]) => !k.startsWith('csi.storage.k8s.io/') || k === 'csi.storage.k8s.io/fstype').sort());
  return strip(a) === strip(b);
}

interface Source {
  path: string;
  type: VolumeType;
  fsType?: FsType;
  sizeBytes: number;
  ref: { snapshotId?: string; volumeId?: string };
}

function resolveSource(driver: Driver, req: CreateVolumeRequest): Source | undefined {
  const src = req.volumeContentSource;
  if (!src) return undefined;
  if (src.snapshot) {
    const id = requireId(src.snapshot.snapshotId, 'volume_content_source.snapshot.snapshot_id');
    const snap = driver.snapshot(id);
    if (!snap) throw new BerthError('not-found', `volume_content_source.snapshot.snapshot_id: snapshot "${id}" does not exist`);
    return { path: driver.storage.snapshotPath(id, snap.sourceType), type: snap.sourceType, fsType: snap.fsType, sizeBytes: snap.sizeBytes, ref: { snapshotId: id } };
  }
  if (src.volume) {
    const id = requireId(src.volume.volumeId, 'volume_content_source.volume.volume_id');
    const vol = driver.volume(id);
    if (!vol || vol.ephemeral) throw new BerthError('not-found', `volume_content_source.volume.volume_id: volume "${id}" does not exist`);
    if (vol.type === 'static') throw invalid('volume_content_source.volume.volume_id', `"${id}" is a static volume; berth-csi does not copy pre-existing disks`);
    return { path: driver.storage.volumePath(vol), type: vol.type, fsType: vol.fsType, sizeBytes: vol.capacityBytes, ref: { volumeId: id } };
  }
  throw invalid('volume_content_source', 'names neither a snapshot nor a volume');
}

export async function createVolume(driver: Driver, req: CreateVolumeRequest): Promise<CreateVolumeResponse> {
  const name = requireString(req.name, 'name');
  if (req.volumeCapabilities.length === 0) throw invalid('volume_capabilities', 'at least one capability is required');
  const caps = req.volumeCapabilities.map((c, i) => parseCapability(c, `volume_capabilities[${i}]`));
  const plan = planVolume(driver.config, req.parameters, caps, driver.storage.quotaFs);
  checkTopology(driver, req.accessibilityRequirements);
  const source = resolveSource(driver, req);
  const keys = [`name:${name}`];
  // Hold the source too: a DeleteVolume or DeleteSnapshot must not remove it mid-copy.
  if (source?.ref.volumeId) keys.push(source.ref.volumeId);
  if (source?.ref.snapshotId) keys.push(source.ref.snapshotId);

  return driver.exclusive(keys, async () => {
    const existing = driver.volumeByName(name);
    if (existing) return { volume: volumeMessage(driver, sameVolumeOrThrow(existing, plan, req, source)) };

    if (source && (source.type !== plan.type || (plan.type === 'filesystem' && source.fsType !== plan.fsType))) {
      const what = source.ref.snapshotId ? 'snapshot' : 'volume';
      throw invalid('volume_content_source', `the source ${what} holds a ${source.type}${source.fsType ? ` (${source.fsType})` : ''} volume, not a ${plan.type}${plan.fsType ? ` (${plan.fsType})` : ''} one`);
    }
    let size = sizeForRange(req.capacityRange, driver.config.defaultSizeBytes, minimumSize(plan.type, plan.fsType), 'capacity_range');
    if (source && size < source.sizeBytes) {
      const limit = Number(req.capacityRange?.limitBytes ?? 0n);
      if (limit > 0 && limit < source.sizeBytes) {
        throw new BerthError('out-of-range', `capacity_range.limit_bytes: ${limit} is smaller than the source (${source.sizeBytes} bytes)`);
      }
      size = source.sizeBytes;
    }
    const room = driver.maxVolumeBytes();
    if (size > room) throw new BerthError('out-of-range', `capacity_range: ${size} bytes do not fit; ${room} bytes are available under ${driver.config.root}`);

    const rec: VolumeRecord = {
      id: driver.newId('vol'),
      name,
      type: plan.type,
      fsType: plan.fsType,
      capacityBytes: size,
      parameters: { ...req.parameters },
      source: source?.ref,
      sizeEnforced: plan.sizeEnforced,
      fsBytes: plan.type === 'filesystem' ? (source?.sizeBytes ?? size) : undefined,
      createdAt: new Date().toISOString(),
      publications: {},
    };
    if (plan.type === 'directory' && plan.sizeEnforced) {
      rec.projectId = driver.storage.pickProjectId(driver.volumes(), driver.config.projectIdMin, driver.config.projectIdMax);
    }
    try {
      if (source?.ref.volumeId) flushStaged(driver.requireVolume(source.ref.volumeId, 'volume_content_source.volume.volume_id'));
      if (source) await driver.storage.createFrom(rec, source.path);
      else await driver.storage.createEmpty(rec);
    } catch (err) {
      driver.storage.removeVolume(rec);
      throw err;
    }
    crashPoint('create:after-backing');
    // Recorded only once the bytes exist: a crash before this line leaves backing that
    // recovery removes, never a record without its volume.
    driver.saveVolume(rec, true);
    driver.log.info({ volume: rec.id, name, type: rec.type, fsType: rec.fsType, bytes: size, source: rec.source }, 'volume created');
    return { volume: volumeMessage(driver, rec) };
  });
}

/** CreateVolume again with a name that exists: the same volume, or ALREADY_EXISTS saying what differs. */
function sameVolumeOrThrow(existing: VolumeRecord, plan: VolumePlan, req: CreateVolumeRequest, source: Source | undefined): VolumeRecord {
  const differs = (what: string): BerthError => new BerthError('already-exists', `name: volume "${req.name}" exists (${existing.id}) with a different ${what}`);
  if (existing.type !== plan.type) throw differs(`type (${existing.type})`);
  if (plan.type === 'filesystem' && existing.fsType !== plan.fsType) throw differs(`fsType (${existing.fsType})`);
  if (!sizeFitsRange(existing.capacityBytes, req.capacityRange)) throw differs(`capacity (${existing.capacityBytes} bytes)`);
  if (JSON.stringify(existing.source ?? {}) !== JSON.stringify(source?.ref ?? {})) throw differs('content source');
  if (!sameParameters(existing.parameters, req.parameters)) throw differs('set of parameters');
  return existing;
}
