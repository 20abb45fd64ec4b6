import { BerthError } from '../../lib/errors.js';
import { type ContainerConfig, MountPropagation, NamespaceMode, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import { applyCdiDevices, requestedCdiDevices, resolveCdiDevices } from './cdi.js';
import { bindMount, cgroupsPath, cloneRules, defaultDeviceRules, defaultMaskedPaths, defaultMounts, defaultPath, defaultReadonlyPaths, namespaceOptions, ociVersion, podSysctls } from './defaults.js';
import type { HostDevice } from './host-devices.js';
import { criMount, mergeMounts } from './mounts.js';
import { linuxResources } from './resources.js';
import { annotationKeys, type ImageConfig, type SandboxFiles } from './sandbox-spec.js';
import { ambientCapabilities, apparmorFor, capabilities, capabilitySet, seccompFor } from './security.js';
import type { LinuxDevice, LinuxDeviceCgroup, LinuxNamespace, Spec } from './spec-types.js';
import { resolveUser } from './user.js';
import { applyUserns, containerUserns, podUserns, refuseHostNamespaces } from './userns.js';

// An application container's spec: the CRI ContainerConfig over the image config, joined to
// the pause container's namespaces and placed in the pod's cgroup parent.

export type { HostDevice };

export interface ContainerSpecInput {
  id: string;
  config: ContainerConfig;
  sandboxConfig: PodSandboxConfig;
  sandboxId: string;
  sandboxPid: number;
  image: ImageConfig;
  etcPasswd: string | undefined;
  etcGroup: string | undefined;
  sandboxFiles: SandboxFiles;
  cgroupDriver: 'cgroupfs' | 'systemd';
  defaultCgroupParent: string;
  minOomScoreAdj: number;
  apparmorEnabled: boolean;
  hostDevices: () => HostDevice[];
  statDevice: (path: string) => HostDevice | undefined;
  readFile: (path: string) => string;
  /** The daemon's bounding capabilities (capabilitiesFromMask of CapBnd); all known ones if unset. */
  availableCapabilities?: string[];
  cdiSpecs: { path: string; content: string }[];
  /** pid of the target container, for namespace_options.pid TARGET. */
  targetPid?: number;
  /** The pod's pinned user namespace, when its sandbox has userns_options mode POD. */
  usernsPath?: string;
  /** Staged read-only copies of the recursive read-only mounts, by mount index (pod/rro-mounts.ts). */
  recursiveReadOnlySources?: ReadonlyMap<number, string>;
}

/** Docker semantics: command replaces Entrypoint, args replace Cmd, a command alone drops Cmd. */
export function processArgs(config: ContainerConfig, image: ImageConfig): string[] {
  const entrypoint = config.command.length ? config.command : (image.entrypoint ?? []);
  const cmd = config.args.length ? config.args : config.command.length ? [] : (image.cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new BerthError('invalid-argument', 'config.command: no command specified (neither the config nor the image has one)');
  return args;
}

/** Image env, a default PATH, the pod's HOSTNAME, then CRI envs (the last value of a key wins). */
export function processEnv(config: ContainerConfig, image: ImageConfig, hostname: string): string[] {
  const env = new Map<string, string>();
  const put = (key: string, value: string): void => {
    env.delete(key);
    env.set(key, value);
  };
  for (const kv of image.env ?? []) {
    const i = kv.indexOf('=');
    put(i < 0 ? kv : kv.slice(0, i), i < 0 ? '' : kv.slice(i + 1));
  }
  if (!env.has('PATH')) put('PATH', defaultPath);
  if (hostname) put('HOSTNAME', hostname);
  for (const kv of config.envs) {
    if (!kv.key) throw new BerthError('invalid-argument', 'config.envs: an entry has an empty key');
    // The generated type says Buffer; decoders may hand a plain Uint8Array (or a string).
    const v: unknown = kv.value;
    put(kv.key, typeof v === 'string' ? v : Buffer.from(v as Uint8Array).toString('utf8'));
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}

function containerNamespaces(input: ContainerSpecInput): LinuxNamespace[] {
  // Network and IPC are the pod's by definition; only the pid mode may differ per container.
  const pod = namespaceOptions(input.sandboxConfig.linux?.securityContext?.namespaceOptions);
  const own = input.config.linux?.securityContext?.namespaceOptions;
  const ns = own ? { ...pod, pid: namespaceOptions(own).pid, targetId: own.targetId } : pod;
  const proc = (n: string): string => `/proc/${input.sandboxPid}/ns/${n}`;
  const out: LinuxNamespace[] = [{ type: 'mount' }];
  if (ns.network !== NamespaceMode.NODE) {
    out.push({ type: 'network', path: proc('net') }, { type: 'uts', path: proc('uts') });
  }
  if (ns.ipc !== NamespaceMode.NODE) out.push({ type: 'ipc', path: proc('ipc') });
  switch (ns.pid) {
    case NamespaceMode.POD:
      out.push({ type: 'pid', path: proc('pid') });
      break;
    case NamespaceMode.CONTAINER:
      out.push({ type: 'pid' });
      break;
    case NamespaceMode.NODE:
      break;
    case NamespaceMode.TARGET:
      if (!input.targetPid) {
        throw new BerthError('invalid-argument', `config.linux.security_context.namespace_options.target_id: target container "${ns.targetId}" has no running process`);
      }
      out.push({ type: 'pid', path: `/proc/${input.targetPid}/ns/pid` });
      break;
    default:
      throw new BerthError('invalid-argument', `config.linux.security_context.namespace_options.pid: unknown mode ${String(ns.pid)}`);
  }
  return out;
}

function criDevices(input: ContainerSpecInput): { devices: LinuxDevice[]; rules: LinuxDeviceCgroup[] } {
  const devices: LinuxDevice[] = [];
  const rules: LinuxDeviceCgroup[] = [];
  input.config.devices.forEach((d, i) => {
    const field = `config.devices[${i}]`;
    const access = d.permissions || 'rwm';
    if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) {
      throw new BerthError('invalid-argument', `${field}.permissions: "${d.permissions}" is not a subset of "rwm"`);
    }
    const st = input.statDevice(d.hostPath);
    if (!st) throw new BerthError('invalid-argument', `${field}.host_path: "${d.hostPath}" is not a device node on this host`);
    const path = d.containerPath || d.hostPath;
    devices.push({ path, type: st.type, major: st.major, minor: st.minor, fileMode: st.mode, uid: st.uid, gid: st.gid });
    rules.push({ allow: true, type: st.type, major: st.major, minor: st.minor, access });
  });
  return { devices, rules };
}

export function buildContainerSpec(input: ContainerSpecInput): Spec {
  const { config, sandboxConfig, id } = input;
  const sc = config.linux?.securityContext;
  const privileged = sc?.privileged ?? false;
  if (privileged && !sandboxConfig.linux?.securityContext?.privileged) {
    throw new BerthError('invalid-argument', 'config.linux.security_context.privileged: privileged container in a non-privileged pod');
  }
  const prefix = 'config.linux.security_context';
  const userns = containerUserns(sc?.namespaceOptions, podUserns(sandboxConfig.linux?.securityContext?.namespaceOptions, 'pod sandbox config.linux.security_context'), prefix);
  if (userns) {
    refuseHostNamespaces(sc?.namespaceOptions, privileged, prefix);
    if (!input.usernsPath) throw new BerthError('failed-precondition', `${prefix}.namespace_options.userns_options: the pod sandbox has no user namespace to join`);
    // The staged idmapped clone is private to berth-cri's mount namespace: host mount events
    // made later under the volume would not reach it.
    config.mounts.forEach((m, i) => {
      if (m.propagation !== MountPropagation.PROPAGATION_PRIVATE) {
        throw new BerthError('invalid-argument', `config.mounts[${i}].propagation: ${MountPropagation[m.propagation] ?? m.propagation} is not supported in a user-namespaced pod (its mounts are idmapped clones)`);
      }
    });
  }
  const caps = capabilitySet(sc?.capabilities, privileged, `${prefix}.capabilities`, input.availableCapabilities);
  const ambient = ambientCapabilities(sc?.capabilities, caps, `${prefix}.capabilities`);
  const seccomp = privileged ? undefined : seccompFor(sc, caps, input.readFile, prefix);
  const apparmor = privileged ? undefined : apparmorFor(sc, input.apparmorEnabled, prefix);
  const user = resolveUser({ securityContext: sc, imageUser: input.image.user, etcPasswd: input.etcPasswd, etcGroup: input.etcGroup });
  const { resources, oomScoreAdj } = linuxResources(
    config.linux?.resources ?? { cpuPeriod: 0n, cpuQuota: 0n, cpuShares: 0n, memoryLimitInBytes: 0n, oomScoreAdj: 0n, cpusetCpus: '', cpusetMems: '', hugepageLimits: [], unified: {}, memorySwapLimitInBytes: 0n },
    input.minOomScoreAdj,
  );

  const files = input.sandboxFiles;
  const podMounts = [bindMount('/etc/hostname', files.hostname), bindMount('/etc/hosts', files.hosts), bindMount('/etc/resolv.conf', files.resolvConf)];
  if (files.shm) podMounts.push(bindMount('/dev/shm', files.shm));
  const mounts = mergeMounts(defaultMounts(privileged), podMounts.filter((m) => m.source), config.mounts.map((m, i) => criMount(m, i, input.recursiveReadOnlySources?.get(i))));

  const meta = sandboxConfig.metadata;
  const process: NonNullable<Spec['process']> = {
    terminal: config.tty,
    user,
    args: processArgs(config, input.image),
    env: processEnv(config, input.image, sandboxConfig.hostname),
    cwd: config.workingDir || input.image.workingDir || '/',
    capabilities: capabilities(caps, ambient),
    noNewPrivileges: sc?.noNewPrivs ?? false,
  };
  if (apparmor) process.apparmorProfile = apparmor;
  if (oomScoreAdj !== undefined) process.oomScoreAdj = oomScoreAdj;

  const spec: Spec = {
    ociVersion,
    process,
    root: { path: 'rootfs', readonly: sc?.readonlyRootfs ?? false },
    mounts,
    annotations: {
      ...config.annotations,
      [annotationKeys.containerType]: 'container',
      [annotationKeys.sandboxId]: input.sandboxId,
      [annotationKeys.sandboxName]: meta?.name ?? '',
      [annotationKeys.sandboxNamespace]: meta?.namespace ?? '',
      [annotationKeys.sandboxUid]: meta?.uid ?? '',
      [annotationKeys.containerName]: config.metadata?.name ?? '',
      [annotationKeys.imageName]: config.image?.image ?? '',
    },
    linux: {
      cgroupsPath: cgroupsPath(input.cgroupDriver, sandboxConfig.linux?.cgroupParent ?? '', input.defaultCgroupParent, id),
      namespaces: containerNamespaces(input),
      resources,
    },
  };
  const linux = spec.linux!;
  // Propagation into or out of the container also needs its root mount to take part in it.
  const propagations = new Set(mounts.flatMap((m) => m.options ?? []));
  if (propagations.has('rshared')) linux.rootfsPropagation = 'rshared';
  else if (propagations.has('rslave')) linux.rootfsPropagation = 'rslave';
  const sysctl = podSysctls(sandboxConfig);
  if (sysctl) linux.sysctl = sysctl;
  if (seccomp) linux.seccomp = seccomp;

  const own = criDevices(input);
  if (privileged) {
    // Every host device, and the cgroup lets all of them through.
    const seen = new Set(own.devices.map((d) => d.path));
    const host = input.hostDevices().filter((d) => !seen.has(d.path));
    linux.devices = [...host.map((d) => ({ path: d.path, type: d.type, major: d.major, minor: d.minor, fileMode: d.mode, uid: d.uid, gid: d.gid })), ...own.devices];
    resources.devices = [{ allow: true, access: 'rwm' }];
  } else {
    if (own.devices.length) linux.devices = own.devices;
    resources.devices = [...cloneRules(defaultDeviceRules), ...own.rules];
    linux.maskedPaths = sc?.maskedPaths.length ? [...sc.maskedPaths] : [...defaultMaskedPaths];
    linux.readonlyPaths = sc?.readonlyPaths.length ? [...sc.readonlyPaths] : [...defaultReadonlyPaths];
  }

  if (userns) applyUserns(spec, userns, input.usernsPath!);

  const cdi = resolveCdiDevices(requestedCdiDevices(config.CDIDevices ?? [], config.annotations ?? {}), input.cdiSpecs);
  return applyCdiDevices(spec, cdi, input.statDevice);
}
