import { lstatSync } from 'node:fs';
import { normalize } from 'node:path';
import { BerthError } from '../lib/errors.js';
import { VolumeCapability_AccessMode_Mode as Mode, type CapacityRange, type VolumeCapability } from '../proto/gen/csi.js';

// Checks on what a CO sends, each naming the field it rejects (CSI: INVALID_ARGUMENT for a
// missing or malformed field). Pure functions except for the path checks, which look at the
// file system to refuse symlinks planted on the way to a target.

export function invalid(field: string, why: string): BerthError {
  return new BerthError('invalid-argument', `${field}: ${why}`);
}

export function requireString(value: string | undefined, field: string): string {
  if (!value) throw invalid(field, 'is required');
  return value;
}

/** IDs become file names under the root: one path component of a safe alphabet, no "..". */
const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function requireId(value: string | undefined, field: string): string {
  const id = requireString(value, field);
  if (!idPattern.test(id)) throw invalid(field, `"${id.slice(0, 140)}" is not an ID berth-csi could have issued (1-128 of [A-Za-z0-9._-], starting with a letter or digit)`);
  return id;
}

export interface Capability {
  block: boolean;
  fsType: string;
  mountFlags: string[];
  mountGroup: string;
  mode: Mode;
}

const singleNodeModes = new Set([Mode.SINGLE_NODE_WRITER, Mode.SINGLE_NODE_READER_ONLY, Mode.SINGLE_NODE_SINGLE_WRITER, Mode.SINGLE_NODE_MULTI_WRITER]);

/** A capability's shape, or why it cannot be served (undefined reason = fine). */
export function capabilityProblem(cap: VolumeCapability | undefined, field: string): string | undefined {
  if (!cap) return `${field}: is required`;
  if (!cap.accessMode) return `${field}.access_mode: is required`;
  if (!cap.block && !cap.mount) return `${field}: one of block or mount is required`;
  const mode = cap.accessMode.mode;
  if (mode === Mode.UNKNOWN || mode === Mode.UNRECOGNIZED || Mode[mode] === undefined) return `${field}.access_mode.mode: ${mode} is not a known access mode`;
  if (!singleNodeModes.has(mode)) return `${field}.access_mode.mode: ${Mode[mode]} is a multi-node mode; berth-csi volumes live on one node (use a single-node mode such as SINGLE_NODE_WRITER or SINGLE_NODE_MULTI_WRITER)`;
  if (cap.mount?.fsType && !['ext4', 'xfs'].includes(cap.mount.fsType)) return `${field}.mount.fs_type: "${cap.mount.fsType}" is not supported (ext4, xfs)`;
  return undefined;
}

export function parseCapability(cap: VolumeCapability | undefined, field: string): Capability {
  const problem = capabilityProblem(cap, field);
  if (problem) throw new BerthError('invalid-argument', problem);
  return {
    block: Boolean(cap!.block),
    fsType: cap!.mount?.fsType ?? '',
    mountFlags: cap!.mount?.mountFlags ?? [],
    mountGroup: cap!.mount?.volumeMountGroup ?? '',
    mode: cap!.accessMode!.mode,
  };
}

/**
 * A target or staging path: absolute, already normal (no "." or ".." or doubled slashes), and
 * with no symlink on the way: every component that exists must not be one, the last included.
 * A CO never sends such paths; a hostile pod spec might. INVALID_ARGUMENT, naming the field:
 * the path as sent cannot be used, and the mounts themselves refuse it again through fds
 * (csi-driver/node/mounts.ts), since a check by name alone could be raced.
 */
export function checkHostPath(path: string | undefined, field: string): string {
  const p = requireString(path, field);
  if (!p.startsWith('/') || p.includes('\0')) throw invalid(field, `"${p}" must be an absolute path`);
  const trimmed = p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
  if (normalize(trimmed) !== trimmed || trimmed.split('/').includes('..')) throw invalid(field, `"${p}" must be a normalized path (no ".", ".." or "//")`);
  if (trimmed === '/') throw invalid(field, 'must not be /');
  const parts = trimmed.split('/').slice(1);
  let at = '';
  for (const [i, part] of parts.entries()) {
    at = `${at}/${part}`;
    let link: boolean;
    try {
      link = lstatSync(at).isSymbolicLink();
    } catch (err) {
      // The rest does not exist yet: the driver creates it without following symlinks.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return trimmed;
      throw err;
    }
    if (link && i === parts.length - 1) throw invalid(field, `"${p}" is a symlink; berth-csi does not mount over symlinks`);
    if (link) throw invalid(field, `"${p}" goes through a symlink (${at})`);
  }
  return trimmed;
}

const mib = 1 << 20;

/**
 * The size to create for a capacity range: the required bytes (or the default when there is
 * none), rounded up to whole MiB and to `minimum`, and never above the limit.
 */
export function sizeForRange(range: CapacityRange | undefined, defaultBytes: number, minimum: number, field: string): number {
  const required = Number(range?.requiredBytes ?? 0n);
  const limit = Number(range?.limitBytes ?? 0n);
  if (required < 0 || limit < 0) throw invalid(field, 'required_bytes and limit_bytes must not be negative');
  if (limit > 0 && required > limit) throw new BerthError('out-of-range', `${field}: required_bytes ${required} is above limit_bytes ${limit}`);
  let size = required > 0 ? required : limit > 0 ? Math.min(defaultBytes, limit) : defaultBytes;
  size = Math.max(Math.ceil(size / mib) * mib, minimum);
  if (limit > 0 && size > limit) {
    // Whole MiB above a limit that is not one: use the limit itself when it still fits the minimum.
    if (limit >= minimum) size = limit;
    else throw new BerthError('out-of-range', `${field}: limit_bytes ${limit} is below the smallest volume of this type (${minimum} bytes)`);
  }
  return size;
}

/** Whether an existing size satisfies a capacity range (CreateVolume idempotency). */
export function sizeFitsRange(size: number, range: CapacityRange | undefined): boolean {
  const required = Number(range?.requiredBytes ?? 0n);
  const limit = Number(range?.limitBytes ?? 0n);
  return size >= required && (limit === 0 || size <= limit);
}

const quantityUnits: Record<string, number> = {
  '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4,
};

/** A Kubernetes quantity ("100Mi", "1G", "1073741824") in bytes. */
export function parseQuantity(value: string, field: string): number {
  const m = /^(\d+(?:\.\d+)?)(|k|M|G|T|Ki|Mi|Gi|Ti)$/.exec(value.trim());
  if (!m) throw invalid(field, `"${value}" is not a size (examples: 100Mi, 1Gi, 500M, 1073741824)`);
  const bytes = Math.ceil(Number(m[1]) * quantityUnits[m[2]!]!);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw invalid(field, `"${value}" is out of range`);
  return bytes;
}
