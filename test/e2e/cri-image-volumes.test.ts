import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus } from '@grpc/grpc-js';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { buildImage } from '../../lib/oci/image.js';
import { unmountAll } from '../../lib/mount.js';
import { Mount, type ContainerConfig } from '../../proto/gen/runtime/v1/api.js';
import { type CriWorld, containerConfig, imageSpec, podSandboxConfig, pushImage } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// Image volumes (CRI Mount.image, kubelet's `volumes[].image`): the image, pulled first, shows
// read-only at the container path, whole or a sub path of it; the image cannot be removed
// while a container shows it; removing the container, or a kill -9 of berth-cri and its
// restart, leaves no mount and no view snapshot behind.

// Two layers (the view is an overlay of both), with a symlink that stays inside and one that leads out.
const data = buildImage({
  layers: [
    [
      { type: 'dir', path: 'data' },
      { type: 'file', path: 'data/hello.txt', data: 'hello from an image volume\n' },
      { type: 'dir', path: 'etc' },
      { type: 'dir', path: 'etc/conf' },
      { type: 'file', path: 'etc/conf/app.conf', data: 'answer=42\n' },
    ],
    [
      { type: 'file', path: 'data/second.txt', data: 'from the second layer\n' },
      { type: 'symlink', path: 'conf', target: 'etc/conf' },
      { type: 'symlink', path: 'out', target: '../../../..' },
    ],
  ],
  config: {},
});

describe.skipIf(!isRoot)('berth-cri image volumes', () => {
  let world: CriWorld;
  let dataRef = '';
  useCriWorld(['busybox', 'pause'], (w) => (world = w));

  beforeAll(async () => {
    await pushImage(world.registry.host, 'berth-test/data', '1', data);
    dataRef = world.image('data');
    await world.images.pullImage({ image: imageSpec(dataRef), auth: undefined, sandboxConfig: undefined });
  });

  const volume = (containerPath: string, image: string, over: Partial<Mount> = {}): Mount =>
    Mount.fromPartial({ containerPath, image: imageSpec(image), readonly: true, ...over });
  const sleeper = (mounts: Mount[]): ContainerConfig => containerConfig('main', world.image('busybox'), { command: ['sleep', '3600'], mounts });
  const exec = async (containerId: string, script: string): Promise<{ out: string; err: string; code: number }> => {
    const r = await world.runtime.execSync({ containerId, cmd: ['sh', '-c', script], timeout: 10n });
    return { out: Buffer.from(r.stdout).toString(), err: Buffer.from(r.stderr).toString(), code: r.exitCode };
  };
  const volumesRoot = (): string => join(world.dir, 'state', 'image-volumes');
  /** Host mounts under berth-cri's image volume directory. */
  const hostMounts = (): string[] =>
    readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(`${volumesRoot()}/`));
  /** Image volume view snapshots in berth-cri's namespace, once none is left or `waitMs` has passed. */
  const views = async (waitMs = 5000): Promise<string[]> => {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const out = execFileSync('ctr', ['-a', world.containerd.socket, '-n', 'berth.io', 'snapshots', 'ls'], { encoding: 'utf8' });
      const left = out.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0] ?? '').filter((k) => k.startsWith('berth-imgvol-'));
      if (left.length === 0 || Date.now() > deadline) return left;
      await sleep(100);
    }
  };
  const imageIdOf = async (ref: string): Promise<string> => (await world.images.imageStatus({ image: imageSpec(ref), verbose: false })).image!.id;

  it('shows the image read-only at the container path: both layers, a sub path, a one-layer image', async () => {
    const { id } = await startContainer(
      world,
      sleeper([volume('/vol', dataRef), volume('/conf', dataRef, { imageSubPath: 'conf' }), volume('/pause-image', world.image('pause'))]),
    );
    expect(await exec(id, 'cat /vol/data/hello.txt /vol/data/second.txt')).toMatchObject({ out: 'hello from an image volume\nfrom the second layer\n', code: 0 });
    // The sub path went through a symlink inside the image: /conf is etc/conf itself.
    expect(await exec(id, 'cat /conf/app.conf; ls /conf')).toMatchObject({ out: 'answer=42\napp.conf\n', code: 0 });
    expect((await exec(id, 'ls /pause-image')).out).toBe('pause\n');
    for (const path of ['/vol/new', '/vol/data/hello.txt', '/conf/app.conf', '/pause-image/x']) {
      const w = await exec(id, `echo x > ${path}`);
      expect(w.code, path).not.toBe(0);
      expect(w.err, path).toMatch(/Read-only file system/);
    }
    const mounts = (await exec(id, 'cat /proc/mounts')).out.split('\n').filter((l) => / \/(vol|conf|pause-image) /.test(l));
    expect(mounts).toHaveLength(3);
    for (const m of mounts) expect(m.split(' ')[3]!.split(',')).toContain('ro');
    // One host mount and one view per volume.
    expect(hostMounts()).toHaveLength(3);
    expect(await views(0)).toHaveLength(3);
  });

  it('refuses a missing sub path, one that leads out of the image, and an image not pulled, naming the field, and leaves nothing behind', async () => {
    const pod = podSandboxConfig(world, 'imgvol-refused');
    const { podSandboxId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler: '' });
    const create = (mounts: Mount[]) => world.runtime.createContainer({ podSandboxId, config: sleeper(mounts), sandboxConfig: pod });
    await expect(create([volume('/ok', dataRef), volume('/vol', dataRef, { imageSubPath: 'data/missing' })])).rejects.toMatchObject({
      code: grpcStatus.NOT_FOUND,
      details: expect.stringContaining('config.mounts[1].image_sub_path: "data/missing" does not exist in the image'),
    });
    for (const out of ['out', '../..']) {
      await expect(create([volume('/vol', dataRef, { imageSubPath: out })])).rejects.toMatchObject({
        code: grpcStatus.INVALID_ARGUMENT,
        details: expect.stringContaining(`config.mounts[0].image_sub_path: "${out}" leads out of the image's root`),
      });
    }
    await expect(create([volume('/vol', world.image('data', 'never-pulled'))])).rejects.toMatchObject({
      code: grpcStatus.NOT_FOUND,
      details: expect.stringContaining('config.mounts[0].image: image'),
    });
    expect(hostMounts()).toEqual([]);
    expect(existsSync(volumesRoot()) ? readdirSync(volumesRoot()) : []).toEqual([]);
    expect(await views()).toEqual([]);
    expect((await world.runtime.listContainers({ filter: undefined })).containers).toEqual([]);
  });

  it('after a kill -9 the running volume stays, a leftover of a container that never got its record goes, and removal still cleans up', async () => {
    const { id } = await startContainer(world, sleeper([volume('/vol', dataRef, { imageSubPath: 'data' })]));
    // What a berth-cri killed between making a view and storing the container record leaves:
    // a view and a host mount that no record names.
    const orphan = 'f'.repeat(64);
    const orphanDir = join(volumesRoot(), orphan, '0');
    const chain = execFileSync('ctr', ['-a', world.containerd.socket, '-n', 'berth.io', 'snapshots', 'ls'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[0] === `berth-imgvol-${id}-0`)![1]!;
    execFileSync('ctr', ['-a', world.containerd.socket, '-n', 'berth.io', 'snapshots', 'view', `berth-imgvol-${orphan}-0`, chain]);
    mkdirSync(orphanDir, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'orphan', orphanDir]);
      await world.killCri();
      await world.startCri();
      await vi.waitFor(async () => expect(await views(0)).toEqual([`berth-imgvol-${id}-0`]), { timeout: 10_000, interval: 100 });
      expect(hostMounts()).toEqual([join(volumesRoot(), id, '0')]);
      expect(existsSync(join(volumesRoot(), orphan))).toBe(false);
      expect((await exec(id, 'cat /vol/hello.txt')).out).toBe('hello from an image volume\n');
      await expect(world.images.removeImage({ image: imageSpec(dataRef) })).rejects.toMatchObject({ code: grpcStatus.FAILED_PRECONDITION });
      await world.runtime.removeContainer({ containerId: id });
      expect(hostMounts()).toEqual([]);
      expect(await views()).toEqual([]);
    } finally {
      if (existsSync(orphanDir)) unmountAll(orphanDir);
    }
  });

  it('refuses RemoveImage of an image a container shows, and RemoveContainer takes the mount and the view away', async () => {
    const { id } = await startContainer(world, sleeper([volume('/vol', dataRef)]));
    const imageId = await imageIdOf(dataRef);
    await expect(world.images.removeImage({ image: imageSpec(dataRef) })).rejects.toMatchObject({
      code: grpcStatus.FAILED_PRECONDITION,
      details: expect.stringContaining(`in use as an image volume by container ${id}`),
    });
    expect(await imageIdOf(dataRef)).toBe(imageId);
    await world.runtime.stopContainer({ containerId: id, timeout: 0n });
    // An exited container still holds its volume: kubelet may restart it.
    await expect(world.images.removeImage({ image: imageSpec(dataRef) })).rejects.toMatchObject({ code: grpcStatus.FAILED_PRECONDITION });
    await world.runtime.removeContainer({ containerId: id });
    expect(hostMounts()).toEqual([]);
    expect(existsSync(join(volumesRoot(), id))).toBe(false);
    expect(await views()).toEqual([]);
    await world.images.removeImage({ image: imageSpec(dataRef) });
    expect((await world.images.imageStatus({ image: imageSpec(dataRef), verbose: false })).image).toBeUndefined();
  });
});
