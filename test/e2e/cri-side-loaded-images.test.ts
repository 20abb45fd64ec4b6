import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { localPauseImage } from '../../cri-shim/config.js';
import { dockerArchive, ociArchive } from '../../lib/oci/archive.js';
import { repoRoot } from '../../world/cni.js';
import type { CriWorld} from '../../world/cri.js';
import { containerConfig, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { busyboxImage } from '../../world/images.js';
import { isRoot } from '../../world/netns.js';

// Images that arrive without a registry (issue 20): side-loaded into berth-cri's containerd
// namespace with ctr or `berth images import`, they are listed at once and run pods; images
// removed by another client disappear; an image a container uses cannot be removed through CRI.

const berth = join(repoRoot, 'dist/cli/berth');
// A registry name that resolves nowhere: a pull of these would fail, so a pod that runs from one
// ran from the imported image.
const airgap = 'airgap.invalid/berth';

describe.skipIf(!isRoot)('berth-cri images side-loaded without a registry', () => {
  let world: CriWorld;
  let dir = '';
  let configFile = '';
  // The sandbox image is berth's own, made in containerd by berth-cri: nothing here is pulled.
  useCriWorld([], (w) => (world = w), { flags: ['--sandbox-image', localPauseImage] });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-side-load-'));
    configFile = join(dir, 'berth.yaml');
    writeFileSync(configFile, `cri: { listen: "unix://${world.cri.socket}", containerd: "${world.containerd.socket}", namespace: berth.io }\n`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const ctr = (...args: string[]) => execFileSync('ctr', ['--address', world.containerd.socket, '--namespace', 'berth.io', ...args], { encoding: 'utf8' });
  const status = async (ref: string) => (await world.images.imageStatus({ image: imageSpec(ref), verbose: false })).image;
  const archive = (name: string, bytes: Buffer): string => {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    return file;
  };

  async function runsAPod(image: string): Promise<string> {
    const pod = podSandboxConfig(world, `side-${Math.random().toString(36).slice(2, 8)}`);
    const { podSandboxId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler: '' });
    const { containerId } = await world.runtime.createContainer({ podSandboxId, config: containerConfig('main', image, { command: ['sleep', '3600'] }), sandboxConfig: pod });
    await world.runtime.startContainer({ containerId });
    const { stdout } = await world.runtime.execSync({ containerId, cmd: ['cat', '/side-loaded'], timeout: 10n });
    return Buffer.from(stdout).toString();
  }

  it('makes its own pause image from berth-pause at start: listed, pinned, never pulled', async () => {
    const { images } = await world.images.listImages({ filter: undefined });
    const pause = images.find((i) => i.repoTags.includes(localPauseImage));
    expect(pause).toMatchObject({ pinned: true, repoTags: [localPauseImage] });
    expect(world.criLog()).toContain('made the local pause image from berth-pause');
    expect(world.criLog()).not.toMatch(/"msg":"image pulled"/);
    // containerd holds it under berth-cri's namespace, as any other image.
    expect(ctr('images', 'ls', '-q')).toContain(localPauseImage);
  });

  it('lists an image imported with ctr while it runs within a second, and forgets it when ctr removes it', async () => {
    const image = busyboxImage({ Labels: { 'berth.test': 'ctr' } }, [[{ type: 'file', path: 'side-loaded', data: 'via ctr\n' }]], 'docker');
    const name = `${airgap}/busybox:ctr`;
    expect(await status(name)).toBeUndefined();
    ctr('images', 'import', archive('ctr.tar', dockerArchive([{ repoTag: name, image }])));
    await vi.waitFor(async () => expect((await status(name))?.id).toBe(image.config.digest), { timeout: 1000, interval: 20 });
    const { images } = await world.images.listImages({ filter: undefined });
    expect(images.find((i) => i.id === image.config.digest)?.repoTags).toEqual([name]);
    expect(await runsAPod(name)).toBe('via ctr\n');
    await world.removeAllPods();

    ctr('images', 'rm', name);
    await vi.waitFor(async () => expect(await status(name)).toBeUndefined(), { timeout: 1000, interval: 20 });
    expect((await world.images.listImages({ filter: undefined })).images.map((i) => i.id)).not.toContain(image.config.digest);
  });

  it('berth images import loads a Docker archive and an OCI archive (also from stdin); each runs a pod with no registry', async () => {
    const docker = busyboxImage({ Labels: { 'berth.test': 'docker-archive' } }, [[{ type: 'file', path: 'side-loaded', data: 'docker archive\n' }]], 'docker');
    const oci = busyboxImage({ Labels: { 'berth.test': 'oci-archive' } }, [[{ type: 'file', path: 'side-loaded', data: 'oci archive\n' }]], 'oci');
    const dockerName = `${airgap}/busybox:docker`;
    const ociName = `${airgap}/busybox:oci`;
    const fromFile = spawnSync(process.execPath, [berth, 'images', 'import', '--config', configFile, archive('docker.tar', dockerArchive([{ repoTag: dockerName, image: docker }]))], { encoding: 'utf8' });
    expect(fromFile.status, fromFile.stderr).toBe(0);
    expect(fromFile.stdout).toBe(`imported ${dockerName} ${docker.config.digest}\n`);
    const fromStdin = spawnSync(process.execPath, [berth, 'images', 'import', '--config', configFile, '-'], { input: ociArchive([{ ref: ociName, image: oci }]), encoding: 'utf8' });
    expect(fromStdin.status, fromStdin.stderr).toBe(0);
    expect(fromStdin.stdout).toBe(`imported ${ociName} ${oci.config.digest}\n`);

    expect(await runsAPod(dockerName)).toBe('docker archive\n');
    expect(await runsAPod(ociName)).toBe('oci archive\n');

    const ls = spawnSync(process.execPath, [berth, 'images', 'ls', '--config', configFile], { encoding: 'utf8' });
    expect(ls.status, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(new RegExp(`^${airgap}/busybox\\s+docker\\s+${docker.config.digest.slice(7, 20)}\\s`, 'm'));
    expect(ls.stdout).toMatch(new RegExp(`^${airgap}/busybox\\s+oci\\s+${oci.config.digest.slice(7, 20)}\\s`, 'm'));
  });

  it('berth images export writes an archive that imports again as the same image', async () => {
    const image = busyboxImage({ Labels: { 'berth.test': 'export' } }, [[{ type: 'file', path: 'side-loaded', data: 'exported\n' }]], 'oci');
    const name = `${airgap}/busybox:export`;
    ctr('images', 'import', archive('export-in.tar', ociArchive([{ ref: name, image }])));
    await vi.waitFor(async () => expect(await status(name)).toBeDefined(), { timeout: 1000, interval: 20 });
    const out = join(dir, 'export-out.tar');
    const exported = spawnSync(process.execPath, [berth, 'images', 'export', '--config', configFile, '-o', out, name], { encoding: 'utf8' });
    expect(exported.status, exported.stderr).toBe(0);
    ctr('images', 'rm', name);
    await vi.waitFor(async () => expect(await status(name)).toBeUndefined(), { timeout: 1000, interval: 20 });
    const again = spawnSync(process.execPath, [berth, 'images', 'import', '--config', configFile, out], { encoding: 'utf8' });
    expect(again.status, again.stderr).toBe(0);
    expect((await status(name))?.id).toBe(image.config.digest);
  });

  it('refuses to remove through CRI an image a container uses, naming the container; removes it once the container is gone', async () => {
    const image = busyboxImage({ Labels: { 'berth.test': 'in-use' } }, [[{ type: 'file', path: 'side-loaded', data: 'in use\n' }]], 'docker');
    const name = `${airgap}/busybox:in-use`;
    ctr('images', 'import', archive('in-use.tar', dockerArchive([{ repoTag: name, image }])));
    await vi.waitFor(async () => expect(await status(name)).toBeDefined(), { timeout: 1000, interval: 20 });
    await runsAPod(name);
    const { containers } = await world.runtime.listContainers({ filter: undefined });
    const user = containers.find((c) => c.imageRef === image.config.digest)!;
    await expect(world.images.removeImage({ image: imageSpec(name) })).rejects.toMatchObject({ code: grpcStatus.FAILED_PRECONDITION, details: expect.stringContaining(`in use by container ${user.id}`) });
    expect(await status(name)).toBeDefined();
    await world.removeAllPods();
    await world.images.removeImage({ image: imageSpec(name) });
    expect(await status(name)).toBeUndefined();
  });

  it('adopts images imported while it was down when it starts again', async () => {
    const image = busyboxImage({ Labels: { 'berth.test': 'while-down' } }, [[{ type: 'file', path: 'side-loaded', data: 'while down\n' }]], 'docker');
    const name = `${airgap}/busybox:while-down`;
    await world.killCri();
    ctr('images', 'import', archive('down.tar', dockerArchive([{ repoTag: name, image }])));
    await world.startCri();
    expect((await status(name))?.id).toBe(image.config.digest);
    expect(await runsAPod(name)).toBe('while down\n');
  });
});
