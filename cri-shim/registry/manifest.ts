import { BerthError } from '../../lib/errors.js';
import { isIndexMediaType, type Descriptor } from './platform.js';
import { checkDigest } from './verify.js';

// What an index, an image manifest and an image config may say before anything in them is used
// (image-spec "Descriptors"): every digest is a digest, since it becomes a URL path, a file name
// and a containerd key (`../../etc/passwd` is not one), and every size a whole number of bytes
// within the limit for what it points at, since the size bounds what is read.

export interface PullLimits {
  /** Largest manifest or index read, in bytes (setting maxManifestSize). */
  maxManifestBytes: number;
  /** Largest image config read into memory, in bytes (setting maxImageConfigSize). */
  maxConfigBytes: number;
}

// containerd's resolver refuses manifests over 4 * 1048 * 1048 bytes (remotes/docker
// MaxManifestSize) and has no config limit of its own; 8 MiB is far above any real config.
export const defaultPullLimits: PullLimits = { maxManifestBytes: 4 * 1024 * 1024, maxConfigBytes: 8 * 1024 * 1024 };

export interface SizeLimit {
  bytes: number;
  /** What the limit is for and the setting that changes it, for the message. */
  what: 'manifests' | 'image configs';
  setting: string;
}

export function manifestLimit(limits: PullLimits): SizeLimit {
  return { bytes: limits.maxManifestBytes, what: 'manifests', setting: 'maxManifestSize' };
}

export function configLimit(limits: PullLimits): SizeLimit {
  return { bytes: limits.maxConfigBytes, what: 'image configs', setting: 'maxImageConfigSize' };
}

/** `over the N-byte limit for manifests (maxManifestSize)` */
export function overLimit(limit: SizeLimit): string {
  return `over the ${limit.bytes}-byte limit for ${limit.what} (${limit.setting})`;
}

function invalid(what: string, field: string, why: string): BerthError {
  return new BerthError('invalid-argument', `${what}: ${field}: ${why}`);
}

/** Refuse a size over its limit, before anything of that size is read. */
export function checkWithinLimit(size: number, limit: SizeLimit, what: string): void {
  if (size > limit.bytes) throw new BerthError('resource-exhausted', `${what}: ${size} bytes is ${overLimit(limit)}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A descriptor with its digest and size checked (`field` names it in errors: `layers[2]`). */
export function checkDescriptor(value: unknown, what: string, field: string, limit?: SizeLimit): Descriptor {
  if (!isObject(value)) throw invalid(what, field, 'expected a descriptor (mediaType, digest, size)');
  const { mediaType, digest, size, platform, annotations } = value;
  if (mediaType !== undefined && typeof mediaType !== 'string') throw invalid(what, `${field}.mediaType`, 'expected a string');
  if (typeof digest !== 'string') throw invalid(what, `${field}.digest`, digest === undefined ? 'missing' : 'expected a string');
  checkDigest(digest, `${what}: ${field}.digest`);
  if (size === undefined) throw invalid(what, `${field}.size`, 'missing');
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(what, `${field}.size`, `${JSON.stringify(size)} is not a size (a whole number of bytes, 0 or more)`);
  if (limit) checkWithinLimit(size, limit, `${what}: ${field}.size`);
  const out: Descriptor = { mediaType: mediaType ?? '', digest, size };
  if (platform !== undefined) {
    if (!isObject(platform) || typeof platform.os !== 'string' || typeof platform.architecture !== 'string' || (platform.variant !== undefined && typeof platform.variant !== 'string')) {
      throw invalid(what, `${field}.platform`, 'expected os and architecture strings (and a variant string)');
    }
    out.platform = platform as unknown as NonNullable<Descriptor['platform']>;
  }
  if (isObject(annotations)) out.annotations = annotations as Record<string, string>;
  return out;
}

export type ManifestDocument = { kind: 'index'; manifests: Descriptor[] } | { kind: 'image'; config: Descriptor; layers: Descriptor[] };

/** An index (its entries checked) or an image manifest (config and layers checked). */
export function parseManifestDocument(bytes: Buffer, mediaType: string, what: string, limits: PullLimits): ManifestDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new BerthError('invalid-argument', `${what}: not JSON`);
  }
  if (!isObject(doc)) throw new BerthError('invalid-argument', `${what}: expected a JSON object`);
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid(what, 'manifests', 'an index needs a list of manifests');
    return { kind: 'index', manifests: doc.manifests.map((m, i) => checkDescriptor(m, what, `manifests[${i}]`, manifestLimit(limits))) };
  }
  if (doc.config === undefined) throw invalid(what, 'config', 'missing (an image manifest names its config)');
  const config = checkDescriptor(doc.config, what, 'config', configLimit(limits));
  if (!Array.isArray(doc.layers)) throw invalid(what, 'layers', 'expected a list of layer descriptors');
  return { kind: 'image', config, layers: doc.layers.map((l, i) => checkDescriptor(l, what, `layers[${i}]`)) };
}

/** The diff IDs of an image config (rootfs.diff_ids), each a digest: they become snapshot keys. */
export function imageConfigDiffIds(bytes: Buffer, what: string): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new BerthError('invalid-argument', `${what}: not JSON`);
  }
  const rootfs = isObject(doc) ? doc.rootfs : undefined;
  const diffIds = isObject(rootfs) ? rootfs.diff_ids : undefined;
  if (diffIds === undefined) return [];
  if (!Array.isArray(diffIds)) throw invalid(what, 'rootfs.diff_ids', 'expected a list of digests');
  return diffIds.map((d, i) => {
    if (typeof d !== 'string') throw invalid(what, `rootfs.diff_ids[${i}]`, 'expected a digest string');
    checkDigest(d, `${what}: rootfs.diff_ids[${i}]`);
    return d;
  });
}
