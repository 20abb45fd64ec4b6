import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildImage, type BuiltImage } from '../../lib/oci/image.js';
import { type CriWorld, type CriWorldOptions, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// Pull controls (issue 19, item 9): configured pinned-image patterns (CRI-O's pinned_images)
// mark images pinned in ListImages and ImageStatus, and a pinned image can still be removed
// explicitly, as in CRI-O; imagePullProgressTimeout cancels a pull whose registry stops sending
// mid-layer, with nothing of it left in containerd, while a pull that only pauses goes through.

/** A registry that serves one image, and sends its layer in halves with `gap` between them (Infinity: never the second half). */
interface SlowRegistry {
  host: string;
  gapMs: number;
  /** Layer responses the client closed before the end. */
  abandoned: number;
  server: Server;
}

async function startSlowRegistry(image: BuiltImage): Promise<SlowRegistry> {
  const layer = image.layers[0]!;
  const held: ServerResponse[] = [];
  const reg: SlowRegistry = { host: '', gapMs: Infinity, abandoned: 0, server: createServer() };
  reg.server.on('request', (req, res) => {
    const path = req.url ?? '';
    const send = (status: number, body: Buffer, type = 'application/octet-stream', digest?: string): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': body.length, ...(digest ? { 'docker-content-digest': digest } : {}) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (path === '/v2/') return send(200, Buffer.from('{}'), 'application/json');
    if (/^\/v2\/stall\/app\/manifests\/(1|sha256:)/.test(path)) return send(200, image.manifest.bytes, image.manifest.mediaType, image.manifest.digest);
    if (path === `/v2/stall/app/blobs/${image.config.digest}`) return send(200, image.config.bytes, image.config.mediaType, image.config.digest);
    if (path === `/v2/stall/app/blobs/${layer.digest}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': layer.bytes.length });
      const half = layer.bytes.length >> 1;
      res.write(layer.bytes.subarray(0, half));
      res.once('close', () => {
        if (!res.writableFinished) reg.abandoned++;
      });
      if (reg.gapMs === Infinity) return void held.push(res);
      setTimeout(() => res.end(layer.bytes.subarray(half)), reg.gapMs);
      return;
    }
    send(404, Buffer.from('{"errors":[{"code":"NOT_FOUND"}]}'), 'application/json');
  });
  reg.server.on('close', () => held.forEach((r) => r.destroy()));
  await new Promise<void>((resolve) => reg.server.listen(0, '127.0.0.1', resolve));
  reg.host = `127.0.0.1:${(reg.server.address() as AddressInfo).port}`;
  return reg;
}

// One layer of incompressible bytes: its first half is well past a chunk, so containerd has a
// partial ingest when the registry stalls.
const stalledImage = buildImage({ layers: [[{ type: 'file', path: 'blob.bin', data: randomBytes(1 << 20) }]], config: {} });

describe.skipIf(!isRoot)('berth-cri pull controls', () => {
  let world: CriWorld;
  let slow: SlowRegistry;
  const options: CriWorldOptions & { flags: string[]; hostsToml: Record<string, string> } = { flags: ['--image-pull-progress-timeout', '2s'], hostsToml: {} };

  beforeAll(async () => {
    slow = await startSlowRegistry(stalledImage);
    options.hostsToml[slow.host] = `server = "http://${slow.host}"\n`;
  });
  useCriWorld(['busybox', 'httpd', 'busybox-uid'], (w) => (world = w), options);
  beforeAll(async () => {
    // The patterns name the world's registry, known only now: berth-cri restarts with them.
    options.flags.push('--pinned-images', `${world.registry.host}/berth-test/busybox:*,*HTTPD*`);
    await world.killCri();
    await world.startCri();
  });
  afterAll(async () => {
    await new Promise((resolve) => slow?.server.close(resolve));
    slow?.server.closeAllConnections();
  });

  const ctr = (...args: string[]): string => execFileSync('ctr', ['-a', world.containerd.socket, '-n', 'berth.io', ...args], { encoding: 'utf8' });
  const pinnedByTag = async (): Promise<Record<string, boolean>> => {
    const { images } = await world.images.listImages({ filter: undefined });
    return Object.fromEntries(images.flatMap((i) => i.repoTags.map((t) => [t.slice(world.registry.host.length + 1), i.pinned])));
  };

  it('reports the images the patterns match pinned, by glob and by keyword (ignoring case), and the sandbox image', async () => {
    // A pod, so the sandbox image is here.
    await world.runtime.runPodSandbox({ config: podSandboxConfig(world, 'pinned'), runtimeHandler: '' });
    expect(await pinnedByTag()).toEqual({
      'berth-test/busybox:1': true,
      'berth-test/httpd:1': true,
      // "busybox:*" is a prefix: busybox-uid does not begin with it.
      'berth-test/busybox-uid:1': false,
      'berth-test/pause:1': true,
    });
    for (const ref of [world.image('busybox'), world.image('httpd')]) {
      const { image } = await world.images.imageStatus({ image: imageSpec(ref), verbose: false });
      expect(image?.pinned, ref).toBe(true);
      expect((await world.images.imageStatus({ image: imageSpec(image!.id), verbose: false })).image?.pinned).toBe(true);
    }
    expect((await world.images.imageStatus({ image: imageSpec(world.image('busybox-uid')), verbose: false })).image?.pinned).toBe(false);
  });

  it('removes a pinned image when asked (pinning only keeps it from kubelet\'s GC, as in CRI-O)', async () => {
    await world.images.removeImage({ image: imageSpec(world.image('httpd')) });
    expect((await world.images.imageStatus({ image: imageSpec(world.image('httpd')), verbose: false })).image).toBeUndefined();
    expect(Object.keys(await pinnedByTag())).not.toContain('berth-test/httpd:1');
  });

  it('cancels a pull whose registry stops mid-layer with DeadlineExceeded naming the image and the timeout, and leaves nothing of it', async () => {
    const ref = `${slow.host}/stall/app:1`;
    slow.gapMs = Infinity;
    // berth-cri keeps one spare temporary lease for its next CreateContainer; the pull's own must not outlive it.
    const berthLeases = (): string[] => ctr('leases', 'ls').split('\n').filter((l) => l.startsWith('berth-')).map((l) => l.split(' ')[0]!);
    const before = berthLeases();
    const pull = world.images.pullImage({ image: imageSpec(ref), auth: undefined, sandboxConfig: undefined });
    await expect(pull).rejects.toMatchObject({
      code: grpcStatus.DEADLINE_EXCEEDED,
      details: `image ${ref}: no data from the registry for 2s (imagePullProgressTimeout); pull cancelled`,
    });
    // berth-cri hung up on the stalled layer, and nothing half-written stays in containerd.
    await vi.waitFor(() => expect(slow.abandoned).toBe(1), { timeout: 5000, interval: 50 });
    await vi.waitFor(() => expect(ctr('content', 'active').trim().split('\n').slice(1).filter(Boolean)).toEqual([]), { timeout: 5000, interval: 100 });
    await vi.waitFor(() => expect(berthLeases().filter((l) => !before.includes(l))).toEqual([]), { timeout: 5000, interval: 100 });
    expect(ctr('images', 'ls', '-q').split('\n').filter((n) => n.includes('stall/app'))).toEqual([]);
    expect((await world.images.imageStatus({ image: imageSpec(ref), verbose: false })).image).toBeUndefined();
    expect(ctr('snapshots', 'ls').split('\n').filter((l) => l.startsWith('extract-'))).toEqual([]);
  });

  it('lets a pull through whose registry only pauses for less than the timeout', async () => {
    const ref = `${slow.host}/stall/app:1`;
    slow.gapMs = 500;
    const { imageRef } = await world.images.pullImage({ image: imageSpec(ref), auth: undefined, sandboxConfig: undefined });
    expect(imageRef).toBe(stalledImage.config.digest);
    await world.images.removeImage({ image: imageSpec(ref) });
  });
});
