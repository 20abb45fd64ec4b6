import { BerthError } from '../../lib/errors.js';
import { SecurityProfile_ProfileType, type Capability, type SecurityProfile } from '../../proto/gen/runtime/v1/api.js';
import { defaultSeccompProfile } from './seccomp-default.js';
import type { Capabilities, LinuxSeccomp } from './spec-types.js';

// Capabilities, seccomp and AppArmor from a CRI security context.

export const defaultCapabilities = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

// Every capability Linux defines, in kernel number order.
export const allCapabilities = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT',
  'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG',
  'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

const known = new Set(allCapabilities);

function capName(raw: string, field: string): string {
  const upper = raw.trim().toUpperCase();
  const name = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!known.has(name)) throw new BerthError('invalid-argument', `${field}: unknown capability "${raw}"`);
  return name;
}

const isAll = (raw: string): boolean => ['ALL', 'CAP_ALL'].includes(raw.trim().toUpperCase());

/**
 * Capability names in a /proc/<pid>/status mask (CapBnd: hex). runc cannot grant what its own
 * bounding set lacks, so "all capabilities" is best read from the daemon's own CapBnd.
 */
export function capabilitiesFromMask(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim() || '0'}`);
  return allCapabilities.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

/**
 * The capability set: defaults, plus adds, minus drops ("ALL" in either list means all of them).
 * `available` (the daemon's bounding set, when known) limits what "all" means.
 */
export function capabilitySet(c: Capability | undefined, privileged: boolean, field = 'config.linux.security_context.capabilities', available?: string[]): string[] {
  const all = available ? allCapabilities.filter((n) => available.includes(n)) : allCapabilities;
  if (privileged) return [...all];
  const add = c?.addCapabilities ?? [];
  const drop = c?.dropCapabilities ?? [];
  const added = add.filter((n) => !isAll(n)).map((n) => capName(n, `${field}.add_capabilities`));
  const dropped = drop.filter((n) => !isAll(n)).map((n) => capName(n, `${field}.drop_capabilities`));
  let set: Set<string>;
  if (drop.some(isAll)) {
    // Drop everything, then grant only what was named explicitly.
    set = new Set(add.some(isAll) ? all : added);
  } else {
    set = new Set(add.some(isAll) ? all : [...defaultCapabilities, ...added]);
    for (const d of dropped) set.delete(d);
  }
  return allCapabilities.filter((n) => set.has(n));
}

export function capabilities(set: string[], ambient: string[] = []): Capabilities {
  const out: Capabilities = { bounding: [...set], effective: [...set], permitted: [...set] };
  if (ambient.length) {
    out.inheritable = [...ambient];
    out.ambient = [...ambient];
  }
  return out;
}

/** Ambient capabilities (CRI add_ambient_capabilities); each must also be in the set. */
export function ambientCapabilities(c: Capability | undefined, set: string[], field = 'config.linux.security_context.capabilities'): string[] {
  const out = (c?.addAmbientCapabilities ?? []).map((n) => capName(n, `${field}.add_ambient_capabilities`));
  return out.filter((n) => set.includes(n));
}

type Choice = { kind: 'none' } | { kind: 'default' } | { kind: 'localhost'; ref: string };

function fromString(value: string, field: string): Choice {
  if (value === '' || value === 'unconfined') return { kind: 'none' };
  if (value === 'runtime/default' || value === 'docker/default') return { kind: 'default' };
  if (value.startsWith('localhost/')) return { kind: 'localhost', ref: value.slice('localhost/'.length) };
  throw new BerthError('invalid-argument', `${field}: unsupported profile "${value}"`);
}

function fromMessage(p: SecurityProfile, field: string): Choice {
  switch (p.profileType) {
    case SecurityProfile_ProfileType.RuntimeDefault:
      return { kind: 'default' };
    case SecurityProfile_ProfileType.Unconfined:
      return { kind: 'none' };
    case SecurityProfile_ProfileType.Localhost:
      if (!p.localhostRef) throw new BerthError('invalid-argument', `${field}.localhost_ref is required for a Localhost profile`);
      return { kind: 'localhost', ref: p.localhostRef.startsWith('localhost/') ? p.localhostRef.slice('localhost/'.length) : p.localhostRef };
    default:
      throw new BerthError('invalid-argument', `${field}.profile_type: unknown value ${String(p.profileType)}`);
  }
}

export interface SeccompSource {
  seccomp?: SecurityProfile | undefined;
  seccompProfilePath: string;
}

/** The seccomp filter for a security context; the `seccomp` message wins over the old string. */
export function seccompFor(sc: SeccompSource | undefined, caps: string[], readFile: (path: string) => string, prefix: string): LinuxSeccomp | undefined {
  if (!sc) return undefined;
  const choice = sc.seccomp ? fromMessage(sc.seccomp, `${prefix}.seccomp`) : fromString(sc.seccompProfilePath, `${prefix}.seccomp_profile_path`);
  if (choice.kind === 'none') return undefined;
  if (choice.kind === 'default') return defaultSeccompProfile(caps);
  const field = sc.seccomp ? `${prefix}.seccomp.localhost_ref` : `${prefix}.seccomp_profile_path`;
  if (!choice.ref.startsWith('/')) throw new BerthError('invalid-argument', `${field}: profile path "${choice.ref}" must be absolute`);
  let text: string;
  try {
    text = readFile(choice.ref);
  } catch (err) {
    throw new BerthError('invalid-argument', `${field}: cannot read seccomp profile "${choice.ref}": ${(err as Error).message}`);
  }
  let profile: unknown;
  try {
    profile = JSON.parse(text);
  } catch (err) {
    throw new BerthError('invalid-argument', `${field}: seccomp profile "${choice.ref}" is not valid JSON: ${(err as Error).message}`);
  }
  if (!profile || typeof profile !== 'object' || typeof (profile as LinuxSeccomp).defaultAction !== 'string') {
    throw new BerthError('invalid-argument', `${field}: seccomp profile "${choice.ref}" has no defaultAction`);
  }
  return profile as LinuxSeccomp;
}

export interface ApparmorSource {
  apparmor?: SecurityProfile | undefined;
  apparmorProfile: string;
}

export const defaultApparmorProfile = 'berth-default';

/**
 * The AppArmor profile name, or undefined for none. Nothing requested means none: berth does not
 * load its default profile by itself, so naming it unasked would break every container.
 */
export function apparmorFor(sc: ApparmorSource | undefined, enabled: boolean, prefix: string): string | undefined {
  if (!sc) return undefined;
  const field = sc.apparmor ? `${prefix}.apparmor` : `${prefix}.apparmor_profile`;
  const choice = sc.apparmor ? fromMessage(sc.apparmor, field) : fromString(sc.apparmorProfile, field);
  if (choice.kind === 'none') return undefined;
  if (choice.kind === 'default') return enabled ? defaultApparmorProfile : undefined;
  if (!enabled) throw new BerthError('invalid-argument', `${field}: AppArmor profile "${choice.ref}" requested but AppArmor is not enabled on this node`);
  return choice.ref;
}
