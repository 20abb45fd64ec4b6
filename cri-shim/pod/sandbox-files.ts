import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname as hostHostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { isMountPoint, mount, MountFlags, unmount } from '../../lib/mount.js';
import { NamespaceMode, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import { deletePodUserns, unmountBelow, usernsPinPath } from './userns.js';

// The files a pod's containers share: /etc/hostname, /etc/hosts and /etc/resolv.conf, written
// once per sandbox into its directory and bind-mounted into every container.

export interface SandboxFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

export function isHostNetwork(config: PodSandboxConfig): boolean {
  return config.linux?.securityContext?.namespaceOptions?.network === NamespaceMode.NODE;
}

/** resolv.conf from the pod's DNSConfig; without one the host's file is used as is. */
export function resolvConfFor(config: PodSandboxConfig, hostResolvConf: string): string {
  const dns = config.dnsConfig;
  if (!dns || (dns.servers.length === 0 && dns.searches.length === 0 && dns.options.length === 0)) return hostResolvConf;
  const lines: string[] = [];
  if (dns.searches.length) lines.push(`search ${dns.searches.join(' ')}`);
  for (const server of dns.servers) lines.push(`nameserver ${server}`);
  if (dns.options.length) lines.push(`options ${dns.options.join(' ')}`);
  return lines.join('\n') + '\n';
}

export function hostsFor(config: PodSandboxConfig, hostHosts: string): string {
  if (isHostNetwork(config)) return hostHosts;
  return ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'fe00::0\tip6-mcastprefix', 'fe00::1\tip6-allnodes', 'fe00::2\tip6-allrouters', ''].join('\n');
}

export function hostnameFor(config: PodSandboxConfig): string {
  if (isHostNetwork(config)) return hostHostname();
  return config.hostname || config.metadata?.name || 'localhost';
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

export function writeSandboxFiles(dir: string, config: PodSandboxConfig): SandboxFiles {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const files = { hostname: join(dir, 'hostname'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf') };
  writeFileAtomic(files.hostname, `${hostnameFor(config)}\n`, { mode: 0o644 });
  writeFileAtomic(files.hosts, hostsFor(config, readOr('/etc/hosts', '127.0.0.1\tlocalhost\n')), { mode: 0o644 });
  writeFileAtomic(files.resolvConf, resolvConfFor(config, readOr('/etc/resolv.conf', '')), { mode: 0o644 });
  return files;
}

export function sandboxFilePaths(dir: string): SandboxFiles {
  return { hostname: join(dir, 'hostname'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf') };
}

/** The pod's /dev/shm: a tmpfs on the host shared by its containers (bind mounts cannot reach into the pause container's mount namespace). */
export function shmPath(dir: string): string {
  return join(dir, 'shm');
}

export async function mountShm(dir: string, sizeBytes = 64 * 1024 * 1024): Promise<string> {
  const path = shmPath(dir);
  mkdirSync(path, { recursive: true, mode: 0o1777 });
  if (!isMountPoint(path)) mount('shm', path, 'tmpfs', MountFlags.nosuid | MountFlags.nodev | MountFlags.noexec, `mode=1777,size=${sizeBytes}`);
  return path;
}

export async function unmountShm(dir: string): Promise<void> {
  unmount(shmPath(dir));
}

/** Unmount the pod's shm and delete its files; safe to repeat. */
export async function removeSandboxFiles(dir: string): Promise<void> {
  if (!dir) return;
  await unmountShm(dir);
  // A user-namespaced pod's pin and staged idmapped mounts: never delete through a mount.
  if (existsSync(join(dir, 'idmap')) || existsSync(usernsPinPath(dir))) {
    const left = unmountBelow(dir);
    if (left.length) throw new Error(`${dir}: still mounted: ${left.join(', ')}`);
    deletePodUserns(dir);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Where a pod's network namespace is pinned. */
export function netnsPathFor(rt: CriRuntime, id: string): string {
  return join(rt.config.state, 'netns', id);
}
