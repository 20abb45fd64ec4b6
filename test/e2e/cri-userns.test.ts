import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerConfig, type IDMapping, LinuxContainerSecurityContext, LinuxSandboxSecurityContext, Mount, MountPropagation, NamespaceMode, type NamespaceOption, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, CriWorld, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { isRoot } from '../../world/netns.js';

// User-namespaced pods (hostUsers: false) through berth-cri against the real containerd and
// runc: kubelet's mappings inside, the pod's root as an unprivileged host uid outside, the rootfs
// and every bind mount idmapped so host root's files are root's inside, and no staged mount left
// behind by removal or by a berth-cri killed with -9.

const hostBase = 100000;
const size = 65536;
const mapping = (hostId = hostBase, length = size, containerId = 0): IDMapping => ({ hostId, containerId, length });

let world: CriWorld;
let n = 0;
const volumes: string[] = [];

function usernsOptions(mode: NamespaceMode, uids: IDMapping[] = [mapping()], gids: IDMapping[] = uids): NamespaceOption {
  return { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD, targetId: '', usernsOptions: { mode, uids, gids } };
}

function podConfig(ns: NamespaceOption = usernsOptions(NamespaceMode.POD)): PodSandboxConfig {
  n += 1;
  return podSandboxConfig(world, `userns${n}`, {
    linux: {
      cgroupParent: '',
      sysctls: {},
      overhead: undefined,
      resources: undefined,
      securityContext: LinuxSandboxSecurityContext.fromPartial({ namespaceOptions: ns }),
    },
  });
}

function container(name: string, pod: PodSandboxConfig, extra: Partial<ContainerConfig> = {}): ContainerConfig {
  const ns = pod.linux!.securityContext!.namespaceOptions!;
  return containerConfig(name, world.image('busybox'), {
    command: ['sleep', '3600'],
    logPath: `${name}.log`,
    linux: {
      resources: undefined,
      securityContext: LinuxContainerSecurityContext.fromPartial({ namespaceOptions: ns }),
    },
    ...extra,
  });
}

async function sh(containerId: string, script: string): Promise<string> {
  const r = await world.runtime.execSync({ containerId, cmd: ['sh', '-c', script], timeout: 10n });
  expect(r.exitCode, `${script}: ${r.stderr.toString()}`).toBe(0);
  return r.stdout.toString().trim();
}

/** The host pid of a task, from containerd. */
function hostPid(id: string): number {
  const out = execFileSync('ctr', ['-a', world.containerd.socket, '-n', 'berth.io', 'tasks', 'ls'], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.startsWith(id));
  return Number(line?.trim().split(/\s+/)[1]);
}

/** Mounts berth-cri made under the pod's directory (staged idmapped mounts, the userns pin). */
function mountsUnder(podId: string): string[] {
  const dir = join(world.dir, 'root', 'sandboxes', podId);
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

function volume(): string {
  const dir = mkdtempSync('/tmp/berth-userns-vol-');
  volumes.push(dir);
  writeFileSync(join(dir, 'root-file'), 'host root\n');
  writeFileSync(join(dir, 'pod-file'), 'pod root\n');
  chownSync(join(dir, 'pod-file'), hostBase, hostBase);
  return dir;
}

async function runPod(handler = ''): Promise<{ podId: string; pod: PodSandboxConfig; containerId: string; vol: string }> {
  const pod = podConfig();
  const vol = volume();
  const { podSandboxId: podId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler: handler });
  const config = container('main', pod, {
    mounts: [Mount.fromPartial({ containerPath: '/vol', hostPath: vol, propagation: MountPropagation.PROPAGATION_PRIVATE })],
  });
  const { containerId } = await world.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod });
  await world.runtime.startContainer({ containerId });
  return { podId, pod, containerId, vol };
}

async function refused(p: Promise<unknown>): Promise<{ code?: number; details?: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: number; details?: string };
  }
  throw new Error('the call was not refused');
}

describe.skipIf(!isRoot)('berth-cri user-namespaced pods', () => {
  beforeAll(async () => {
    world = await CriWorld.start();
    await world.images.pullImage({ image: imageSpec(world.image('busybox')), auth: undefined, sandboxConfig: undefined });
  }, 180_000);

  afterEach(async () => {
    if (world?.criRunning()) await world.removeAllPods();
    for (const dir of volumes.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  afterAll(async () => {
    await world?.stop();
  });

  async function handlerFeatures(): Promise<Record<string, boolean | undefined>> {
    const res = await world.runtime.status({ verbose: false });
    return Object.fromEntries(res.runtimeHandlers.map((h) => [h.name, h.features?.userNamespaces]));
  }

  it('reports user namespaces for the runc handler', async () => {
    expect((await handlerFeatures()).runc).toBe(true);
  });

  it("runs the pod in kubelet's mappings, with the rootfs and every bind mount owned right inside", async () => {
    const { podId, containerId, vol } = await runPod();
    expect(await sh(containerId, 'cat /proc/self/uid_map').then((s) => s.split(/\s+/).join(' '))).toBe(`0 ${hostBase} ${size}`);
    expect(await sh(containerId, 'cat /proc/self/gid_map').then((s) => s.split(/\s+/).join(' '))).toBe(`0 ${hostBase} ${size}`);
    expect(await sh(containerId, 'id -u; id -g')).toBe('0\n0');
    // The image's files (root's on disk) are root's inside; the container writes as its root.
    expect(await sh(containerId, 'stat -c %u:%g /bin/busybox /etc /')).toBe('0:0\n0:0\n0:0');
    expect(await sh(containerId, 'echo hi > /new-file && stat -c %u /new-file && echo more >> /etc/passwd && echo ok')).toBe('0\nok');
    // Host root's volume files are root's inside, and what root writes there is host root's.
    expect(await sh(containerId, 'stat -c %u:%g /vol/root-file /vol')).toBe('0:0\n0:0');
    // idmapped, a file the host gave the pod's host uid is outside the range inside (overflow id).
    expect(await sh(containerId, 'stat -c %u /vol/pod-file')).toBe('65534');
    await sh(containerId, 'echo inside > /vol/made-inside');
    expect(statSync(join(vol, 'made-inside')).uid).toBe(0);
    // kubelet's files: /etc/hosts, /etc/resolv.conf and /etc/hostname, root's and readable.
    expect(await sh(containerId, 'stat -c %u /etc/hosts /etc/resolv.conf /etc/hostname && grep -c localhost /etc/hosts')).toBe('0\n0\n0\n2');
    // On the host, the container's root is the unprivileged first id of the range.
    const status = readFileSync(`/proc/${hostPid(containerId)}/status`, 'utf8');
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(hostBase));
    expect(/^Gid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(hostBase));
    expect(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${hostPid(podId)}/status`, 'utf8'))?.[1]).toBe(String(hostBase));
  });

  it("shares the pod's user namespace between its containers", async () => {
    const { podId, pod, containerId } = await runPod();
    const second = container('second', pod);
    const { containerId: secondId } = await world.runtime.createContainer({ podSandboxId: podId, config: second, sandboxConfig: pod });
    await world.runtime.startContainer({ containerId: secondId });
    const ns = await sh(containerId, 'readlink /proc/self/ns/user');
    expect(await sh(secondId, 'readlink /proc/self/ns/user')).toBe(ns);
    expect(await sh(secondId, 'readlink /proc/1/ns/user')).toBe(ns);
    expect(await sh(secondId, 'id -u')).toBe('0');
  });

  it('runs a user-namespaced pod on crun where it reports it can, and refuses it saying why where not', async () => {
    if (!(await handlerFeatures()).crun) {
      // crun 1.8 on a hybrid cgroup host: reported false, and a pod asking is refused.
      console.log('crun reports no user namespaces on this host: checking the refusal instead');
      const err = await refused(world.runtime.runPodSandbox({ config: podConfig(), runtimeHandler: 'crun' }));
      expect(err.code).toBe(grpcStatus.INVALID_ARGUMENT);
      expect(err.details).toMatch(/userns_options\.mode: POD user namespaces are not supported here: .*crun/);
      return;
    }
    const { containerId } = await runPod('crun');
    expect(await sh(containerId, 'cat /proc/self/uid_map').then((s) => s.split(/\s+/).join(' '))).toBe(`0 ${hostBase} ${size}`);
    expect(await sh(containerId, 'stat -c %u /bin/busybox /vol/root-file')).toBe('0\n0');
  });

  it('leaves no staged mount after removing a container and its pod', async () => {
    const { podId, containerId } = await runPod();
    expect(mountsUnder(podId).length).toBeGreaterThan(0);
    const stage = join(world.dir, 'root', 'sandboxes', podId, 'idmap', containerId);
    expect(mountsUnder(podId).some((p) => p.startsWith(stage))).toBe(true);
    await world.runtime.removeContainer({ containerId });
    expect(mountsUnder(podId).filter((p) => p.startsWith(stage))).toEqual([]);
    expect(existsSync(stage)).toBe(false);
    await world.runtime.stopPodSandbox({ podSandboxId: podId });
    await world.runtime.removePodSandbox({ podSandboxId: podId });
    expect(mountsUnder(podId)).toEqual([]);
    expect(existsSync(join(world.dir, 'root', 'sandboxes', podId))).toBe(false);
  });

  it('cleans up after berth-cri is killed with -9: stray staged mounts go, live ones stay until removal', async () => {
    const { podId, containerId } = await runPod();
    // What a crash between staging and recording a container leaves: a staging dir with a mount.
    const stray = join(world.dir, 'root', 'sandboxes', podId, 'idmap', 'f'.repeat(64));
    mkdirSync(join(stray, 'm0'), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'stray', join(stray, 'm0')]);
    await world.killCri();
    await world.startCri();
    expect(mountsUnder(podId).filter((p) => p.startsWith(stray))).toEqual([]);
    expect(existsSync(stray)).toBe(false);
    // The live container kept its mounts and still works.
    expect(await sh(containerId, 'id -u && stat -c %u /vol/root-file')).toBe('0\n0');
    await world.runtime.stopPodSandbox({ podSandboxId: podId });
    await world.runtime.removePodSandbox({ podSandboxId: podId });
    expect(mountsUnder(podId)).toEqual([]);
  });

  it('refuses bad mappings and unsupported modes with InvalidArgument naming the field', async () => {
    const field = 'config.linux.security_context.namespace_options.userns_options';
    const cases: [NamespaceOption, string][] = [
      [usernsOptions(NamespaceMode.CONTAINER), `${field}.mode: CONTAINER`],
      [usernsOptions(NamespaceMode.TARGET), `${field}.mode: TARGET`],
      [usernsOptions(NamespaceMode.POD, []), `${field}.uids: at least one mapping`],
      [usernsOptions(NamespaceMode.POD, [mapping(hostBase, size, 1)]), `${field}.uids: container id 0`],
      [usernsOptions(NamespaceMode.POD, [mapping(hostBase, 0)]), `${field}.uids[0].length`],
      [usernsOptions(NamespaceMode.POD, [mapping()], [mapping(hostBase * 3)]), `${field}.gids: must equal uids`],
      [{ ...usernsOptions(NamespaceMode.POD), network: NamespaceMode.NODE }, 'config.linux.security_context.namespace_options.network: NODE'],
    ];
    for (const [ns, message] of cases) {
      const err = await refused(world.runtime.runPodSandbox({ config: podConfig(ns), runtimeHandler: '' }));
      expect(err.code, message).toBe(grpcStatus.INVALID_ARGUMENT);
      expect(err.details).toContain(message);
    }
    const { items } = await world.runtime.listPodSandbox({ filter: undefined });
    expect(items).toEqual([]);
  });
});
