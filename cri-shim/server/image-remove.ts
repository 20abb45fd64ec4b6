import { BerthError } from '../../lib/errors.js';
import type { RemoveImageRequest, RemoveImageResponse } from '../../proto/gen/runtime/v1/api.js';
import { deleteImageRecord } from '../containerd/images.js';
import type { CriRuntime } from '../runtime.js';

/**
 * RemoveImage by any of its names removes the image with all its names (as containerd's CRI
 * does), and the container rootfs prepared ahead on it; snapshots and blobs go with containerd's
 * garbage collection. Absent is a success.
 */
export async function removeImage(rt: CriRuntime, req: RemoveImageRequest): Promise<RemoveImageResponse> {
  const ref = req.image?.image;
  if (!ref) throw new BerthError('invalid-argument', 'image.image is required');
  const entry = rt.images.find(ref);
  if (!entry) return {};
  // kubelet's image GC only removes unused images; anyone else asking gets told which container holds it.
  const user = rt.containers.all().find((c) => c.imageId === entry.id);
  if (user) throw new BerthError('failed-precondition', `image ${ref} (${entry.id}) is in use by container ${user.id} (${user.name}); remove the container first`);
  const mounter = rt.containers.all().find((c) => c.imageVolumes?.some((v) => v.imageId === entry.id));
  if (mounter) throw new BerthError('failed-precondition', `image ${ref} (${entry.id}) is in use as an image volume by container ${mounter.id} (${mounter.name}); remove the container first`);
  // A rootfs prepared ahead on it would keep its layers from the garbage collection.
  await rt.spareRootfs.drop(entry.topChainId);
  for (const name of rt.images.namesOf(entry)) await deleteImageRecord(rt.client, name);
  rt.images.remove(entry);
  rt.log.info({ image: entry.id }, 'image removed');
  return {};
}
