import type { Image } from '../../proto/gen/github.com/containerd/containerd/api/services/images/v1/images.js';
import type { Descriptor } from '../../proto/gen/github.com/containerd/containerd/api/types/descriptor.js';
import { isAlreadyExists, isNotFound, type CallOptions, type ContainerdClient } from './client.js';

// containerd image records: a name (a tag or digest reference, or berth's image-ID record) that
// points at a manifest or index in the content store.

export type { Image };

export async function getImageRecord(client: ContainerdClient, name: string): Promise<Image | undefined> {
  try {
    const res = await client.unary<{ image?: Image }>('image get', (md, cb) => client.images.get({ name }, md, cb));
    return res.image;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function listImageRecords(client: ContainerdClient, filters: string[] = []): Promise<Image[]> {
  const res = await client.unary<{ images: Image[] }>('image list', (md, cb) => client.images.list({ filters }, md, cb));
  return res.images;
}

/** Point `name` at `target`, creating the record or moving an existing one (a re-pushed tag). */
export async function putImageRecord(client: ContainerdClient, name: string, target: Descriptor, labels: Record<string, string>, options: CallOptions = {}): Promise<Image> {
  const image: Image = { name, labels, target };
  try {
    const res = await client.unary<{ image?: Image }>('image create', (md, cb) => client.images.create({ image }, md, cb), options);
    return res.image!;
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    const res = await client.unary<{ image?: Image }>(
      'image update',
      (md, cb) => client.images.update({ image, updateMask: ['target', ...Object.keys(labels).map((k) => `labels.${k}`)] }, md, cb),
      options,
    );
    return res.image!;
  }
}

export async function deleteImageRecord(client: ContainerdClient, name: string): Promise<void> {
  try {
    await client.unary('image delete', (md, cb) => client.images.delete({ name, sync: false }, md, cb));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
