import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerConfig, LinuxContainerSecurityContext, MountPropagation, NamespaceMode, type PodSandboxConfig, Protocol, SupplementalGroupsPolicy } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, CriWorld, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { isRoot } from '../../world/netns.js';

// What a container sees of its CRI security context, namespaces, mounts and ports, checked from
// inside real containers with ExecSync.

let world: CriWorld;
let n = 0;

function podConfig(linux: Partial<NonNullable<PodSandboxConfig['linux']>> = {}, extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
  n += 1;
  return podSandboxConfig(world, `sec${n}`, {
    linux: { cgroupParent: '', securityContext: undefined, sysctls: {}, overhead: undefined, resources: undefined, ...linux },
    ...extra,
  });
}

function securityContext(sc: Partial<LinuxContainerSecurityContext>): LinuxContainerSecurityContext {
  return LinuxContainerSecurityContext.fromPartial(sc);
}

function container(image: string, sc?: Partial<LinuxContainerSecurityContext>, extra: Partial<ContainerConfig> = {}): ContainerConfig {
  return containerConfig(`c${n}`, image, {
    command: ['sleep', '3600'],
    logPath: 'c.log',
    linux: sc ? { securityContext: securityContext(sc), resources: undefined } : undefined,
    ...extra,
  });
}

/** Run a pod with one sleeping container, return a function that runs shell in it. */
async function inContainer(config: ContainerConfig, pod = podConfig()): Promise<{ sh: (script: string) => Promise<{ out: string; code: number }>; id: string; podId: string }> {
  const { podSandboxId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler: '' });
  const { containerId } = await world.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
  await world.runtime.startContainer({ containerId });
  return {
    id: containerId,
    podId: podSandboxId,
    sh: async (script) => {
      const r = await world.runtime.execSync({ containerId, cmd: ['sh', '-c', script], timeout: 10n });
      return { out: r.stdout.toString().trim(), code: r.exitCode };
    },
  };
}

const capBit = (caps: string, bit: number): boolean => (BigInt(`0x${caps}`) & (1n << BigInt(bit))) !== 0n;
const capEff = async (sh: (s: string) => Promise<{ out: string }>): Promise<string> => (await sh("grep CapEff /proc/self/status | awk '{print $2}'")).out;

describe.skipIf(!isRoot)('berth-cri security context, namespaces, mounts, ports', () => {
  beforeAll(async () => {
    world = await CriWorld.start();
    for (const name of ['busybox', 'busybox-uid', 'busybox-username', 'httpd']) {
      await world.images.pullImage({ image: imageSpec(world.image(name)), auth: undefined, sandboxConfig: undefined });
    }
  }, 120_000);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(world.criLog().slice(-3000));
    await world.removeAllPods();
  });

  afterAll(async () => {
    await world?.stop();
  });

  it('runs as RunAsUser / RunAsGroup, with the image /etc/group memberships and SupplementalGroups', async () => {
    const { sh } = await inContainer(container(world.image('busybox'), { runAsUser: { value: 1000n }, runAsGroup: { value: 2000n }, supplementalGroups: [4242n] }));
    expect((await sh('id -u; id -g')).out).toBe('1000\n2000');
    const groups = (await sh('id -G')).out.split(' ');
    expect(groups).toEqual(expect.arrayContaining(['2000', '29', '1234', '4242']));
  });

  it('with supplementalGroupsPolicy Strict, only the pod\'s groups: none from the image\'s /etc/group; ContainerStatus says which user runs', async () => {
    const merge = await inContainer(container(world.image('busybox'), { runAsUser: { value: 1000n }, supplementalGroups: [4242n] }));
    expect((await merge.sh('id -G')).out.split(' ').sort()).toEqual(['1000', '1234', '29', '4242']);
    const strict = await inContainer(container(world.image('busybox'), { runAsUser: { value: 1000n }, supplementalGroups: [4242n], supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict }));
    expect((await strict.sh('id -G')).out.split(' ').sort()).toEqual(['1000', '4242']);
    const { status } = await world.runtime.containerStatus({ containerId: strict.id, verbose: false });
    expect(status?.user?.linux).toEqual({ uid: 1000n, gid: 1000n, supplementalGroups: [4242n] });
    const merged = await world.runtime.containerStatus({ containerId: merge.id, verbose: false });
    expect(merged.status?.user?.linux?.supplementalGroups.sort((a, b) => (a < b ? -1 : 1))).toEqual([29n, 1234n, 4242n]);
    const runtime = await world.runtime.status({ verbose: false });
    expect(runtime.features?.supplementalGroupsPolicy).toBe(true);
  });

  it('resolves RunAsUserName and the image USER (numeric and named)', async () => {
    expect((await (await inContainer(container(world.image('busybox'), { runAsUsername: 'berth' }))).sh('id -un')).out).toBe('berth');
    expect((await (await inContainer(container(world.image('busybox-uid')))).sh('id -u')).out).toBe('1000');
    expect((await (await inContainer(container(world.image('busybox-username')))).sh('id -u')).out).toBe('1000');
  });

  it('rejects RunAsGroup without a user, naming the field', async () => {
    const pod = podConfig();
    const { podSandboxId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler: '' });
    await expect(
      world.runtime.createContainer({ podSandboxId, config: container(world.image('busybox'), { runAsGroup: { value: 5n } }), sandboxConfig: pod }),
    ).rejects.toMatchObject({ code: grpcStatus.INVALID_ARGUMENT, details: expect.stringContaining('run_as_group') });
  });

  it('drops ALL capabilities, adds one back, and gives a privileged container all of them', async () => {
    const none = await inContainer(container(world.image('busybox'), { capabilities: { addCapabilities: [], dropCapabilities: ['ALL'], addAmbientCapabilities: [] } }));
    expect(BigInt(`0x${await capEff(none.sh)}`)).toBe(0n);
    const netAdmin = await inContainer(container(world.image('busybox'), { capabilities: { addCapabilities: ['NET_ADMIN'], dropCapabilities: ['ALL'], addAmbientCapabilities: [] } }));
    const caps = await capEff(netAdmin.sh);
    expect(capBit(caps, 12)).toBe(true); // CAP_NET_ADMIN
    expect(capBit(caps, 0)).toBe(false); // CAP_CHOWN dropped
    const privilegedPod = podConfig({ securityContext: { namespaceOptions: undefined, selinuxOptions: undefined, runAsUser: undefined, runAsGroup: undefined, readonlyRootfs: false, supplementalGroups: [], supplementalGroupsPolicy: 0, privileged: true, seccomp: undefined, apparmor: undefined, seccompProfilePath: '' } });
    const priv = await inContainer(container(world.image('busybox'), { privileged: true }), privilegedPod);
    expect(capBit(await capEff(priv.sh), 21)).toBe(true); // CAP_SYS_ADMIN
    expect((await priv.sh('mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo mounted')).out).toBe('mounted');
  });

  it('honours ReadonlyRootfs, NoNewPrivs, MaskedPaths and seccomp (runtime/default vs unconfined)', async () => {
    const ro = await inContainer(container(world.image('busybox'), { readonlyRootfs: true, noNewPrivs: true, maskedPaths: ['/etc/passwd'], seccompProfilePath: 'runtime/default' }));
    expect((await ro.sh('touch /new-file')).code).not.toBe(0);
    expect((await ro.sh('touch /tmp/x 2>&1; echo $?')).out).not.toBe('');
    expect((await ro.sh('grep NoNewPrivs /proc/self/status')).out).toMatch(/NoNewPrivs:\s+1/);
    expect((await ro.sh('cat /etc/passwd | wc -c')).out).toBe('0');
    expect((await ro.sh('grep ^Seccomp: /proc/self/status')).out).toMatch(/Seccomp:\s+2/);
    const open = await inContainer(container(world.image('busybox'), { seccompProfilePath: 'unconfined' }));
    expect((await open.sh('grep ^Seccomp: /proc/self/status')).out).toMatch(/Seccomp:\s+0/);
  });

  it('applies pod sysctls and shares the pod IPC namespace and /dev/shm between containers', async () => {
    const pod = podConfig({ sysctls: { 'net.ipv4.ip_unprivileged_port_start': '1024', 'kernel.shm_rmid_forced': '1' } });
    const a = await inContainer(container(world.image('busybox')), pod);
    expect((await a.sh('cat /proc/sys/net/ipv4/ip_unprivileged_port_start')).out).toBe('1024');
    await a.sh('echo shared > /dev/shm/x');
    const { containerId } = await world.runtime.createContainer({ podSandboxId: a.podId, config: { ...container(world.image('busybox')), metadata: { name: 'second', attempt: 0 } }, sandboxConfig: pod });
    await world.runtime.startContainer({ containerId });
    const r = await world.runtime.execSync({ containerId, cmd: ['cat', '/dev/shm/x'], timeout: 5n });
    expect(r.stdout.toString()).toBe('shared\n');
  });

  it('runs a host-network pod in the host network namespace with the host name', async () => {
    const hostNs = { network: NamespaceMode.NODE, pid: NamespaceMode.POD, ipc: NamespaceMode.POD, targetId: '', usernsOptions: undefined };
    const pod = podConfig({ securityContext: { namespaceOptions: hostNs, selinuxOptions: undefined, runAsUser: undefined, runAsGroup: undefined, readonlyRootfs: false, supplementalGroups: [], supplementalGroupsPolicy: 0, privileged: false, seccomp: undefined, apparmor: undefined, seccompProfilePath: '' } });
    const c = await inContainer(container(world.image('busybox')), pod);
    expect((await c.sh('hostname')).out).toBe(hostname());
    const { status } = await world.runtime.podSandboxStatus({ podSandboxId: c.podId, verbose: false });
    expect(status?.network?.ip).toBe('');
  });

  it('bind-mounts host paths read-only or read-write, with propagation', async () => {
    // A shared mount on the host, so the rslave one inside shows its master.
    const dir = mkdtempSync(join(tmpdir(), 'berth-mount-'));
    execFileSync('mount', ['-t', 'tmpfs', 'berth-test', dir]);
    execFileSync('mount', ['--make-shared', dir]);
    try {
      writeFileSync(join(dir, 'hello'), 'from the host\n');
      const mounts = [
        { containerPath: '/ro', hostPath: dir, readonly: true, selinuxRelabel: false, propagation: MountPropagation.PROPAGATION_PRIVATE, uidMappings: [], gidMappings: [], recursiveReadOnly: false, image: undefined, imageSubPath: '', mountOptions: [] },
        { containerPath: '/rw', hostPath: dir, readonly: false, selinuxRelabel: false, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER, uidMappings: [], gidMappings: [], recursiveReadOnly: false, image: undefined, imageSubPath: '', mountOptions: [] },
      ];
      const c = await inContainer(container(world.image('busybox'), undefined, { mounts }));
      expect((await c.sh('cat /ro/hello')).out).toBe('from the host');
      expect((await c.sh('touch /ro/x')).code).not.toBe(0);
      expect((await c.sh('echo written > /rw/y && echo ok')).out).toBe('ok');
      expect((await c.sh("grep ' /rw ' /proc/self/mountinfo")).out).toContain('master:');
    } finally {
      await world.removeAllPods();
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('publishes a port mapping on the host (hostPort on 127.0.0.1)', async () => {
    const hostPort = 20000 + Math.floor(Math.random() * 10000);
    const pod = podConfig({}, { portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort, hostIp: '' }] });
    const { podSandboxId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler: '' });
    const { containerId } = await world.runtime.createContainer({ podSandboxId, config: container(world.image('httpd'), undefined, { command: [] }), sandboxConfig: pod });
    await world.runtime.startContainer({ containerId });
    let body = '';
    for (let i = 0; i < 50 && !body; i++) {
      body = await fetch(`http://127.0.0.1:${hostPort}/index.html`).then((r) => r.text()).catch(() => '');
      if (!body) await sleep(100);
    }
    expect(body).toBe('hello from berth\n');
  });
});
