import { buildTar, type TarEntry } from './tar.js';
import { imageBlobs, MediaType, type BuiltImage } from './image.js';

// Image archives, the two formats `docker save` / `ctr images export` write and
// `ctr images import` / `berth images import` read: an OCI image layout in a tar (index.json
// naming each image by its full reference), and Docker's (manifest.json with RepoTags).

/** An OCI archive: oci-layout, index.json and blobs/sha256/*, each image named by `ref`. */
export function ociArchive(images: readonly { ref: string; image: BuiltImage }[]): Buffer {
  const entries: TarEntry[] = [{ type: 'file', path: 'oci-layout', data: JSON.stringify({ imageLayoutVersion: '1.0.0' }) }];
  const seen = new Set<string>();
  entries.push({ type: 'dir', path: 'blobs' }, { type: 'dir', path: 'blobs/sha256' });
  for (const { image } of images) {
    for (const blob of imageBlobs(image)) {
      if (seen.has(blob.digest)) continue;
      seen.add(blob.digest);
      entries.push({ type: 'file', path: `blobs/sha256/${blob.digest.slice('sha256:'.length)}`, data: blob.bytes });
    }
  }
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: images.map(({ ref, image }) => ({
      mediaType: image.manifest.mediaType,
      digest: image.manifest.digest,
      size: image.manifest.bytes.length,
      // containerd names the image by its own annotation, other tools by the OCI one.
      annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': ref.slice(ref.lastIndexOf(':') + 1) },
    })),
  };
  entries.push({ type: 'file', path: 'index.json', data: JSON.stringify(index) });
  return buildTar(entries);
}

/** A Docker archive (docker save): manifest.json, the configs and the layers, tagged `repoTag`. */
export function dockerArchive(images: readonly { repoTag: string; image: BuiltImage }[]): Buffer {
  const entries: TarEntry[] = [];
  const seen = new Set<string>();
  const add = (path: string, data: Buffer): void => {
    if (seen.has(path)) return;
    seen.add(path);
    entries.push({ type: 'file', path, data });
  };
  const manifest = images.map(({ repoTag, image }) => {
    const config = `${image.config.digest.slice('sha256:'.length)}.json`;
    add(config, image.config.bytes);
    const layers = image.layers.map((l) => {
      const dir = l.digest.slice('sha256:'.length);
      add(`${dir}/layer.tar`, l.bytes);
      return `${dir}/layer.tar`;
    });
    return { Config: config, RepoTags: [repoTag], Layers: layers };
  });
  entries.push({ type: 'file', path: 'manifest.json', data: JSON.stringify(manifest) });
  return buildTar(entries);
}
