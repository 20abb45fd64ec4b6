import { describe, expect, it } from 'vitest';
import { buildSandboxSpec } from '../../../../cri-shim/oci/sandbox-spec.js';
import { defaultCapabilities } from '../../../../cri-shim/oci/security.js';
import { NamespaceMode, SecurityProfile_ProfileType } from '../../../../proto/gen/runtime/v1/api.js';
import { errorOf, podConfig, sandboxInput } from './fixtures.js';

const nsTypes = (spec: ReturnType<typeof buildSandboxSpec>): string[] => (spec.linux?.namespaces ?? []).map((n) => (n.path ? `${n.type}=${n.path}` : n.type)).sort();

describe('buildSandboxSpec', () => {
  it('runs the image entrypoint as root in /, with the pod hostname and the sandbox annotations', () => {
    const spec = buildSandboxSpec(sandboxInput());
    expect(spec.ociVersion).toMatch(/^1\./);
    expect(spec.process?.args).toEqual(['/pause']);
    expect(spec.process?.cwd).toBe('/');
    expect(spec.process?.user).toEqual({ uid: 0, gid: 0 });
    expect(spec.root).toEqual({ path: 'rootfs', readonly: false });
    expect(spec.hostname).toBe('web-0');
    expect(spec.annotations).toMatchObject({
      'io.kubernetes.cri.container-type': 'sandbox',
      'io.kubernetes.cri.sandbox-id': 'sb1',
      'io.kubernetes.cri.sandbox-name': 'web',
      'io.kubernetes.cri.sandbox-namespace': 'default',
    });
    expect(spec.process?.capabilities?.bounding).toEqual(expect.arrayContaining(defaultCapabilities));
    expect(spec.process?.capabilities?.bounding).toHaveLength(defaultCapabilities.length);
    expect(spec.process?.capabilities?.inheritable).toBeUndefined();
    expect(spec.linux?.maskedPaths).toContain('/proc/kcore');
    expect(spec.linux?.readonlyPaths).toContain('/proc/sys');
  });

  it('concatenates entrypoint and cmd, and refuses an image with neither', () => {
    expect(buildSandboxSpec(sandboxInput({ image: { user: '', env: [], entrypoint: ['/pause'], cmd: ['-v'], workingDir: '', stopSignal: '' } })).process?.args).toEqual(['/pause', '-v']);
    expect(errorOf(() => buildSandboxSpec(sandboxInput({ image: { user: '', env: [], entrypoint: [], cmd: [], workingDir: '', stopSignal: '' } })))).toMatch(/no command/);
  });

  it('takes user, group, supplemental groups and read-only rootfs from the security context', () => {
    const config = podConfig({ linux: { securityContext: { runAsUser: { value: 65535 }, runAsGroup: { value: 65534 }, supplementalGroups: [5, 65534], readonlyRootfs: true } } });
    const spec = buildSandboxSpec(sandboxInput({ config }));
    expect(spec.process?.user).toEqual({ uid: 65535, gid: 65534, additionalGids: [5] });
    expect(spec.root?.readonly).toBe(true);
    const bad = podConfig({ linux: { securityContext: { runAsGroup: { value: 5 } } } });
    expect(buildSandboxSpec(sandboxInput({ config: bad })).process?.user).toEqual({ uid: 0, gid: 5 });
  });

  it('creates every namespace for a plain pod, and joins a given network namespace', () => {
    expect(nsTypes(buildSandboxSpec(sandboxInput()))).toEqual(['ipc', 'mount', 'network', 'pid', 'uts']);
    expect(nsTypes(buildSandboxSpec(sandboxInput({ netnsPath: '/run/netns/x' })))).toEqual(['ipc', 'mount', 'network=/run/netns/x', 'pid', 'uts']);
  });

  it('leaves out the namespaces a pod shares with the node', () => {
    const hostAll = podConfig({ linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.NODE, ipc: NamespaceMode.NODE } } } });
    const spec = buildSandboxSpec(sandboxInput({ config: hostAll }));
    expect(nsTypes(spec)).toEqual(['mount']);
    expect(spec.hostname).toBeUndefined();
    expect(spec.mounts?.find((m) => m.destination === '/dev/shm')).toMatchObject({ type: 'bind', source: '/dev/shm' });
    const hostPid = podConfig({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } } });
    expect(nsTypes(buildSandboxSpec(sandboxInput({ config: hostPid })))).toEqual(['ipc', 'mount', 'network', 'uts']);
  });

  it('mounts the kernel filesystems with a 64m /dev/shm and read-only /sys', () => {
    const spec = buildSandboxSpec(sandboxInput());
    expect(spec.mounts?.map((m) => m.destination)).toEqual(['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup']);
    expect(spec.mounts?.find((m) => m.destination === '/dev/shm')?.options).toContain('size=65536k');
    expect(spec.mounts?.find((m) => m.destination === '/sys')?.options).toContain('ro');
    expect(spec.mounts?.find((m) => m.destination === '/sys/fs/cgroup')?.options).toContain('ro');
  });

  it('binds a host-side pod /dev/shm when the daemon provides one', () => {
    const files = { hostname: '', hosts: '', resolvConf: '', shm: '/run/berth/sb1/shm' };
    expect(buildSandboxSpec(sandboxInput({ sandboxFiles: files })).mounts?.find((m) => m.destination === '/dev/shm')).toEqual({ destination: '/dev/shm', type: 'bind', source: '/run/berth/sb1/shm', options: ['rbind', 'rprivate'] });
  });

  it('copies pod sysctls and refuses node-wide ones for host network and host IPC pods', () => {
    const ok = podConfig({ linux: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shmmax': '1' } } });
    expect(buildSandboxSpec(sandboxInput({ config: ok })).linux?.sysctl).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shmmax': '1' });
    const net = podConfig({ linux: { sysctls: { 'net.core.somaxconn': '1024' }, securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } } });
    expect(errorOf(() => buildSandboxSpec(sandboxInput({ config: net })))).toContain('config.linux.sysctls["net.core.somaxconn"]');
    for (const name of ['kernel.shmall', 'kernel.msgmax', 'kernel.sem', 'fs.mqueue.msg_max']) {
      const ipc = podConfig({ linux: { sysctls: { [name]: '1' }, securityContext: { namespaceOptions: { ipc: NamespaceMode.NODE } } } });
      expect(errorOf(() => buildSandboxSpec(sandboxInput({ config: ipc })))).toContain(`config.linux.sysctls["${name}"]`);
    }
    // Host IPC alone does not restrict net.* sysctls.
    const ipcNet = podConfig({ linux: { sysctls: { 'net.core.somaxconn': '1' }, securityContext: { namespaceOptions: { ipc: NamespaceMode.NODE } } } });
    expect(buildSandboxSpec(sandboxInput({ config: ipcNet })).linux?.sysctl).toEqual({ 'net.core.somaxconn': '1' });
  });

  it('clamps oom_score_adj to -998 unless berth itself may not go that low', () => {
    expect(buildSandboxSpec(sandboxInput({ minOomScoreAdj: -1000 })).process?.oomScoreAdj).toBe(-998);
    expect(buildSandboxSpec(sandboxInput({ minOomScoreAdj: -500 })).process?.oomScoreAdj).toBe(-500);
  });

  it('names the cgroup for both drivers', () => {
    expect(buildSandboxSpec(sandboxInput()).linux?.cgroupsPath).toBe('/berth.io/sb1');
    const parented = podConfig({ linux: { cgroupParent: '/kubepods/burstable/pod1' } });
    expect(buildSandboxSpec(sandboxInput({ config: parented })).linux?.cgroupsPath).toBe('/kubepods/burstable/pod1/sb1');
    expect(buildSandboxSpec(sandboxInput({ cgroupDriver: 'systemd' })).linux?.cgroupsPath).toBe('system.slice:berth:sb1');
    const slice = podConfig({ linux: { cgroupParent: 'kubepods-burstable-pod1.slice' } });
    expect(buildSandboxSpec(sandboxInput({ config: slice, cgroupDriver: 'systemd' })).linux?.cgroupsPath).toBe('kubepods-burstable-pod1.slice:berth:sb1');
  });

  it('applies the sandbox seccomp choice', () => {
    expect(buildSandboxSpec(sandboxInput()).linux?.seccomp).toBeUndefined();
    const rd = podConfig({ linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } } });
    expect(buildSandboxSpec(sandboxInput({ config: rd })).linux?.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    const path = podConfig({ linux: { securityContext: { seccompProfilePath: 'runtime/default' } } });
    expect(buildSandboxSpec(sandboxInput({ config: path })).linux?.seccomp).toBeDefined();
  });

  it('applies the sandbox AppArmor profile when one is asked for', () => {
    expect(buildSandboxSpec(sandboxInput({ apparmorEnabled: true })).process?.apparmorProfile).toBeUndefined();
    const rd = podConfig({ linux: { securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } } });
    expect(buildSandboxSpec(sandboxInput({ config: rd, apparmorEnabled: true })).process?.apparmorProfile).toBe('berth-default');
    expect(buildSandboxSpec(sandboxInput({ config: rd })).process?.apparmorProfile).toBeUndefined();
  });

  it('limits a privileged pod to the capabilities the daemon holds', () => {
    const config = podConfig({ linux: { securityContext: { privileged: true } } });
    expect(buildSandboxSpec(sandboxInput({ config, availableCapabilities: ['CAP_CHOWN', 'CAP_SYS_ADMIN'] })).process?.capabilities?.bounding).toEqual(['CAP_CHOWN', 'CAP_SYS_ADMIN']);
  });

  it('gives a privileged pod all capabilities, no seccomp, writable /sys and no masked paths', () => {
    const config = podConfig({ linux: { securityContext: { privileged: true, seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } } });
    const spec = buildSandboxSpec(sandboxInput({ config }));
    expect(spec.process?.capabilities?.bounding).toContain('CAP_SYS_ADMIN');
    expect(spec.linux?.seccomp).toBeUndefined();
    expect(spec.mounts?.find((m) => m.destination === '/sys')?.options).toContain('rw');
    expect(spec.linux?.maskedPaths).toBeUndefined();
    expect(spec.linux?.readonlyPaths).toBeUndefined();
  });

  it('produces plain JSON (no bigint, no undefined values surviving a round trip)', () => {
    const spec = buildSandboxSpec(sandboxInput({ config: podConfig({ linux: { securityContext: { runAsUser: { value: 1 } } } }) }));
    expect(JSON.parse(JSON.stringify(spec))).toEqual(JSON.parse(JSON.stringify(spec)));
    expect(() => JSON.stringify(spec)).not.toThrow();
  });
});
