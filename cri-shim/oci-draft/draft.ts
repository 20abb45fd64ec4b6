import { BerthError } from '../../lib/errors.js';
import { MountPropagation, NamespaceMode, type ContainerConfig, type LinuxContainerResources, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import type { HostDevice } from '../server/host-devices.js';

// TEMPORARY minimal spec builder while cri-shim/oci is written; same signatures.

/* eslint-disable @typescript-eslint/no-explicit-any */
export type Spec = any;

export interface ImageConfig {
  user: string;
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
  stopSignal: string;
}

interface Files {
  hostname: string;
  hosts: string;
  resolvConf: string;
  shm: string;
}

export interface SandboxSpecInput {
  id: string;
  config: PodSandboxConfig;
  image: ImageConfig;
  netnsPath: string | undefined;
  cgroupDriver: 'cgroupfs' | 'systemd';
  defaultCgroupParent: string;
  minOomScoreAdj: number;
  sandboxFiles: Files;
  apparmorEnabled: boolean;
  readFile: (path: string) => string;
}

export interface ContainerSpecInput {
  id: string;
  config: ContainerConfig;
  sandboxConfig: PodSandboxConfig;
  sandboxId: string;
  sandboxPid: number;
  image: ImageConfig;
  etcPasswd: string | undefined;
  etcGroup: string | undefined;
  sandboxFiles: Files;
  cgroupDriver: 'cgroupfs' | 'systemd';
  defaultCgroupParent: string;
  minOomScoreAdj: number;
  apparmorEnabled: boolean;
  hostDevices: () => HostDevice[];
  statDevice: (path: string) => HostDevice | undefined;
  readFile: (path: string) => string;
  cdiSpecs: { path: string; content: string }[];
}

const defaultCaps = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];

function cgroupsPath(parent: string, id: string, driver: string): string {
  if (driver === 'systemd') return `${parent || 'system.slice'}:berth:${id}`;
  return `${parent}/${id}`;
}

function baseMounts(): any[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
}

export function linuxResources(r: LinuxContainerResources, minOomScoreAdj: number): { resources: any; oomScoreAdj?: number } {
  const resources: any = { cpu: {}, memory: {} };
  if (r.cpuShares) resources.cpu.shares = Number(r.cpuShares);
  if (r.cpuQuota) resources.cpu.quota = Number(r.cpuQuota);
  if (r.cpuPeriod) resources.cpu.period = Number(r.cpuPeriod);
  if (r.cpusetCpus) resources.cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) resources.cpu.mems = r.cpusetMems;
  if (r.memoryLimitInBytes) resources.memory.limit = Number(r.memoryLimitInBytes);
  return { resources, ...(r.oomScoreAdj ? { oomScoreAdj: Math.max(Number(r.oomScoreAdj), minOomScoreAdj) } : {}) };
}

export function buildSandboxSpec(input: SandboxSpecInput): Spec {
  const { config } = input;
  const ns = config.linux?.securityContext?.namespaceOptions;
  const namespaces: any[] = [{ type: 'mount' }, { type: 'uts' }];
  if (ns?.pid !== NamespaceMode.NODE) namespaces.push({ type: 'pid' });
  if (ns?.ipc !== NamespaceMode.NODE) namespaces.push({ type: 'ipc' });
  if (ns?.network !== NamespaceMode.NODE) namespaces.push(input.netnsPath ? { type: 'network', path: input.netnsPath } : { type: 'network' });
  const hostNet = ns?.network === NamespaceMode.NODE;
  return {
    ociVersion: '1.0.2',
    process: {
      args: [...input.image.entrypoint, ...input.image.cmd],
      cwd: '/',
      env: input.image.env,
      user: { uid: 0, gid: 0 },
      capabilities: { bounding: defaultCaps, effective: defaultCaps, permitted: defaultCaps },
      noNewPrivileges: true,
      oomScoreAdj: Math.max(-998, input.minOomScoreAdj),
    },
    root: { path: 'rootfs', readonly: true },
    ...(hostNet ? {} : { hostname: config.hostname || config.metadata?.name }),
    mounts: [...baseMounts(), { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] }],
    annotations: { 'io.kubernetes.cri.container-type': 'sandbox', 'io.kubernetes.cri.sandbox-id': input.id },
    linux: {
      namespaces,
      sysctl: config.linux?.sysctls ?? {},
      cgroupsPath: cgroupsPath(config.linux?.cgroupParent || input.defaultCgroupParent, input.id, input.cgroupDriver),
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/sched_debug', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

function lookupUser(passwd: string | undefined, name: string): { uid: number; gid: number } | undefined {
  for (const line of (passwd ?? '').split('\n')) {
    const f = line.split(':');
    if (f[0] === name || f[2] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

export function buildContainerSpec(input: ContainerSpecInput): Spec {
  const { config, image } = input;
  const sc = config.linux?.securityContext;
  const args = config.command.length ? [...config.command, ...config.args] : [...image.entrypoint, ...(config.args.length ? config.args : image.cmd)];
  if (args.length === 0) throw new BerthError('invalid-argument', 'no command specified');
  let user = { uid: 0, gid: 0 };
  if (sc?.runAsUser) user = { uid: Number(sc.runAsUser.value), gid: lookupUser(input.etcPasswd, String(sc.runAsUser.value))?.gid ?? 0 };
  else if (sc?.runAsUsername) {
    const u = lookupUser(input.etcPasswd, sc.runAsUsername);
    if (!u) throw new BerthError('invalid-argument', `run_as_username "${sc.runAsUsername}" not in /etc/passwd`);
    user = u;
  } else if (image.user) {
    const [name, group] = image.user.split(':');
    const u = lookupUser(input.etcPasswd, name!) ?? (/^\d+$/.test(name!) ? { uid: Number(name), gid: 0 } : undefined);
    if (!u) throw new BerthError('invalid-argument', `image user "${image.user}" not found`);
    user = { uid: u.uid, gid: group && /^\d+$/.test(group) ? Number(group) : u.gid };
  }
  if (sc?.runAsGroup) {
    if (!sc.runAsUser && !sc.runAsUsername) throw new BerthError('invalid-argument', 'config.linux.security_context.run_as_group requires run_as_user or run_as_username');
    user.gid = Number(sc.runAsGroup.value);
  }
  const env = new Map<string, string>();
  for (const e of image.env) env.set(e.split('=')[0]!, e.slice(e.indexOf('=') + 1));
  for (const e of config.envs) env.set(e.key, Buffer.from(e.value).toString('utf8'));
  if (!env.has('PATH')) env.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  const sns = input.sandboxConfig.linux?.securityContext?.namespaceOptions;
  const cns = sc?.namespaceOptions;
  const p = `/proc/${input.sandboxPid}/ns`;
  const namespaces: any[] = [{ type: 'mount' }];
  if (sns?.network !== NamespaceMode.NODE) namespaces.push({ type: 'network', path: `${p}/net` });
  if (sns?.ipc !== NamespaceMode.NODE) namespaces.push({ type: 'ipc', path: `${p}/ipc` });
  namespaces.push({ type: 'uts', path: `${p}/uts` });
  if (cns?.pid === NamespaceMode.CONTAINER) namespaces.push({ type: 'pid' });
  else if (cns?.pid !== NamespaceMode.NODE && sns?.pid !== NamespaceMode.NODE) namespaces.push({ type: 'pid', path: `${p}/pid` });
  let caps = [...defaultCaps];
  for (const d of sc?.capabilities?.dropCapabilities ?? []) caps = d === 'ALL' ? [] : caps.filter((c) => c !== (d.startsWith('CAP_') ? d : `CAP_${d}`));
  for (const a of sc?.capabilities?.addCapabilities ?? []) caps.push(a.startsWith('CAP_') ? a : `CAP_${a}`);
  const mounts = [
    ...baseMounts(),
    { destination: '/etc/hostname', type: 'bind', source: input.sandboxFiles.hostname, options: ['rbind', 'rprivate', 'rw'] },
    { destination: '/etc/hosts', type: 'bind', source: input.sandboxFiles.hosts, options: ['rbind', 'rprivate', 'rw'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: input.sandboxFiles.resolvConf, options: ['rbind', 'rprivate', 'rw'] },
    { destination: '/dev/shm', type: 'bind', source: input.sandboxFiles.shm, options: ['rbind', 'rprivate', 'rw'] },
  ].filter((m) => !config.mounts.some((c) => c.containerPath === m.destination));
  for (const m of config.mounts) {
    const prop = m.propagation === MountPropagation.PROPAGATION_BIDIRECTIONAL ? 'rshared' : m.propagation === MountPropagation.PROPAGATION_HOST_TO_CONTAINER ? 'rslave' : 'rprivate';
    mounts.push({ destination: m.containerPath, type: 'bind', source: m.hostPath, options: ['rbind', prop, m.readonly ? 'ro' : 'rw'] });
  }
  const res = config.linux?.resources ? linuxResources(config.linux.resources, input.minOomScoreAdj) : { resources: {}, oomScoreAdj: undefined };
  const privileged = sc?.privileged === true;
  return {
    ociVersion: '1.0.2',
    process: {
      args,
      cwd: config.workingDir || image.workingDir || '/',
      env: [...env].map(([k, v]) => `${k}=${v}`),
      user,
      terminal: config.tty,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: sc?.noNewPrivs ?? false,
      ...(res.oomScoreAdj !== undefined ? { oomScoreAdj: res.oomScoreAdj } : {}),
    },
    root: { path: 'rootfs', readonly: sc?.readonlyRootfs ?? false },
    mounts,
    annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': input.sandboxId },
    linux: {
      namespaces,
      cgroupsPath: cgroupsPath(input.sandboxConfig.linux?.cgroupParent || input.defaultCgroupParent, input.id, input.cgroupDriver),
      resources: { ...res.resources, devices: [{ allow: privileged, access: 'rwm' }] },
      ...(privileged ? {} : {
        maskedPaths: sc?.maskedPaths.length ? sc.maskedPaths : ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/sched_debug', '/sys/firmware'],
        readonlyPaths: sc?.readonlyPaths.length ? sc.readonlyPaths : ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      }),
    },
  };
}
