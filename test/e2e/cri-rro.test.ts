import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LinuxContainerSecurityContext, LinuxSandboxSecurityContext, Mount, MountPropagation, NamespaceMode, type NamespaceOption } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, CriWorld, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { isRoot } from '../../world/netns.js';

// Recursive read-only volumes (CRI Mount.recursive_read_only, kubelet's recursiveReadOnly:
// Enabled), checked from inside real runc containers: a host directory with a tmpfs mounted
// beneath it is read-only all the way down only when recursive_read_only is set; a plain
// read-only volume still lets the container write into the submount, which is the hole the
// feature closes. And the read-only copies berth stages for runc never outlive their container.

let world: CriWorld;
let hostDir = '';
let n = 0;

const mountsUnder = (dir: string): string[] =>
  readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`));
const stagedDir = (containerId: string): string => join(world.dir, 'state', 'rro', containerId);
/** What berth staged for a container: its directory and the mounts beneath it, relative to it. */
const staged = (containerId: string): { dir: boolean; mounts: string[] } => ({
  dir: existsSync(stagedDir(containerId)),
  mounts: mountsUnder(stagedDir(containerId)).map((m) => m.slice(stagedDir(containerId).length + 1)).sort(),
});

const volume = (containerPath: string, extra: Partial<Mount> = {}): Mount =>
  Mount.fromPartial({ containerPath, hostPath: hostDir, readonly: true, propagation: MountPropagation.PROPAGATION_PRIVATE, ...extra });

/** kubelet's user namespace for hostUsers: false, the pod's root as host uid 100000. */
const usernsPod: NamespaceOption = {
  network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD, targetId: '',
  usernsOptions: { mode: NamespaceMode.POD, uids: [{ hostId: 100000, containerId: 0, length: 65536 }], gids: [{ hostId: 100000, containerId: 0, length: 65536 }] },
};

async function runPod(namespaceOptions?: NamespaceOption): Promise<{ id: string; config: ReturnType<typeof podSandboxConfig> }> {
  n += 1;
  const config = podSandboxConfig(world, `rro${n}`);
  if (namespaceOptions) config.linux = { ...config.linux!, securityContext: LinuxSandboxSecurityContext.fromPartial({ namespaceOptions }) };
  const { podSandboxId } = await world.runtime.runPodSandbox({ config, runtimeHandler: '' });
  return { id: podSandboxId, config };
}

async function createContainer(pod: { id: string; config: ReturnType<typeof podSandboxConfig> }, mounts: Mount[]): Promise<string> {
  n += 1;
  const namespaceOptions = pod.config.linux?.securityContext?.namespaceOptions;
  const config = containerConfig(`c${n}`, world.image('busybox'), {
    command: ['sleep', '3600'],
    mounts,
    linux: namespaceOptions ? { resources: undefined, securityContext: LinuxContainerSecurityContext.fromPartial({ namespaceOptions }) } : undefined,
  });
  const { containerId } = await world.runtime.createContainer({ podSandboxId: pod.id, config, sandboxConfig: pod.config });
  return containerId;
}

async function sh(containerId: string, script: string): Promise<{ out: string; code: number }> {
  const r = await world.runtime.execSync({ containerId, cmd: ['sh', '-c', script], timeout: 10n });
  return { out: `${r.stdout.toString()}${r.stderr.toString()}`.trim(), code: r.exitCode };
}

describe.skipIf(!isRoot)('berth-cri recursive read-only mounts', () => {
  beforeAll(async () => {
    hostDir = mkdtempSync('/tmp/berth-test-rro-');
    mkdirSync(join(hostDir, 'sub'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', join(hostDir, 'sub')]);
    world = await CriWorld.start();
    await world.images.pullImage({ image: imageSpec(world.image('busybox')), auth: undefined, sandboxConfig: undefined });
  }, 180_000);

  afterEach(async () => {
    // A test that failed between a kill -9 and the restart leaves berth-cri down.
    if (world && !world.criRunning()) await world.startCri();
    await world?.removeAllPods();
  });

  afterAll(async () => {
    await world?.stop();
    if (hostDir) {
      for (const m of mountsUnder(hostDir).reverse()) execFileSync('umount', ['-l', m]);
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  it('Status reports recursive read-only mounts supported for every runtime handler (mount_setattr exists here)', async () => {
    const { runtimeHandlers } = await world.runtime.status({ verbose: false });
    expect(runtimeHandlers.length).toBeGreaterThan(0);
    for (const h of runtimeHandlers) expect(h.features?.recursiveReadOnlyMounts).toBe(true);
  });

  it('recursive_read_only makes the submount read-only too; plain readonly leaves it writable', async () => {
    const pod = await runPod();
    const id = await createContainer(pod, [volume('/rro', { recursiveReadOnly: true }), volume('/plain')]);
    // Only the recursive read-only volume is staged: the host path's tree, its tmpfs included.
    expect(staged(id).mounts).toEqual(['0', '0/sub']);
    await world.runtime.startContainer({ containerId: id });

    const rroTop = await sh(id, 'touch /rro/top');
    expect(rroTop.code).not.toBe(0);
    expect(rroTop.out).toContain('Read-only file system');
    const rroSub = await sh(id, 'touch /rro/sub/inside');
    expect(rroSub.code).not.toBe(0);
    expect(rroSub.out).toContain('Read-only file system');
    // The container reads through both, and sees the tmpfs beneath: it is the same host tree.
    expect((await sh(id, 'grep -c " /rro/sub " /proc/self/mountinfo')).out).toBe('1');

    const plainTop = await sh(id, 'touch /plain/top');
    expect(plainTop.out).toContain('Read-only file system');
    expect((await sh(id, 'echo hole > /plain/sub/written && cat /rro/sub/written')).out).toBe('hole');
    expect(readFileSync(join(hostDir, 'sub', 'written'), 'utf8')).toBe('hole\n');
    rmSync(join(hostDir, 'sub', 'written'));

    await world.runtime.removeContainer({ containerId: id });
    expect(staged(id)).toEqual({ dir: false, mounts: [] });
    // Nothing staged: the staging root's own private mount is gone as well.
    expect(mountsUnder(join(world.dir, 'state', 'rro'))).toEqual([]);
  });

  it('a user-namespaced pod (hostUsers: false) gets the same: its idmapped copy of the staged tree stays read-only all the way down', async () => {
    const { runtimeHandlers } = await world.runtime.status({ verbose: false });
    if (!runtimeHandlers.find((h) => h.name === 'runc')?.features?.userNamespaces) {
      console.log('skipped: berth-cri reports no user namespace support for runc on this host');
      return;
    }
    const pod = await runPod(usernsPod);
    const id = await createContainer(pod, [volume('/rro', { recursiveReadOnly: true }), volume('/plain')]);
    await world.runtime.startContainer({ containerId: id });
    expect((await sh(id, 'cat /proc/self/uid_map')).out).toMatch(/^0\s+100000\s+65536$/);
    expect((await sh(id, 'touch /rro/sub/x')).out).toContain('Read-only file system');
    expect((await sh(id, 'touch /rro/x')).out).toContain('Read-only file system');
    // The plain volume beside it still carries its submount (idmapped with it).
    expect((await sh(id, 'ls -d /plain/sub && grep -c " /plain/sub " /proc/self/mountinfo')).code).toBe(0);
    await world.runtime.removeContainer({ containerId: id });
    expect(staged(id)).toEqual({ dir: false, mounts: [] });
  });

  it('is refused on a writable mount and with propagation other than private, naming the field, staging nothing', async () => {
    const pod = await runPod();
    const refusals: [Mount, RegExp][] = [
      [volume('/rw', { readonly: false, recursiveReadOnly: true }), /config\.mounts\[0\]\.recursive_read_only: needs readonly/],
      [volume('/slave', { recursiveReadOnly: true, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }), /config\.mounts\[0\]\.recursive_read_only: needs propagation PROPAGATION_PRIVATE, got PROPAGATION_HOST_TO_CONTAINER/],
      [volume('/shared', { recursiveReadOnly: true, propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL }), /PROPAGATION_BIDIRECTIONAL/],
    ];
    for (const [mount, message] of refusals) {
      const err = await createContainer(pod, [mount]).then(() => undefined, (e: { code: number; details: string }) => e);
      expect(err?.code).toBe(grpcStatus.INVALID_ARGUMENT);
      expect(err?.details).toMatch(message);
    }
    expect((await world.runtime.listContainers({ filter: undefined })).containers).toEqual([]);
    expect(mountsUnder(join(world.dir, 'state', 'rro'))).toEqual([]);
  });

  it('a missing host path is an error naming it, and leaves nothing staged', async () => {
    const pod = await runPod();
    const err = await createContainer(pod, [volume('/gone', { hostPath: join(hostDir, 'missing'), recursiveReadOnly: true })]).then(() => undefined, (e: { code: number; details: string }) => e);
    expect(err?.code).toBe(grpcStatus.INVALID_ARGUMENT);
    expect(err?.details).toContain(`config.mounts[0].host_path: "${join(hostDir, 'missing')}"`);
    expect(mountsUnder(join(world.dir, 'state', 'rro'))).toEqual([]);
  });

  it('after kill -9 and restart: a live container keeps its staged copy, one whose record is gone loses it', async () => {
    const pod = await runPod();
    const kept = await createContainer(pod, [volume('/rro', { recursiveReadOnly: true })]);
    const orphan = await createContainer(pod, [volume('/rro', { recursiveReadOnly: true })]);
    await world.killCri();
    // What a crash in RemoveContainer leaves: the containerd record deleted, the staged copy not.
    execFileSync('ctr', ['-a', world.containerd.socket, '-n', 'berth.io', 'containers', 'rm', orphan]);
    expect(staged(orphan).mounts).toEqual(['0', '0/sub']);
    await world.startCri();

    expect(staged(orphan)).toEqual({ dir: false, mounts: [] });
    expect(staged(kept).mounts).toEqual(['0', '0/sub']);
    // The kept container starts after the restart, read-only all the way down.
    await world.runtime.startContainer({ containerId: kept });
    expect((await sh(kept, 'touch /rro/sub/x')).out).toContain('Read-only file system');
    await world.runtime.removeContainer({ containerId: kept });
    expect(staged(kept)).toEqual({ dir: false, mounts: [] });
    expect(mountsUnder(join(world.dir, 'state', 'rro'))).toEqual([]);
  });
});
