import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError } from '../../lib/errors.js';
import { buildImage, MediaType } from '../../lib/oci/image.js';
import { localPauseImage } from '../config.js';
import { setContentLabels, writeBlob } from '../containerd/content.js';
import { putImageRecord } from '../containerd/images.js';
import { withLease } from '../containerd/leases.js';
import { unpackLayers } from '../containerd/snapshots.js';
import type { CriRuntime } from '../runtime.js';
import { hostArchitecture, managedLabel, type ImageEntry } from '../store/image-store.js';

// The sandbox image an air-gapped node never has to pull: berth ships its own pause binary
// (cri-shim/pause/pause.c, built static into dist/pause/), and berth-cri makes the one-layer
// image from it in containerd itself, under a name no registry serves. It is the default
// sandboxImage (localPauseImage, config.ts); like any sandbox image it is pinned (never
// collected by kubelet).

/** esbuild defines this as true in dist/ bundles; unbound when running from source. */
declare const BERTH_BUNDLED: boolean | undefined;

/** dist/pause/berth-pause: next to the bundles (one directory below dist/), or the build output. */
export function pauseBinaryPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  if (typeof BERTH_BUNDLED !== 'undefined' && BERTH_BUNDLED) return join(here, '../pause/berth-pause');
  return join(here, '../../dist/pause/berth-pause');
}

let providing: Promise<ImageEntry> | undefined;

/** The local pause image, made in containerd if it is not there yet (concurrent callers share one). */
export function provideLocalPause(rt: CriRuntime): Promise<ImageEntry> {
  const known = rt.images.find(localPauseImage);
  if (known) return Promise.resolve(known);
  providing ??= makeLocalPause(rt).finally(() => (providing = undefined));
  return providing;
}

async function makeLocalPause(rt: CriRuntime): Promise<ImageEntry> {
  const binary = pauseBinaryPath();
  if (!existsSync(binary)) throw new BerthError('not-found', `sandboxImage ${localPauseImage} is made from berth's pause binary, and ${binary} is missing (a build without a C compiler?); set sandboxImage to a pause image a registry serves`);
  const image = buildImage({
    layers: [[{ type: 'file', path: 'pause', data: readFileSync(binary), mode: 0o755 }]],
    config: { Entrypoint: ['/pause'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Labels: { 'io.berth.image': 'pause' } },
    platform: { os: 'linux', architecture: hostArchitecture },
  });
  const { client } = rt;
  const snapshotter = rt.config.snapshotter;
  await withLease(client, async (lease) => {
    await writeBlob(client, image.config.digest, image.config.bytes, { size: image.config.bytes.length, lease });
    const layer = image.layers[0]!;
    await writeBlob(client, layer.digest, layer.bytes, { size: layer.bytes.length, lease });
    const top = await unpackLayers(client, [{ descriptor: { mediaType: layer.mediaType, digest: layer.digest, size: BigInt(layer.bytes.length), annotations: {} }, diffId: layer.diffId }], { lease, snapshotter });
    await setContentLabels(client, image.config.digest, { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: top }, { lease });
    const manifestLabels = { 'containerd.io/gc.ref.content.config': image.config.digest, 'containerd.io/gc.ref.content.l.0': layer.digest };
    await writeBlob(client, image.manifest.digest, image.manifest.bytes, { size: image.manifest.bytes.length, labels: manifestLabels, lease });
    await setContentLabels(client, image.manifest.digest, manifestLabels, { lease });
    const target = { mediaType: MediaType.ociManifest, digest: image.manifest.digest, size: BigInt(image.manifest.bytes.length), annotations: {} };
    for (const name of [localPauseImage, image.config.digest]) await putImageRecord(client, name, target, { [managedLabel]: 'managed' }, { lease });
  });
  const entry = await rt.images.entryFor(image.manifest.digest, MediaType.ociManifest);
  rt.images.addName(entry, localPauseImage);
  rt.images.addName(entry, image.config.digest);
  rt.log.info({ image: localPauseImage, id: entry.id }, 'made the local pause image from berth-pause');
  return entry;
}
