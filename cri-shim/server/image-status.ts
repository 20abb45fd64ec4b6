import { BerthError } from '../../lib/errors.js';
import type { ImageStatusRequest, ImageStatusResponse } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';

// ImageStatus over the image index.

/** ImageStatus of an absent image is a success with no image (kubelet then pulls). */
export function imageStatus(rt: CriRuntime, req: ImageStatusRequest): ImageStatusResponse {
  const ref = req.image?.image;
  if (!ref) throw new BerthError('invalid-argument', 'image.image is required');
  const entry = rt.images.find(ref);
  if (!entry) return { image: undefined, info: {} };
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({ id: entry.id, manifestDigest: entry.manifestDigest, chainId: entry.topChainId, config: entry.config, layers: entry.layers.map((l) => ({ ...l, size: Number(l.size) })) });
  }
  return { image: rt.images.toCri(entry, rt.images.isPinned(entry.id, rt.config.sandboxImage)), info };
}
