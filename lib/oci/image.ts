import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { buildTar, type TarEntry } from './tar.js';

// Builds OCI (or Docker v2 schema 2) images in memory from tar entries: gzip layers, the image
// config with its rootfs diff IDs, the manifest, and optionally an index over several platforms.
// Used by the test world and the demo, which have no internet and build their images locally.

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** The `config` part of an image config (the fields a runtime reads). */
export interface ImageRunConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  StopSignal?: string;
  ExposedPorts?: Record<string, object>;
  Labels?: Record<string, string>;
  Volumes?: Record<string, object>;
}

export interface Blob {
  digest: string;
  bytes: Buffer;
}

export interface BuiltImage {
  /** The manifest blob; push it under a tag or by digest. */
  manifest: Blob & { mediaType: string };
  config: Blob & { mediaType: string };
  layers: (Blob & { mediaType: string; diffId: string })[];
  platform: Platform;
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export interface ImageInput {
  layers: TarEntry[][];
  config: ImageRunConfig;
  format?: 'oci' | 'docker';
  platform?: Platform;
  /** Fixed for reproducible digests. */
  created?: string;
}

export function buildImage(input: ImageInput): BuiltImage {
  const docker = input.format === 'docker';
  const platform = input.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers = input.layers.map((entries) => {
    const tar = buildTar(entries);
    const gz = gzipSync(tar, { level: 6 });
    return { digest: sha256(gz), bytes: gz, diffId: sha256(tar), mediaType: docker ? MediaType.dockerLayerGzip : MediaType.ociLayerGzip };
  });
  const configBytes = json({
    created: input.created ?? '2026-01-01T00:00:00Z',
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config: input.config,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created: input.created ?? '2026-01-01T00:00:00Z', created_by: 'berth image builder' })),
  });
  const config = { digest: sha256(configBytes), bytes: configBytes, mediaType: docker ? MediaType.dockerConfig : MediaType.ociConfig };
  const manifestMediaType = docker ? MediaType.dockerManifest : MediaType.ociManifest;
  const manifestBytes = json({
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: { mediaType: config.mediaType, digest: config.digest, size: configBytes.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.bytes.length })),
  });
  return { manifest: { digest: sha256(manifestBytes), bytes: manifestBytes, mediaType: manifestMediaType }, config, layers, platform };
}

/** An image index (or Docker manifest list) over per-platform images. */
export function buildIndex(images: readonly BuiltImage[], format: 'oci' | 'docker' = 'oci'): Blob & { mediaType: string } {
  const mediaType = format === 'docker' ? MediaType.dockerManifestList : MediaType.ociIndex;
  const bytes = json({
    schemaVersion: 2,
    mediaType,
    manifests: images.map((img) => ({ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.bytes.length, platform: img.platform })),
  });
  return { digest: sha256(bytes), bytes, mediaType };
}

/** Every blob an image needs in a registry or content store, manifest last. */
export function imageBlobs(image: BuiltImage): Blob[] {
  return [...image.layers, image.config, image.manifest];
}
