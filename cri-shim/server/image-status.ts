import { statfs } from 'node:fs/promises';
import { BerthError } from '../../lib/errors.js';
import type {
  ImageFsInfoResponse,
  ImageStatusRequest,
  ImageStatusResponse,
  ListImagesRequest,
  ListImagesResponse,
  RemoveImageRequest,
  RemoveImageResponse,
} from '../../proto/gen/runtime/v1/api.js';
import { deleteImageRecord } from '../containerd/images.js';
import { nowNanos, type CriRuntime } from '../runtime.js';
import { findImage } from './image-ref.js';

// ListImages, ImageStatus, RemoveImage and ImageFsInfo over the image index.

function requireImage(spec: { image: string } | undefined, field: string): string {
  if (!spec?.image) throw new BerthError('invalid-argument', `${field} is required`);
  return spec.image;
}

export function listImages(rt: CriRuntime, req: ListImagesRequest): ListImagesResponse {
  const wanted = req.filter?.image?.image;
  if (wanted) {
    const one = findImage(rt, wanted);
    return { images: one ? [rt.images.toCri(one, isPinned(rt, one.id))] : [] };
  }
  return { images: rt.images.all().map((e) => rt.images.toCri(e, isPinned(rt, e.id))) };
}

function isPinned(rt: CriRuntime, id: string): boolean {
  return findImage(rt, rt.config.sandboxImage)?.id === id;
}

/** ImageStatus of an absent image is a success with no image (kubelet then pulls). */
export function imageStatus(rt: CriRuntime, req: ImageStatusRequest): ImageStatusResponse {
  const ref = requireImage(req.image, 'image.image');
  const entry = findImage(rt, ref);
  if (!entry) return { image: undefined, info: {} };
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({ id: entry.id, manifestDigest: entry.manifestDigest, chainId: entry.topChainId, config: entry.config, layers: entry.layers.map((l) => ({ ...l, size: Number(l.size) })) });
  }
  return { image: rt.images.toCri(entry, isPinned(rt, entry.id)), info };
}

/**
 * RemoveImage by any of its names removes the image with all its names (as containerd's CRI
 * does); snapshots and blobs go with containerd's garbage collection. Absent is a success.
 */
export async function removeImage(rt: CriRuntime, req: RemoveImageRequest): Promise<RemoveImageResponse> {
  const ref = requireImage(req.image, 'image.image');
  const entry = findImage(rt, ref);
  if (!entry) return {};
  for (const name of rt.images.namesOf(entry)) await deleteImageRecord(rt.client, name);
  rt.images.remove(entry);
  rt.log.info({ image: entry.id }, 'image removed');
  return {};
}

export async function imageFsInfo(rt: CriRuntime): Promise<ImageFsInfoResponse> {
  // The snapshotter's directory under containerd's root holds image layers and writable layers.
  const at = nowNanos();
  let used = 0n;
  for (const e of rt.images.all()) used += e.size;
  let inodes: bigint | undefined;
  try {
    const st = await statfs(rt.config.root, { bigint: true });
    inodes = st.files - st.ffree;
  } catch {
    inodes = undefined;
  }
  const usage = { timestamp: at, fsId: { mountpoint: rt.config.root }, usedBytes: { value: used }, inodesUsed: inodes === undefined ? undefined : { value: inodes } };
  return { imageFilesystems: [usage], containerFilesystems: [] };
}
