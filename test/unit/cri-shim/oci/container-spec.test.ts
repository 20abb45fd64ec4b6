import { describe, expect, it } from 'vitest';
import { buildContainerSpec } from '../../../../cri-shim/oci/container-spec.js';
import type { Spec } from '../../../../cri-shim/oci/spec-types.js';
import { MountPropagation, NamespaceMode, SecurityProfile_ProfileType } from '../../../../proto/gen/runtime/v1/api.js';
import { appImage, containerConfig, containerInput, devFuse, devSda, errorOf, podConfig } from './fixtures.js';

const env = (spec: Spec): Record<string, string> => Object.fromEntries((spec.process?.env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const kv = (key: string, value: string): { key: string; value: Buffer } => ({ key, value: Buffer.from(value) });
const privilegedPod = podConfig({ linux: { securityContext: { privileged: true } } });

describe('buildContainerSpec: process', () => {
  it('applies the entrypoint/cmd rules', () => {
    const args = (command: string[], a: string[]): string[] | undefined => buildContainerSpec(containerInput({ config: containerConfig({ command, args: a }) })).process?.args;
    expect(args([], [])).toEqual(['/entry', 'serve']);
    expect(args([], ['x'])).toEqual(['/entry', 'x']);
    expect(args(['/bin/sh'], [])).toEqual(['/bin/sh']); // image Cmd is dropped
    expect(args(['/bin/sh'], ['-c', 'true'])).toEqual(['/bin/sh', '-c', 'true']);
    const bare = { ...appImage, entrypoint: [], cmd: [] };
    expect(errorOf(() => buildContainerSpec(containerInput({ image: bare })))).toMatch(/no command specified/);
    expect(buildContainerSpec(containerInput({ image: bare, config: containerConfig({ args: ['/only'] }) })).process?.args).toEqual(['/only']);
  });

  it('merges env: image, then CRI (key wins), default PATH, pod HOSTNAME', () => {
    const spec = buildContainerSpec(containerInput({ config: containerConfig({ envs: [kv('LANG', 'en_US.UTF-8'), kv('EXTRA', 'a=b')] }) }));
    expect(env(spec)).toEqual({ PATH: '/usr/bin:/bin', LANG: 'en_US.UTF-8', EXTRA: 'a=b', HOSTNAME: 'web-0' });
    const noPath = buildContainerSpec(containerInput({ image: { ...appImage, env: [] } }));
    expect(env(noPath).PATH).toBe('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(spec.process?.env?.filter((e) => e.startsWith('LANG='))).toHaveLength(1);
    const imageHost = buildContainerSpec(containerInput({ image: { ...appImage, env: ['HOSTNAME=img'] } }));
    expect(env(imageHost).HOSTNAME).toBe('web-0');
    const criHost = buildContainerSpec(containerInput({ config: containerConfig({ envs: [kv('HOSTNAME', 'mine')] }) }));
    expect(env(criHost).HOSTNAME).toBe('mine');
    const raw = containerConfig();
    raw.envs = [{ key: 'U8', value: new TextEncoder().encode('bytes') as Buffer }];
    expect(env(buildContainerSpec(containerInput({ config: raw }))).U8).toBe('bytes');
  });

  it('picks the working directory: CRI, image, then /', () => {
    expect(buildContainerSpec(containerInput({ config: containerConfig({ workingDir: '/w' }) })).process?.cwd).toBe('/w');
    expect(buildContainerSpec(containerInput()).process?.cwd).toBe('/srv');
    expect(buildContainerSpec(containerInput({ image: { ...appImage, workingDir: '' } })).process?.cwd).toBe('/');
  });

  it('maps tty, no_new_privs, readonly_rootfs, and the annotations', () => {
    const config = containerConfig({ tty: true, annotations: { a: 'b' }, linux: { securityContext: { noNewPrivs: true, readonlyRootfs: true } } });
    const spec = buildContainerSpec(containerInput({ config }));
    expect(spec.process?.terminal).toBe(true);
    expect(spec.process?.noNewPrivileges).toBe(true);
    expect(spec.root).toEqual({ path: 'rootfs', readonly: true });
    expect(spec.hostname).toBeUndefined();
    expect(spec.annotations).toMatchObject({
      a: 'b',
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.sandbox-id': 'sb1',
      'io.kubernetes.cri.container-name': 'app',
      'io.kubernetes.cri.image-name': 'docker.io/library/app:1',
    });
    expect(buildContainerSpec(containerInput()).process?.noNewPrivileges).toBe(false);
  });
});

describe('buildContainerSpec: namespaces', () => {
  const ns = (pod: object, target?: number): string[] => {
    const sandboxConfig = podConfig({ linux: { securityContext: { namespaceOptions: pod } } });
    const config = containerConfig({ linux: { securityContext: { namespaceOptions: pod } } });
    const spec = buildContainerSpec(containerInput({ sandboxConfig, config, ...(target ? { targetPid: target } : {}) }));
    return (spec.linux?.namespaces ?? []).map((n) => (n.path ? `${n.type}=${n.path}` : n.type)).sort();
  };

  it('joins the pause container for POD modes', () => {
    expect(ns({})).toEqual(['ipc=/proc/4242/ns/ipc', 'mount', 'network=/proc/4242/ns/net', 'pid=/proc/4242/ns/pid', 'uts=/proc/4242/ns/uts']);
  });

  it('makes a private pid namespace for CONTAINER and uses the target for TARGET', () => {
    expect(ns({ pid: NamespaceMode.CONTAINER })).toContain('pid');
    expect(ns({ pid: NamespaceMode.TARGET, targetId: 'other' }, 777)).toContain('pid=/proc/777/ns/pid');
    expect(errorOf(() => ns({ pid: NamespaceMode.TARGET, targetId: 'other' }))).toContain('target_id');
  });

  it('leaves out what is shared with the node', () => {
    expect(ns({ network: NamespaceMode.NODE, pid: NamespaceMode.NODE, ipc: NamespaceMode.NODE })).toEqual(['mount']);
    expect(ns({ ipc: NamespaceMode.NODE })).toEqual(['mount', 'network=/proc/4242/ns/net', 'pid=/proc/4242/ns/pid', 'uts=/proc/4242/ns/uts']);
  });

  it("takes network and IPC from the pod even if the container's options disagree", () => {
    const sandboxConfig = podConfig({ linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, ipc: NamespaceMode.NODE } } } });
    const config = containerConfig({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } } } });
    const spec = buildContainerSpec(containerInput({ sandboxConfig, config }));
    expect(spec.linux?.namespaces).toEqual([{ type: 'mount' }, { type: 'pid' }]);
  });

  it('refuses pod user namespaces and idmapped mounts', () => {
    const config = containerConfig({ linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: NamespaceMode.POD } } } } });
    expect(errorOf(() => buildContainerSpec(containerInput({ config })))).toContain('userns_options.mode: POD');
    const nodeUserns = containerConfig({ linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: NamespaceMode.NODE } } } } });
    expect(() => buildContainerSpec(containerInput({ config: nodeUserns }))).not.toThrow();
    const idmap = containerConfig({ mounts: [{ containerPath: '/d', hostPath: '/h', uidMappings: [{ containerId: 0, hostId: 1000, length: 1 }] }] });
    expect(errorOf(() => buildContainerSpec(containerInput({ config: idmap })))).toContain('config.mounts[0].uid_mappings');
  });

  it('falls back to the pod namespace options when the container names none', () => {
    const sandboxConfig = podConfig({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } } });
    const spec = buildContainerSpec(containerInput({ sandboxConfig }));
    expect(spec.linux?.namespaces?.some((n) => n.type === 'pid')).toBe(false);
  });
});

describe('buildContainerSpec: mounts', () => {
  it('binds the pod files and the pause /dev/shm over the defaults', () => {
    const spec = buildContainerSpec(containerInput());
    const m = (d: string): object | undefined => spec.mounts?.find((x) => x.destination === d);
    expect(m('/etc/hosts')).toEqual({ destination: '/etc/hosts', type: 'bind', source: '/run/sb/hosts', options: ['rbind', 'rprivate'] });
    expect(m('/etc/hostname')).toMatchObject({ source: '/run/sb/hostname' });
    expect(m('/etc/resolv.conf')).toMatchObject({ source: '/run/sb/resolv.conf' });
    expect(m('/dev/shm')).toMatchObject({ type: 'bind', source: '/proc/4242/root/dev/shm' });
    expect(spec.mounts?.filter((x) => x.destination === '/dev/shm')).toHaveLength(1);
  });

  it('maps CRI mounts with propagation and read-only, replacing same-destination mounts', () => {
    const config = containerConfig({
      mounts: [
        { containerPath: '/data/sub', hostPath: '/h/sub', propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL },
        { containerPath: '/data', hostPath: '/h/data', readonly: true, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER },
        { containerPath: '/etc/hosts', hostPath: '/kubelet/hosts' },
      ],
    });
    const spec = buildContainerSpec(containerInput({ config }));
    const dests = spec.mounts!.map((x) => x.destination);
    expect(dests.indexOf('/data')).toBeLessThan(dests.indexOf('/data/sub'));
    expect(dests.indexOf('/dev')).toBeLessThan(dests.indexOf('/dev/shm'));
    expect(spec.mounts?.find((x) => x.destination === '/data')).toEqual({ destination: '/data', type: 'bind', source: '/h/data', options: ['rbind', 'rslave', 'ro'] });
    expect(spec.mounts?.find((x) => x.destination === '/data/sub')?.options).toEqual(['rbind', 'rshared', 'rw']);
    expect(spec.linux?.rootfsPropagation).toBe('rshared');
    const slave = containerConfig({ mounts: [{ containerPath: '/d', hostPath: '/h', propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }] });
    expect(buildContainerSpec(containerInput({ config: slave })).linux?.rootfsPropagation).toBe('rslave');
    expect(buildContainerSpec(containerInput()).linux?.rootfsPropagation).toBeUndefined();
    expect(spec.mounts?.filter((x) => x.destination === '/etc/hosts')).toEqual([{ destination: '/etc/hosts', type: 'bind', source: '/kubelet/hosts', options: ['rbind', 'rprivate', 'rw'] }]);
  });

  it('lets a CRI mount replace a default kernel mount and keeps parents first', () => {
    const config = containerConfig({ mounts: [{ containerPath: '/dev/shm/', hostPath: '/h/shm' }, { containerPath: '/', hostPath: '/h/root' }] });
    const spec = buildContainerSpec(containerInput({ config }));
    expect(spec.mounts?.filter((x) => x.destination === '/dev/shm')).toEqual([{ destination: '/dev/shm', type: 'bind', source: '/h/shm', options: ['rbind', 'rprivate', 'rw'] }]);
    expect(spec.mounts?.[0]?.destination).toBe('/');
  });

  it('rejects a mount without a container path', () => {
    const config = containerConfig({ mounts: [{ containerPath: '', hostPath: '/x' }] });
    expect(errorOf(() => buildContainerSpec(containerInput({ config })))).toContain('config.mounts[0].container_path');
  });
});

describe('buildContainerSpec: devices', () => {
  it('adds CRI devices after the default cgroup rules', () => {
    const config = containerConfig({ devices: [{ hostPath: '/dev/fuse', containerPath: '/dev/fuse', permissions: 'rw' }, { hostPath: '/dev/sda', containerPath: '/dev/xvda', permissions: '' }] });
    const spec = buildContainerSpec(containerInput({ config }));
    expect(spec.linux?.devices).toEqual([
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
      { path: '/dev/xvda', type: 'b', major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 },
    ]);
    const rules = spec.linux?.resources?.devices ?? [];
    expect(rules[0]).toEqual({ allow: false, access: 'rwm' });
    expect(rules).toContainEqual({ allow: true, type: 'c', major: 136, access: 'rwm' });
    expect(rules).toContainEqual({ allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' });
    expect(rules.slice(-2)).toEqual([
      { allow: true, type: 'c', major: 10, minor: 229, access: 'rw' },
      { allow: true, type: 'b', major: 8, minor: 0, access: 'rwm' },
    ]);
  });

  it('rejects a missing device and bad permissions, naming the field', () => {
    const missing = containerConfig({ devices: [{ hostPath: '/dev/fuse', containerPath: '/dev/fuse', permissions: 'r' }, { hostPath: '/dev/nope', containerPath: '/dev/nope', permissions: 'r' }] });
    expect(errorOf(() => buildContainerSpec(containerInput({ config: missing })))).toContain('config.devices[1].host_path');
    const perms = containerConfig({ devices: [{ hostPath: '/dev/fuse', containerPath: '/dev/fuse', permissions: 'rx' }] });
    expect(errorOf(() => buildContainerSpec(containerInput({ config: perms })))).toContain('config.devices[0].permissions');
  });
});

describe('buildContainerSpec: privileged', () => {
  const priv = containerConfig({ linux: { securityContext: { privileged: true, seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault }, apparmorProfile: 'runtime/default' } } });

  it('requires a privileged pod', () => {
    expect(errorOf(() => buildContainerSpec(containerInput({ config: priv })))).toContain('privileged container in a non-privileged pod');
  });

  it('gets all caps and host devices, no seccomp/apparmor/masking, writable /sys', () => {
    const spec = buildContainerSpec(containerInput({ config: priv, sandboxConfig: privilegedPod, apparmorEnabled: true }));
    expect(spec.process?.capabilities?.bounding).toContain('CAP_SYS_ADMIN');
    expect(spec.process?.capabilities?.bounding).toContain('CAP_BPF');
    expect(spec.linux?.seccomp).toBeUndefined();
    expect(spec.process?.apparmorProfile).toBeUndefined();
    expect(spec.linux?.maskedPaths).toBeUndefined();
    expect(spec.linux?.readonlyPaths).toBeUndefined();
    expect(spec.mounts?.find((m) => m.destination === '/sys')?.options).toContain('rw');
    expect(spec.mounts?.find((m) => m.destination === '/sys/fs/cgroup')?.options).toContain('rw');
    expect(spec.linux?.devices?.map((d) => d.path)).toEqual(['/dev/null', '/dev/fuse', '/dev/sda']);
    expect(spec.linux?.resources?.devices).toEqual([{ allow: true, access: 'rwm' }]);
  });
});

describe('buildContainerSpec: masked and read-only paths, resources, cgroups', () => {
  it('uses CRI masked/readonly paths when given, defaults otherwise', () => {
    const config = containerConfig({ linux: { securityContext: { maskedPaths: ['/proc/x'], readonlyPaths: ['/proc/y'] } } });
    const spec = buildContainerSpec(containerInput({ config }));
    expect(spec.linux?.maskedPaths).toEqual(['/proc/x']);
    expect(spec.linux?.readonlyPaths).toEqual(['/proc/y']);
    const d = buildContainerSpec(containerInput());
    expect(d.linux?.maskedPaths).toContain('/sys/firmware');
    expect(d.linux?.readonlyPaths).toEqual(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);
  });

  it("places the container under the pod's cgroup parent with its own id", () => {
    const sandboxConfig = podConfig({ linux: { cgroupParent: '/kubepods/pod1' } });
    expect(buildContainerSpec(containerInput({ sandboxConfig })).linux?.cgroupsPath).toBe('/kubepods/pod1/c1');
    const slice = podConfig({ linux: { cgroupParent: 'kubepods-pod1.slice' } });
    expect(buildContainerSpec(containerInput({ sandboxConfig: slice, cgroupDriver: 'systemd' })).linux?.cgroupsPath).toBe('kubepods-pod1.slice:berth:c1');
  });

  it('turns CRI resources into linux.resources and clamps oom_score_adj', () => {
    const config = containerConfig({ linux: { resources: { cpuShares: 512, cpuQuota: 50000, cpuPeriod: 100000, memoryLimitInBytes: 1 << 28, oomScoreAdj: -1000 } } });
    const spec = buildContainerSpec(containerInput({ config, minOomScoreAdj: -500 }));
    expect(spec.linux?.resources?.cpu).toEqual({ shares: 512, quota: 50000, period: 100000 });
    expect(spec.linux?.resources?.memory).toEqual({ limit: 1 << 28 });
    expect(spec.process?.oomScoreAdj).toBe(-500);
  });

  it('copies pod sysctls', () => {
    const sandboxConfig = podConfig({ linux: { sysctls: { 'net.ipv4.ping_group_range': '0 0' } } });
    expect(buildContainerSpec(containerInput({ sandboxConfig })).linux?.sysctl).toEqual({ 'net.ipv4.ping_group_range': '0 0' });
  });

  it('serialises to JSON', () => {
    expect(() => JSON.stringify(buildContainerSpec(containerInput({ config: containerConfig({ devices: [{ hostPath: devFuse.path, containerPath: '/dev/fuse' }, { hostPath: devSda.path, containerPath: '/dev/sda' }] }) })))).not.toThrow();
  });
});
