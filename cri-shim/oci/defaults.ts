import { BerthError } from '../../lib/errors.js';
import { NamespaceMode, type NamespaceOption, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import type { LinuxDeviceCgroup, Mount } from './spec-types.js';

// Pieces shared by the pause and container specs: default mounts, paths, cgroup naming.

export const ociVersion = '1.1.0';

export const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const defaultMaskedPaths = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const defaultReadonlyPaths = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** The kernel filesystems every container gets; `privileged` leaves /sys and its cgroups writable. */
export function defaultMounts(privileged: boolean): Mount[] {
  const sysOpt = privileged ? 'rw' : 'ro';
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', sysOpt] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', sysOpt] },
  ];
}

/** A bind mount of a host path; rbind so submounts come along, rprivate unless told otherwise. */
export function bindMount(destination: string, source: string, extra: string[] = []): Mount {
  return { destination, type: 'bind', source, options: ['rbind', 'rprivate', ...extra] };
}

// Device nodes runc always creates; the cgroup must let the container use them.
export const defaultDeviceRules: LinuxDeviceCgroup[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' }, // console
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { allow: true, type: 'c', major: 136, access: 'rwm' }, // pts/*
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' }, // net/tun
];

export function cloneRules(rules: LinuxDeviceCgroup[]): LinuxDeviceCgroup[] {
  return rules.map((r) => ({ ...r }));
}

/**
 * The cgroupsPath runc gets. cgroupfs: a path under the pod's parent. systemd: "slice:prefix:name",
 * where kubelet's parent is already a slice name (or a path ending in one).
 */
export function cgroupsPath(driver: 'cgroupfs' | 'systemd', parent: string, defaultParent: string, id: string): string {
  if (driver === 'cgroupfs') {
    const p = (parent || defaultParent || '/').replace(/\/+$/, '');
    return `${p.startsWith('/') ? p : `/${p}`}/${id}`;
  }
  const slice = (p: string): string => (p.split('/').filter(Boolean).pop() ?? '');
  let s = slice(parent);
  if (!s.endsWith('.slice')) s = slice(defaultParent).endsWith('.slice') ? slice(defaultParent) : '';
  return `${s || 'system.slice'}:berth:${id}`;
}

export function namespaceOptions(o: NamespaceOption | undefined): { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode; targetId: string } {
  return { network: o?.network ?? NamespaceMode.POD, pid: o?.pid ?? NamespaceMode.POD, ipc: o?.ipc ?? NamespaceMode.POD, targetId: o?.targetId ?? '' };
}

const ipcSysctl = (name: string): boolean => /^kernel\.(shm|msg)/.test(name) || name === 'kernel.sem' || name.startsWith('fs.mqueue.');

/** Pod sysctls; those that would change the node's own namespaces are refused. */
export function podSysctls(config: PodSandboxConfig): Record<string, string> | undefined {
  const sysctls = config.linux?.sysctls ?? {};
  const ns = namespaceOptions(config.linux?.securityContext?.namespaceOptions);
  for (const name of Object.keys(sysctls)) {
    if (ns.network === NamespaceMode.NODE && name.startsWith('net.')) {
      throw new BerthError('invalid-argument', `config.linux.sysctls["${name}"]: a net.* sysctl cannot be set in a pod using the host network`);
    }
    if (ns.ipc === NamespaceMode.NODE && ipcSysctl(name)) {
      throw new BerthError('invalid-argument', `config.linux.sysctls["${name}"]: an IPC sysctl cannot be set in a pod using the host IPC namespace`);
    }
  }
  return Object.keys(sysctls).length ? { ...sysctls } : undefined;
}
