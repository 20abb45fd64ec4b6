import type { ListImagesRequest, ListImagesResponse } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';

// ListImages over the image index.

export function listImages(rt: CriRuntime, req: ListImagesRequest): ListImagesResponse {
  const wanted = req.filter?.image?.image;
  if (wanted) {
    const one = rt.images.find(wanted);
    return { images: one ? [rt.images.toCri(one, rt.images.isPinned(one.id, rt.config.sandboxImage))] : [] };
  }
  return { images: rt.images.all().map((e) => rt.images.toCri(e, rt.images.isPinned(e.id, rt.config.sandboxImage))) };
}
