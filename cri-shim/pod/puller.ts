import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { BerthError } from '../../lib/errors.js';
import type { AuthConfig } from '../../proto/gen/runtime/v1/api.js';
import { contentInfo, setContentLabels, writeBlob } from '../containerd/content.js';
import { putImageRecord } from '../containerd/images.js';
import { leaseResources, withLease } from '../containerd/leases.js';
import { unpackLayers } from '../containerd/snapshots.js';
import { RegistryClient } from '../registry/client.js';
import { imageConfigDiffIds, parseManifestDocument } from '../registry/manifest.js';
import type { Descriptor } from '../registry/platform.js';
import { type ImageReference, parseReference } from '../registry/reference.js';
import type { CriRuntime } from '../runtime.js';
import { localPauseImage } from '../config.js';
import { provideLocalPause } from './local-pause.js';
import { PullProgressWatch } from './pull-progress.js';
import { hostArchitecture, type ImageEntry, managedLabel } from '../store/image-store.js';

// Pulling an image (PullImage, and the sandbox image at RunPodSandbox): resolve the reference
// (mirrors from hosts.toml, auth from the request), fetch the manifest (choosing this platform
// from an index), then the config and the layers in parallel into containerd's content store
// (each blob's digest verified as it streams), unpack the layers into snapshots, and name the
// image by tag, digest reference and ID. A lease keeps the partial pull from garbage
// collection; gc.ref labels then keep the finished image's parts alive. Every descriptor is
// checked (registry/manifest.ts) before its digest is used in a URL or a containerd key, and
// manifests and the config are read within the limits of the settings.

/** Pulls under way, per runtime: a CRI component restarted in berthd never joins its predecessor's pull. */
const inFlightByRuntime = new WeakMap<CriRuntime, Map<string, Promise<ImageEntry>>>();

/** The image named `ref`, pulled first if it is not here (the sandbox image; berth's own pause image is made, never pulled). */
export async function ensureImage(rt: CriRuntime, ref: string): Promise<ImageEntry> {
  const known = rt.images.find(ref);
  if (known) return known;
  if (ref === localPauseImage) return provideLocalPause(rt);
  return pullReference(rt, ref, undefined);
}

/** Concurrent pulls of one reference share one download. */
export function pullReference(rt: CriRuntime, ref: string, auth: AuthConfig | undefined): Promise<ImageEntry> {
  let parsed: ImageReference;
  try {
    parsed = parseReference(ref);
  } catch (err) {
    throw new BerthError('invalid-argument', `image.image: ${(err as Error).message}`);
  }
  const key = parsed.normalized;
  let inFlight = inFlightByRuntime.get(rt);
  if (!inFlight) inFlightByRuntime.set(rt, (inFlight = new Map()));
  const running = inFlight.get(key);
  if (running) return running;
  const pulls = inFlight;
  const pull = doPull(rt, parsed, auth).finally(() => pulls.delete(key));
  inFlight.set(key, pull);
  return pull;
}

async function doPull(rt: CriRuntime, ref: ImageReference, auth: AuthConfig | undefined): Promise<ImageEntry> {
  const started = Date.now();
  const limits = { maxManifestBytes: rt.config.maxManifestSize, maxConfigBytes: rt.config.maxImageConfigSize };
  const progressMs = rt.config.imagePullProgressTimeout;
  // The transport's own idle limit per connection (30s) would cut a stall first; with a longer
  // progress timeout it waits a little past it, so the pull fails with the stall's message.
  const registry = new RegistryClient({ hostsDir: rt.config.registryConfigDir, auth, limits, timeoutMs: progressMs > 0 ? Math.max(30_000, progressMs + 5_000) : 30_000 });
  const watch = new PullProgressWatch(progressMs, `image ${ref.normalized}`);
  // Bytes this pull took from the registry (blobs already in the content store are skipped), for /metrics.
  const fetched = { bytes: 0 };
  const clock = process.hrtime.bigint();
  const seconds = (): number => Number(process.hrtime.bigint() - clock) / 1e9;
  try {
    const entry = await pullWith(rt, registry, ref, started, watch, fetched);
    rt.operations.observePull(seconds(), fetched.bytes);
    return entry;
  } catch (err) {
    rt.operations.observePull(seconds(), undefined);
    // A stalled pull fails with the stall, whatever the cancelled transfers said as they went.
    if (watch.error) {
      rt.log.warn({ image: ref.normalized, err: watch.error.message }, 'image pull cancelled: no progress');
      throw watch.error;
    }
    throw err;
  } finally {
    watch.stop();
    registry.close();
  }
}

async function pullWith(rt: CriRuntime, registry: RegistryClient, ref: ImageReference, started: number, watch: PullProgressWatch, fetched: { bytes: number }): Promise<ImageEntry> {
  const { client } = rt;
  const resolved = await watch.guard(() => registry.resolve(ref));
  const entry = await withLease(client, async (lease) => {
    const top = await watch.guard(() => registry.fetchManifest(ref, { mediaType: resolved.mediaType, digest: resolved.digest, size: resolved.size }));
    let manifestBytes = top.bytes;
    fetched.bytes += top.bytes.length;
    let manifestDesc: Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length };
    let doc = parseManifestDocument(top.bytes, top.mediaType, `image ${ref.normalized}: manifest ${top.digest}`, registry.limits);
    let indexDesc: Descriptor | undefined;
    if (doc.kind === 'index') {
      indexDesc = manifestDesc;
      const chosen = registry.selectPlatform(doc, { os: 'linux', architecture: hostArchitecture });
      const child = await watch.guard(() => registry.fetchManifest(ref, chosen));
      manifestBytes = child.bytes;
      fetched.bytes += child.bytes.length;
      manifestDesc = { mediaType: child.mediaType, digest: child.digest, size: child.bytes.length };
      doc = parseManifestDocument(child.bytes, child.mediaType, `image ${ref.normalized}: manifest ${child.digest}`, registry.limits);
      if (doc.kind === 'index') throw new BerthError('invalid-argument', `image ${ref.normalized}: index ${indexDesc.digest} names another index (${child.digest}) for ${hostArchitecture}`);
    }
    const { config, layers } = doc;
    // What this pull finds already there is its own from now on (see leaseResources).
    const documents = indexDesc ? [indexDesc, manifestDesc] : [manifestDesc];
    await leaseResources(client, lease, [...documents, config, ...layers].map((d) => ({ id: d.digest, type: 'content' })));

    // Blobs first, the documents that reference them after, so no label ever points at nothing.
    const fetchBlob = async (desc: Descriptor): Promise<Readable> => watch.track(await watch.guard(() => registry.fetchBlob(ref, desc)));
    const configBytes = await buffer(await fetchBlob(config));
    fetched.bytes += configBytes.length;
    await writeBlob(client, config.digest, configBytes, { size: configBytes.length, lease });
    await fetchLayers(rt, layers, lease, fetchBlob, fetched);
    const diffIds = imageConfigDiffIds(configBytes, `image ${ref.normalized}: config ${config.digest}`);
    if (diffIds.length !== layers.length) {
      throw new BerthError('invalid-argument', `image ${ref.normalized}: config lists ${diffIds.length} diff IDs for ${layers.length} layers`);
    }
    const topChain = await unpackLayers(
      client,
      layers.map((l, i) => ({ descriptor: { mediaType: l.mediaType, digest: l.digest, size: BigInt(l.size), annotations: {} }, diffId: diffIds[i]! })),
      { lease, snapshotter: rt.config.snapshotter },
    );
    await setContentLabels(client, config.digest, { [`containerd.io/gc.ref.snapshot.${rt.config.snapshotter}`]: topChain }, { lease });
    const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': config.digest };
    layers.forEach((l, i) => (manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest));
    await writeBlob(client, manifestDesc.digest, manifestBytes, { size: manifestBytes.length, labels: manifestLabels, lease });
    await setContentLabels(client, manifestDesc.digest, manifestLabels, { lease });
    if (indexDesc) {
      const indexLabels = { 'containerd.io/gc.ref.content.m.0': manifestDesc.digest };
      await writeBlob(client, indexDesc.digest, top.bytes, { size: top.bytes.length, labels: indexLabels, lease });
      await setContentLabels(client, indexDesc.digest, indexLabels, { lease });
    }

    const target = indexDesc ?? manifestDesc;
    const targetDescriptor = { mediaType: target.mediaType, digest: target.digest, size: BigInt(target.size), annotations: {} };
    const names = [`${ref.name}@${target.digest}`, config.digest];
    if (ref.tag && !ref.digest) names.unshift(ref.normalized);
    for (const name of names) await putImageRecord(client, name, targetDescriptor, { [managedLabel]: 'managed' }, { lease });
    const entry = await rt.images.entryFor(target.digest, target.mediaType);
    for (const name of names) rt.images.addName(entry, name);
    return entry;
  });
  rt.log.info({ image: ref.normalized, id: entry.id, ms: Date.now() - started }, 'image pulled');
  return entry;
}

/** Layers not yet in the content store, a few at a time, each streamed straight into containerd. */
async function fetchLayers(rt: CriRuntime, layers: Descriptor[], lease: string, fetchBlob: (desc: Descriptor) => Promise<Readable>, fetched: { bytes: number }): Promise<void> {
  const queue = [...layers];
  const worker = async (): Promise<void> => {
    for (let layer = queue.shift(); layer; layer = queue.shift()) {
      if (await contentInfo(rt.client, layer.digest)) continue;
      const stream = await fetchBlob(layer);
      await writeBlob(rt.client, layer.digest, stream, { size: layer.size, lease });
      fetched.bytes += layer.size;
    }
  };
  await Promise.all(Array.from({ length: Math.min(rt.config.maxConcurrentDownloads, layers.length) }, worker));
}
