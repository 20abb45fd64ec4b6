import { BerthError } from '../../lib/errors.js';
import { NamespaceMode, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import { bindMount, cgroupsPath, cloneRules, defaultDeviceRules, defaultMaskedPaths, defaultMounts, defaultPath, defaultReadonlyPaths, namespaceOptions, ociVersion, podSysctls } from './defaults.js';
import { apparmorFor, capabilities, capabilitySet, seccompFor } from './security.js';
import type { LinuxNamespace, Spec, User } from './spec-types.js';
import { applyUserns, podUserns, refuseHostNamespaces } from './userns.js';

export type { Spec } from './spec-types.js';

// The pause container's spec: it only holds the pod's namespaces, so it runs with the default
// capabilities and the sandbox security context's user, seccomp and read-only rootfs.

export interface ImageConfig {
  user: string;
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
  stopSignal: string;
}

export interface SandboxFiles {
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
  sandboxFiles: SandboxFiles;
  apparmorEnabled: boolean;
  readFile: (path: string) => string;
  /** The daemon's bounding capabilities (capabilitiesFromMask of CapBnd); all known ones if unset. */
  availableCapabilities?: string[];
  /** The pod's pinned user namespace, for userns_options mode POD (cri-shim/pod/userns.ts). */
  usernsPath?: string;
  /** Why this handler cannot run user-namespaced pods (a pod asking is refused with it). */
  usernsUnsupported?: string;
}

/** Lowest oom_score_adj for the pause: the pod must not be the first thing the OOM killer spares. */
export const sandboxOomScoreAdj = -998;

export const annotationKeys = {
  containerType: 'io.kubernetes.cri.container-type',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  sandboxName: 'io.kubernetes.cri.sandbox-name',
  sandboxNamespace: 'io.kubernetes.cri.sandbox-namespace',
  sandboxUid: 'io.kubernetes.cri.sandbox-uid',
  containerName: 'io.kubernetes.cri.container-name',
  imageName: 'io.kubernetes.cri.image-name',
} as const;

export function buildSandboxSpec(input: SandboxSpecInput): Spec {
  const { config, id } = input;
  const sc = config.linux?.securityContext;
  const privileged = sc?.privileged ?? false;
  const ns = namespaceOptions(sc?.namespaceOptions);
  const userns = podUserns(sc?.namespaceOptions, 'config.linux.security_context');
  if (userns) {
    refuseHostNamespaces(sc?.namespaceOptions, privileged, 'config.linux.security_context');
    if (!input.usernsPath) throw new BerthError('invalid-argument', `config.linux.security_context.namespace_options.userns_options.mode: POD user namespaces are not supported here: ${input.usernsUnsupported ?? 'no user namespace was made for the pod'}`);
  }
  const hostNetwork = ns.network === NamespaceMode.NODE;

  const args = [...(input.image.entrypoint ?? []), ...(input.image.cmd ?? [])];
  if (args.length === 0) throw new BerthError('invalid-argument', 'sandbox image: no command specified (image has neither Entrypoint nor Cmd)');

  // The pause binary needs no passwd lookup, so a group without a user is simply root:group.
  const user: User = { uid: sc?.runAsUser ? Number(sc.runAsUser.value) : 0, gid: sc?.runAsGroup ? Number(sc.runAsGroup.value) : 0 };
  const extraGids = [...new Set((sc?.supplementalGroups ?? []).map(Number))].filter((g) => g !== user.gid);
  if (extraGids.length) user.additionalGids = extraGids;

  const caps = capabilitySet(undefined, privileged, undefined, input.availableCapabilities);
  const seccomp = privileged ? undefined : seccompFor(sc, caps, input.readFile, 'config.linux.security_context');
  const apparmor = privileged || !sc?.apparmor ? undefined : apparmorFor({ apparmor: sc.apparmor, apparmorProfile: '' }, input.apparmorEnabled, 'config.linux.security_context');

  const namespaces: LinuxNamespace[] = [{ type: 'mount' }];
  if (ns.pid !== NamespaceMode.NODE) namespaces.push({ type: 'pid' });
  if (ns.ipc !== NamespaceMode.NODE) namespaces.push({ type: 'ipc' });
  // A host-network pod also keeps the node's hostname (UTS), as other CRI runtimes do.
  if (!hostNetwork) {
    namespaces.push({ type: 'uts' });
    namespaces.push(input.netnsPath ? { type: 'network', path: input.netnsPath } : { type: 'network' });
  }

  const mounts = defaultMounts(privileged);
  // Host IPC shares the node's POSIX shared memory; otherwise a host-side pod tmpfs, when the
  // daemon made one, lets containers bind the same /dev/shm (a /proc/<pid>/root path cannot be).
  const shm = ns.ipc === NamespaceMode.NODE ? input.sandboxFiles.shm || '/dev/shm' : input.sandboxFiles.shm;
  if (shm) mounts[mounts.findIndex((m) => m.destination === '/dev/shm')] = bindMount('/dev/shm', shm);

  const meta = config.metadata;
  const spec: Spec = {
    ociVersion,
    process: {
      terminal: false,
      user,
      args,
      env: [`PATH=${defaultPath}`],
      cwd: '/',
      capabilities: capabilities(caps),
      noNewPrivileges: !privileged,
      oomScoreAdj: Math.max(sandboxOomScoreAdj, input.minOomScoreAdj),
    },
    root: { path: 'rootfs', readonly: sc?.readonlyRootfs ?? false },
    mounts,
    annotations: {
      [annotationKeys.containerType]: 'sandbox',
      [annotationKeys.sandboxId]: id,
      [annotationKeys.sandboxName]: meta?.name ?? '',
      [annotationKeys.sandboxNamespace]: meta?.namespace ?? '',
      [annotationKeys.sandboxUid]: meta?.uid ?? '',
    },
    linux: {
      cgroupsPath: cgroupsPath(input.cgroupDriver, config.linux?.cgroupParent ?? '', input.defaultCgroupParent, id),
      namespaces,
      resources: { devices: cloneRules(defaultDeviceRules) },
    },
  };
  if (apparmor) spec.process!.apparmorProfile = apparmor;
  if (userns) applyUserns(spec, userns, input.usernsPath!);
  if (!hostNetwork && config.hostname) spec.hostname = config.hostname;
  const sysctl = podSysctls(config);
  if (sysctl) spec.linux!.sysctl = sysctl;
  if (seccomp) spec.linux!.seccomp = seccomp;
  if (privileged) {
    spec.linux!.resources = { devices: [{ allow: true, access: 'rwm' }] };
  } else {
    spec.linux!.maskedPaths = [...defaultMaskedPaths];
    spec.linux!.readonlyPaths = [...defaultReadonlyPaths];
  }
  return spec;
}
