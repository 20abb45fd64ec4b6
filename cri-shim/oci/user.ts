import { BerthError } from '../../lib/errors.js';
import { SupplementalGroupsPolicy, type LinuxContainerSecurityContext } from '../../proto/gen/runtime/v1/api.js';
import type { User } from './spec-types.js';

// The container process's uid/gid/groups from the CRI security context, the image's User and
// the image's own /etc/passwd and /etc/group (read by the caller).

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function lines(text: string | undefined): string[][] {
  if (!text) return [];
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

export function parsePasswd(text: string | undefined): PasswdEntry[] {
  return lines(text)
    .filter((f) => f.length >= 4 && /^\d+$/.test(f[2]!) && /^\d+$/.test(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) }));
}

export function parseGroup(text: string | undefined): GroupEntry[] {
  return lines(text)
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean) }));
}

const isNumeric = (s: string): boolean => /^\d+$/.test(s);

export interface UserInput {
  securityContext: LinuxContainerSecurityContext | undefined;
  imageUser: string;
  etcPasswd: string | undefined;
  etcGroup: string | undefined;
}

/** Resolve the process user; names that the image's files do not know are InvalidArgument. */
export function resolveUser(input: UserInput): User {
  const sc = input.securityContext;
  const passwd = parsePasswd(input.etcPasswd);
  const groups = parseGroup(input.etcGroup);
  const field = 'config.linux.security_context';
  if (sc?.runAsGroup && !sc.runAsUser && !sc.runAsUsername) {
    throw new BerthError('invalid-argument', `${field}.run_as_group requires run_as_user or run_as_username`);
  }

  let uid: number;
  let gid = 0;
  let name: string | undefined;
  if (sc?.runAsUser) {
    uid = Number(sc.runAsUser.value);
    const entry = passwd.find((p) => p.uid === uid);
    if (entry) ({ gid, name } = entry);
  } else if (sc?.runAsUsername) {
    const entry = passwd.find((p) => p.name === sc.runAsUsername);
    if (!entry) throw new BerthError('invalid-argument', `${field}.run_as_username: user "${sc.runAsUsername}" not found in the image's /etc/passwd`);
    ({ uid, gid, name } = entry);
  } else {
    const spec = input.imageUser ?? '';
    const [userPart = '', groupPart] = spec.split(':', 2);
    if (userPart === '') {
      uid = 0;
      const root = passwd.find((p) => p.uid === 0);
      if (root) ({ gid, name } = root);
    } else if (isNumeric(userPart)) {
      uid = Number(userPart);
      const entry = passwd.find((p) => p.uid === uid);
      if (entry) ({ gid, name } = entry);
    } else {
      const entry = passwd.find((p) => p.name === userPart);
      if (!entry) throw new BerthError('invalid-argument', `image User "${spec}": user "${userPart}" not found in the image's /etc/passwd`);
      ({ uid, gid, name } = entry);
    }
    if (groupPart !== undefined && groupPart !== '') {
      if (isNumeric(groupPart)) gid = Number(groupPart);
      else {
        const g = groups.find((e) => e.name === groupPart);
        if (!g) throw new BerthError('invalid-argument', `image User "${spec}": group "${groupPart}" not found in the image's /etc/group`);
        gid = g.gid;
      }
    }
  }
  if (sc?.runAsGroup) gid = Number(sc.runAsGroup.value);

  const extra: number[] = [];
  // Merge (the default) adds the groups the image's /etc/group gives the user; Strict uses only
  // the pod's own (KEP-3619), so an image cannot put the process in groups the pod did not ask for.
  const strict = sc?.supplementalGroupsPolicy === SupplementalGroupsPolicy.Strict;
  if (name !== undefined && !strict) for (const g of groups) if (g.members.includes(name)) extra.push(g.gid);
  for (const g of sc?.supplementalGroups ?? []) extra.push(Number(g));
  const additionalGids = [...new Set(extra)].filter((g) => g !== gid);

  const user: User = { uid, gid };
  if (additionalGids.length) user.additionalGids = additionalGids;
  return user;
}
