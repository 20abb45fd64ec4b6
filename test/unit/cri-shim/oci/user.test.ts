import { describe, expect, it } from 'vitest';
import { buildContainerSpec } from '../../../../cri-shim/oci/container-spec.js';
import { parseGroup, parsePasswd, resolveUser } from '../../../../cri-shim/oci/user.js';
import { LinuxContainerSecurityContext, SupplementalGroupsPolicy, type DeepPartial } from '../../../../proto/gen/runtime/v1/api.js';
import { containerConfig, containerInput, errorOf, group, passwd } from './fixtures.js';

const user = (imageUser: string, sc: DeepPartial<LinuxContainerSecurityContext> | undefined = undefined, files = { etcPasswd: passwd, etcGroup: group }) =>
  resolveUser({ securityContext: sc ? LinuxContainerSecurityContext.fromPartial(sc) : undefined, imageUser, ...files });

describe('user resolution', () => {
  it('parses passwd and group, skipping junk lines', () => {
    expect(parsePasswd('# c\nroot:x:0:0::/:/bin/sh\nbroken\nx:x:a:b::/:\n')).toEqual([{ name: 'root', uid: 0, gid: 0 }]);
    expect(parseGroup('wheel:x:10:a, b\n')).toEqual([{ name: 'wheel', gid: 10, members: ['a', 'b'] }]);
  });

  it('defaults to root', () => {
    expect(user('')).toEqual({ uid: 0, gid: 0 });
    expect(user('', undefined, { etcPasswd: undefined as unknown as string, etcGroup: undefined as unknown as string })).toEqual({ uid: 0, gid: 0 });
  });

  it('resolves the image User forms', () => {
    expect(user('app')).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29] });
    expect(user('1000')).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29] });
    expect(user('1234')).toEqual({ uid: 1234, gid: 0 }); // unknown numeric uid is fine
    expect(user('1234:55')).toEqual({ uid: 1234, gid: 55 });
    expect(user('app:staff')).toEqual({ uid: 1000, gid: 50, additionalGids: [10, 29] });
    expect(user('app:10')).toEqual({ uid: 1000, gid: 10, additionalGids: [29] }); // primary gid not repeated
  });

  it('rejects names the image does not know', () => {
    expect(errorOf(() => user('ghost'))).toMatch(/user "ghost" not found/);
    expect(errorOf(() => user('app:ghosts'))).toMatch(/group "ghosts" not found/);
  });

  it('prefers run_as_user over the image, looking up its groups', () => {
    expect(user('nobody', { runAsUser: { value: 1000 } })).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29] });
    expect(user('app', { runAsUser: { value: 4321 } })).toEqual({ uid: 4321, gid: 0 });
    expect(user('app', { runAsUser: { value: 0 } })).toEqual({ uid: 0, gid: 0 });
  });

  it('resolves run_as_username and names it when missing', () => {
    expect(user('', { runAsUsername: 'app' })).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29] });
    expect(errorOf(() => user('', { runAsUsername: 'ghost' }))).toContain('config.linux.security_context.run_as_username');
  });

  it('lets run_as_group override the gid but only together with a user', () => {
    expect(user('', { runAsUser: { value: 1000 }, runAsGroup: { value: 29 } })).toEqual({ uid: 1000, gid: 29, additionalGids: [10] });
    expect(errorOf(() => user('app', { runAsGroup: { value: 5 } }))).toBe('config.linux.security_context.run_as_group requires run_as_user or run_as_username');
  });

  it('adds supplemental groups, deduplicated and without the primary gid', () => {
    expect(user('app', { supplementalGroups: [29, 1000, 7, 7] })).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29, 7] });
  });

  it('with the Strict policy uses only the pod\'s groups, none from the image\'s /etc/group', () => {
    expect(user('app', { supplementalGroups: [7], supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict })).toEqual({ uid: 1000, gid: 1000, additionalGids: [7] });
    expect(user('app', { supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict })).toEqual({ uid: 1000, gid: 1000 });
    expect(user('app', { supplementalGroups: [7], supplementalGroupsPolicy: SupplementalGroupsPolicy.Merge })).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29, 7] });
  });

  it('is wired into the container spec', () => {
    const config = containerConfig({ linux: { securityContext: { runAsUser: { value: 1000 }, supplementalGroups: [3] } } });
    expect(buildContainerSpec(containerInput({ config })).process?.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29, 3] });
  });
});
