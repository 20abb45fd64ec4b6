import { describe, expect, it } from 'vitest';
import { buildContainerSpec } from '../../../../cri-shim/oci/container-spec.js';
import { defaultSeccompProfile } from '../../../../cri-shim/oci/seccomp-default.js';
import { allCapabilities, capabilitiesFromMask, capabilitySet, defaultCapabilities } from '../../../../cri-shim/oci/security.js';
import type { LinuxSeccomp } from '../../../../cri-shim/oci/spec-types.js';
import { Capability, SecurityProfile_ProfileType, type DeepPartial, type LinuxContainerSecurityContext } from '../../../../proto/gen/runtime/v1/api.js';
import { containerConfig, containerInput, errorOf } from './fixtures.js';

const caps = (add: string[], drop: string[]): string[] => capabilitySet(Capability.fromPartial({ addCapabilities: add, dropCapabilities: drop }), false);
const allowedNames = (p: LinuxSeccomp): Set<string> =>
  new Set((p.syscalls ?? []).filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args).flatMap((s) => s.names));
const withSc = (sc: DeepPartial<LinuxContainerSecurityContext>, extra: Parameters<typeof containerInput>[0] = {}) =>
  buildContainerSpec(containerInput({ config: containerConfig({ linux: { securityContext: sc } }), ...extra }));

describe('capabilities', () => {
  it('starts from the default set in bounding/effective/permitted only', () => {
    const spec = buildContainerSpec(containerInput());
    const c = spec.process?.capabilities;
    expect([...(c?.bounding ?? [])].sort()).toEqual([...defaultCapabilities].sort());
    expect(c?.effective).toEqual(c?.bounding);
    expect(c?.permitted).toEqual(c?.bounding);
    expect(c?.inheritable).toBeUndefined();
    expect(c?.ambient).toBeUndefined();
  });

  it('adds and drops with or without the CAP_ prefix, in any case', () => {
    const set = caps(['NET_ADMIN', 'cap_sys_time'], ['CAP_KILL', 'mknod']);
    expect(set).toContain('CAP_NET_ADMIN');
    expect(set).toContain('CAP_SYS_TIME');
    expect(set).not.toContain('CAP_KILL');
    expect(set).not.toContain('CAP_MKNOD');
    expect(set).toHaveLength(defaultCapabilities.length);
  });

  it('treats ALL in add as every capability, ALL in drop as none but the explicit adds', () => {
    expect(caps(['ALL'], [])).toEqual(allCapabilities);
    expect(caps(['ALL'], ['SYS_ADMIN'])).not.toContain('CAP_SYS_ADMIN');
    expect(caps(['NET_BIND_SERVICE'], ['ALL'])).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(caps([], ['ALL'])).toEqual([]);
  });

  it('reads a CapBnd mask and lets it bound what ALL means', () => {
    expect(capabilitiesFromMask('000001ffffffffff')).toEqual(allCapabilities);
    const noSysResource = capabilitiesFromMask('000001fffeffffff');
    expect(noSysResource).not.toContain('CAP_SYS_RESOURCE');
    expect(noSysResource).toHaveLength(allCapabilities.length - 1);
    expect(capabilitiesFromMask('0000000000000003')).toEqual(['CAP_CHOWN', 'CAP_DAC_OVERRIDE']);
    expect(capabilitySet(Capability.fromPartial({ addCapabilities: ['ALL'] }), false, undefined, noSysResource)).toEqual(noSysResource);
    expect(capabilitySet(undefined, true, undefined, noSysResource)).toEqual(noSysResource);
  });

  it('rejects unknown names, naming the list', () => {
    expect(errorOf(() => caps(['CAP_FLY'], []))).toMatch(/add_capabilities: unknown capability "CAP_FLY"/);
    expect(errorOf(() => caps([], ['nope']))).toMatch(/drop_capabilities/);
  });

  it('sets ambient (and inheritable) capabilities that are in the set', () => {
    const spec = withSc({ capabilities: { addCapabilities: ['NET_ADMIN'], addAmbientCapabilities: ['NET_ADMIN'] } });
    expect(spec.process?.capabilities?.ambient).toEqual(['CAP_NET_ADMIN']);
    expect(spec.process?.capabilities?.inheritable).toEqual(['CAP_NET_ADMIN']);
  });
});

describe('seccomp', () => {
  it('builds the default profile with errno EPERM, both architecture families and common calls', () => {
    const p = defaultSeccompProfile(defaultCapabilities);
    expect(p.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(p.defaultErrnoRet).toBe(1);
    expect(p.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    const names = allowedNames(p);
    for (const n of ['read', 'write', 'openat', 'execve', 'futex', 'socket', 'clone3', 'epoll_pwait', 'getrandom', 'chroot']) {
      if (n === 'clone3') expect(names.has(n)).toBe(false);
      else expect(names.has(n)).toBe(true);
    }
    expect(names.size).toBeGreaterThan(250);
  });

  it('opens privileged calls only with the matching capability', () => {
    const plain = allowedNames(defaultSeccompProfile(defaultCapabilities));
    for (const n of ['mount', 'unshare', 'setns', 'ptrace', 'reboot', 'init_module', 'settimeofday', 'process_vm_readv']) expect(plain.has(n)).toBe(false);
    const admin = allowedNames(defaultSeccompProfile([...defaultCapabilities, 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE', 'CAP_SYS_TIME']));
    for (const n of ['mount', 'umount2', 'unshare', 'setns', 'pivot_root', 'sethostname', 'clone', 'clone3', 'ptrace', 'process_vm_readv', 'settimeofday']) expect(admin.has(n)).toBe(true);
    expect(admin.has('reboot')).toBe(false);
    const noChroot = allowedNames(defaultSeccompProfile(defaultCapabilities.filter((c) => c !== 'CAP_SYS_CHROOT')));
    expect(noChroot.has('chroot')).toBe(false);
  });

  it('restricts clone to non-namespace flags and makes clone3 fall back without CAP_SYS_ADMIN', () => {
    const p = defaultSeccompProfile(defaultCapabilities);
    expect(p.syscalls).toContainEqual({ names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
    expect(p.syscalls).toContainEqual({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  });

  it('maps the deprecated path strings', () => {
    expect(withSc({ seccompProfilePath: '' }).linux?.seccomp).toBeUndefined();
    expect(withSc({ seccompProfilePath: 'unconfined' }).linux?.seccomp).toBeUndefined();
    expect(withSc({ seccompProfilePath: 'runtime/default' }).linux?.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(withSc({ seccompProfilePath: 'docker/default' }).linux?.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(errorOf(() => withSc({ seccompProfilePath: 'weird' }))).toContain('seccomp_profile_path');
  });

  it('reads localhost profiles and names a bad one', () => {
    const files: Record<string, string> = { '/p/ok.json': '{"defaultAction":"SCMP_ACT_LOG"}', '/p/bad.json': '{nope' };
    const readFile = (p: string): string => {
      if (!(p in files)) throw new Error('ENOENT');
      return files[p]!;
    };
    expect(withSc({ seccompProfilePath: 'localhost//p/ok.json' }, { readFile }).linux?.seccomp).toEqual({ defaultAction: 'SCMP_ACT_LOG' });
    expect(withSc({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: '/p/ok.json' } }, { readFile }).linux?.seccomp).toEqual({ defaultAction: 'SCMP_ACT_LOG' });
    expect(errorOf(() => withSc({ seccompProfilePath: 'localhost//p/bad.json' }, { readFile }))).toMatch(/\/p\/bad\.json.*not valid JSON/);
    expect(errorOf(() => withSc({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: '/p/none' } }, { readFile }))).toContain('/p/none');
    expect(errorOf(() => withSc({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: 'rel.json' } }, { readFile }))).toContain('absolute');
  });

  it('prefers the seccomp message over the path string', () => {
    expect(withSc({ seccomp: { profileType: SecurityProfile_ProfileType.Unconfined }, seccompProfilePath: 'runtime/default' }).linux?.seccomp).toBeUndefined();
    expect(withSc({ seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault }, seccompProfilePath: 'unconfined' }).linux?.seccomp).toBeDefined();
  });

  it('builds the default profile from the final capability set', () => {
    const spec = withSc({ seccompProfilePath: 'runtime/default', capabilities: { addCapabilities: ['SYS_ADMIN'] } });
    expect(allowedNames(spec.linux!.seccomp!).has('mount')).toBe(true);
  });
});

describe('apparmor', () => {
  it('uses berth-default for runtime/default only when AppArmor is enabled', () => {
    expect(withSc({ apparmorProfile: 'runtime/default' }, { apparmorEnabled: true }).process?.apparmorProfile).toBe('berth-default');
    expect(withSc({ apparmorProfile: 'runtime/default' }).process?.apparmorProfile).toBeUndefined();
    expect(withSc({ apparmor: { profileType: SecurityProfile_ProfileType.RuntimeDefault } }, { apparmorEnabled: true }).process?.apparmorProfile).toBe('berth-default');
  });

  it('handles unconfined, localhost and the message precedence', () => {
    expect(withSc({ apparmorProfile: 'unconfined' }, { apparmorEnabled: true }).process?.apparmorProfile).toBeUndefined();
    expect(withSc({ apparmorProfile: 'localhost/my-prof' }, { apparmorEnabled: true }).process?.apparmorProfile).toBe('my-prof');
    expect(withSc({ apparmor: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: 'other' }, apparmorProfile: 'unconfined' }, { apparmorEnabled: true }).process?.apparmorProfile).toBe('other');
    expect(errorOf(() => withSc({ apparmorProfile: 'localhost/my-prof' }))).toMatch(/apparmor_profile.*not enabled/);
  });
});
