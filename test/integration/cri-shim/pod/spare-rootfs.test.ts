import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ContainerdClient } from '../../../../cri-shim/containerd/client.js';
import { unpackLayers } from '../../../../cri-shim/containerd/snapshots.js';
import { SpareRootfsPool } from '../../../../cri-shim/pod/spare-rootfs.js';
import { writeBlob } from '../../../../cri-shim/containerd/content.js';
import { imageBlobs, type BuiltImage } from '../../../../lib/oci/image.js';
import { type ContainerdWorld, spareSnapshotKeys, startContainerd } from '../../../../world/containerd.js';
import { testImages } from '../../../../world/images.js';
import { isRoot } from '../../../../world/netns.js';

// The pool of container rootfs snapshots prepared ahead, against a real containerd: what it
// holds is an active snapshot on the image's top layer and a lease labelled with its key, and
// every way a spare ends (taken, idle, pushed out, its image dropped, close, a failed prepare)
// leaves neither behind unless the caller took them.

describe.skipIf(!isRoot)('spare container rootfs pool', () => {
  let world: ContainerdWorld;
  let client: ContainerdClient;
  let busybox: string;
  let pause: string;
  const pools: SpareRootfsPool[] = [];
  const imagesLease = 'test-images';
  const warnings: string[] = [];
  const log = { debug: () => undefined, warn: (_fields: unknown, msg: string) => void warnings.push(msg) };

  const ctr = (...args: string[]): string => execFileSync('ctr', ['-a', world.socket, '-n', 'berth.io', ...args], { encoding: 'utf8' });
  /** Keys of the active snapshots. */
  const active = (): string[] => ctr('snapshots', 'ls').split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.at(-1) === 'Active').map((f) => f[0]!).sort();
  /** The snapshot keys named by spare leases. */
  const leased = (): string[] => spareSnapshotKeys(world.socket);
  const pool = (options: Partial<{ maxImages: number; idleMs: number }> = {}): SpareRootfsPool => {
    const p = new SpareRootfsPool(client, 'overlayfs', log, { maxImages: 4, idleMs: 60_000, ...options });
    pools.push(p);
    return p;
  };
  const unpack = async (image: BuiltImage): Promise<string> => {
    // Under a lease of the test's: the layers have no image record to keep them from the garbage collection.
    for (const blob of imageBlobs(image)) await writeBlob(client, blob.digest, blob.bytes, { size: blob.bytes.length, lease: imagesLease });
    return unpackLayers(client, image.layers.map((l) => ({ descriptor: { mediaType: l.mediaType, digest: l.digest, size: BigInt(l.bytes.length), annotations: {} }, diffId: l.diffId })), { lease: imagesLease });
  };
  /** Until `check` holds, or fail after 5 s. */
  const eventually = async (check: () => boolean, what: string): Promise<void> => {
    for (const until = Date.now() + 5000; !check(); await sleep(50)) if (Date.now() > until) throw new Error(`never: ${what}`);
  };

  beforeAll(async () => {
    world = await startContainerd();
    client = new ContainerdClient(world.socket, 'berth.io');
    await client.waitReady();
    ctr('leases', 'create', '--id', imagesLease);
    busybox = await unpack(testImages().busybox);
    pause = await unpack(testImages().pause);
  });

  afterEach(async () => {
    for (const p of pools.splice(0)) await p.close();
    warnings.length = 0;
    // Whatever a test took, it removed; what the pools held, close removed.
    expect(active()).toEqual([]);
    expect(leased()).toEqual([]);
  });

  afterAll(async () => {
    client?.close();
    await world?.stop();
  });

  it('holds one prepared rootfs per image, under a lease that names it, and hands it over once', async () => {
    const p = pool();
    expect(await p.take(busybox)).toBeUndefined();
    p.refill(busybox);
    p.refill(busybox);
    expect(p.size).toBe(1);
    await eventually(() => active().length === 1, 'a spare snapshot');
    const [key] = active();
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(leased()).toEqual([key]);
    expect(ctr('snapshots', 'ls').split('\n').find((l) => l.startsWith(key!))).toContain(busybox);

    const spare = await p.take(busybox);
    expect(spare?.id).toBe(key);
    expect(spare?.mounts[0]?.type).toBe('overlay');
    expect(spare?.lease.id).toMatch(/^berth-/);
    expect(p.size).toBe(0);
    expect(await p.take(busybox)).toBeUndefined();
    // The caller owns it now: nothing of the pool removes it.
    await p.close();
    expect(active()).toEqual([key]);
    ctr('snapshots', 'rm', key!);
    spare!.lease.release();
    await eventually(() => leased().length === 0, 'the taken lease deleted');
  });

  it('a take while the spare is being prepared waits for it', async () => {
    const p = pool();
    p.refill(busybox);
    const spare = await p.take(busybox);
    expect(spare).toBeDefined();
    expect(active()).toEqual([spare!.id]);
    ctr('snapshots', 'rm', spare!.id);
    spare!.lease.release();
    await eventually(() => leased().length === 0, 'the taken lease deleted');
  });

  it('removes a spare nobody took for idleMs', async () => {
    const p = pool({ idleMs: 300 });
    p.refill(busybox);
    await eventually(() => active().length === 1, 'a spare snapshot');
    await eventually(() => active().length === 0 && leased().length === 0, 'the idle spare removed with its lease');
    expect(p.size).toBe(0);
    expect(await p.take(busybox)).toBeUndefined();
  });

  it('keeps spares for maxImages images, the least recently used going first', async () => {
    const p = pool({ maxImages: 1 });
    p.refill(busybox);
    await eventually(() => active().length === 1, 'the busybox spare');
    const first = active()[0];
    p.refill(pause);
    expect(p.size).toBe(1);
    await eventually(() => active().length === 1 && active()[0] !== first, 'the pause spare in place of the busybox one');
    expect(await p.take(busybox)).toBeUndefined();
    expect(leased()).toEqual(active());
    expect(ctr('snapshots', 'ls').split('\n').find((l) => l.startsWith(active()[0]!))).toContain(pause);
  });

  it('makes none with maxImages 0, and none after close', async () => {
    const off = pool({ maxImages: 0 });
    off.refill(busybox);
    expect(off.size).toBe(0);
    const p = pool();
    await p.close();
    p.refill(busybox);
    expect(p.size).toBe(0);
    await sleep(200);
    expect(active()).toEqual([]);
  });

  it('drop removes the spare of one image and keeps the others', async () => {
    const p = pool();
    p.refill(busybox);
    p.refill(pause);
    await eventually(() => active().length === 2, 'two spares');
    await p.drop(busybox);
    expect(active()).toHaveLength(1);
    expect(ctr('snapshots', 'ls').split('\n').find((l) => l.startsWith(active()[0]!))).toContain(pause);
    expect(leased()).toEqual(active());
    await p.drop(busybox);
  });

  it('close removes spares still being prepared', async () => {
    const p = pool();
    p.refill(busybox);
    p.refill(pause);
    await p.close();
    expect(active()).toEqual([]);
    expect(leased()).toEqual([]);
  });

  it('a spare that cannot be prepared is logged and leaves no lease; the next take finds none', async () => {
    const p = pool();
    p.refill(`sha256:${'0'.repeat(64)}`);
    expect(await p.take(`sha256:${'0'.repeat(64)}`)).toBeUndefined();
    expect(warnings).toContain('cannot prepare a spare container rootfs');
    await eventually(() => leased().length === 0 && ctr('leases', 'ls', '-q').trim() === imagesLease, 'its lease deleted');
    expect(p.size).toBe(0);
  });
});
