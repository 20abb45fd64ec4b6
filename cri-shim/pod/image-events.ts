import { errorMessage } from '../../lib/errors.js';
import { ImageCreate, ImageDelete, ImageUpdate } from '../../proto/gen/github.com/containerd/containerd/api/events/image.js';
import type { Envelope } from '../../proto/gen/github.com/containerd/containerd/api/services/events/v1/events.js';
import { getImageRecord } from '../containerd/images.js';
import { withLease } from '../containerd/leases.js';
import { setContentLabels } from '../containerd/content.js';
import { statSnapshot, unpackLayers } from '../containerd/snapshots.js';
import type { CriRuntime } from '../runtime.js';
import type { ImageEntry } from '../store/image-store.js';

// Images that arrive without berth-cri: `ctr images import`, `berth images import`, a tag made
// by another client. berth-cri adopts every image in its containerd namespace (as containerd's
// own CRI does in k8s.io), and follows containerd's image events so that one created, moved or
// deleted by any client is listed, or gone, within moments; a lost event stream is followed by
// a full reload, so nothing missed while it was down stays missed.

const resubscribeMs = 1000;

export class ImageEventFollower {
  private stream?: ReturnType<CriRuntime['client']['events']['subscribe']>;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  /** Events are applied one at a time, in the order containerd sent them. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly rt: CriRuntime) {}

  start(): void {
    if (this.stopped) return;
    const { client } = this.rt;
    const filter = `namespace==${client.namespace},topic~="^/images/"`;
    const stream = client.events.subscribe({ filters: [filter] }, client.metadata());
    this.stream = stream;
    stream.on('data', (envelope: Envelope) => {
      this.queue = this.queue.then(() => this.apply(envelope)).catch((err: unknown) => this.rt.log.warn({ topic: envelope.topic, err: errorMessage(err) }, 'could not follow an image event'));
    });
    const lost = (why: string): void => {
      if (this.stream !== stream || this.stopped) return;
      this.stream = undefined;
      this.rt.log.warn({ why }, 'containerd image events lost; subscribing again and reloading the images');
      this.timer = setTimeout(() => {
        this.start();
        this.queue = this.queue.then(() => this.rt.images.load()).catch((err: unknown) => this.rt.log.warn({ err: errorMessage(err) }, 'reloading the images failed'));
      }, resubscribeMs);
    };
    stream.on('error', (err: Error) => lost(err.message));
    stream.on('end', () => lost('stream ended'));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stream?.cancel();
    this.stream = undefined;
  }

  /** Settles once every event received so far has been applied (for tests and shutdown). */
  settled(): Promise<void> {
    return this.queue;
  }

  private async apply(envelope: Envelope): Promise<void> {
    const value = envelope.event?.value;
    if (!value) return;
    if (envelope.topic === '/images/delete') {
      const { name } = ImageDelete.decode(value);
      if (this.rt.images.forgetName(name)) this.rt.log.info({ image: name }, 'image removed by another client');
      return;
    }
    const name = envelope.topic === '/images/create' ? ImageCreate.decode(value).name : envelope.topic === '/images/update' ? ImageUpdate.decode(value).name : undefined;
    if (name === undefined) return;
    const record = await getImageRecord(this.rt.client, name);
    if (!record?.target) {
      this.rt.images.forgetName(name);
      return;
    }
    const known = this.rt.images.find(name);
    const entry = await this.rt.images.entryFor(record.target.digest, record.target.mediaType);
    if (known?.id === entry.id && this.rt.images.namesOf(entry).includes(name)) return;
    // The client that made the record may still be unpacking it (ctr creates the record first):
    // adopting the name does not wait for, or depend on, our own unpack.
    await ensureUnpacked(this.rt, entry).catch((err: unknown) => this.rt.log.warn({ image: name, err: errorMessage(err) }, 'cannot unpack an adopted image yet; CreateContainer will say so if it stays so'));
    this.rt.images.addName(entry, name);
    this.rt.log.info({ image: name, id: entry.id }, 'image adopted from containerd');
  }
}

/**
 * A container's rootfs is a snapshot of the image's top layer: unpack an adopted image that
 * arrived without one (imported with --no-unpack, or for another snapshotter), and keep the
 * snapshot referenced from the image config so containerd's garbage collector leaves it.
 */
export async function ensureUnpacked(rt: CriRuntime, entry: ImageEntry): Promise<void> {
  const snapshotter = rt.config.snapshotter;
  if (entry.topChainId === '' || (await statSnapshot(rt.client, entry.topChainId, snapshotter))) return;
  await withLease(rt.client, async (lease) => {
    const top = await unpackLayers(
      rt.client,
      entry.layers.map((l, i) => ({ descriptor: { mediaType: l.mediaType, digest: l.digest, size: l.size, annotations: {} }, diffId: entry.diffIds[i]! })),
      { lease, snapshotter },
    );
    await setContentLabels(rt.client, entry.id, { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: top }, { lease });
  });
  rt.log.info({ id: entry.id }, 'unpacked an adopted image');
}
