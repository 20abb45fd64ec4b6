import { closeSync, mkdirSync, openSync, rmSync, statfsSync } from 'node:fs';
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { dirname } from 'node:path';
import { BerthError } from './errors.js';
import { nativeAddon } from './native.js';

export { nativeAddonPath } from './native.js';

// Network namespaces by path (/run/netns/NAME, /proc/PID/ns/net). Node cannot call setns(2),
// so lib/native provides withNetns; everything else here is plain fs.

/**
 * Run `fn` with the calling thread inside the network namespace at `path`, then return to the
 * original namespace, also when `fn` throws. Synchronous only: anything `fn` starts that
 * completes later (promises, callbacks, I/O) runs after the switch back, in the original
 * namespace. Use it to create sockets (netlink, raw), which stay bound to the namespace they
 * were created in, and for /proc/sys/net reads and writes.
 */
export function withNetns<T>(path: string, fn: () => T): T {
  try {
    return nativeAddon('withNetns').withNetns(path, fn);
  } catch (err) {
    throw netnsEntryError(path, err);
  }
}

/** A failure to enter the namespace at `path` as a BerthError; any other error (fn's own) as it is. */
function netnsEntryError(path: string, err: unknown): unknown {
  if (typeof err !== 'object' || err === null || (err as { netnsEntry?: boolean }).netnsEntry !== true) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new BerthError('not-found', `network namespace ${path} does not exist`, { cause: err });
  if (code === 'EINVAL') return new BerthError('invalid-argument', `${path} is not a network namespace`, { cause: err });
  return new BerthError('io', `cannot enter network namespace ${path}: ${(err as Error).message}`, { cause: err });
}

// statfs f_type of nsfs, the filesystem namespace files (and their bind mounts) live on.
const NSFS_MAGIC = 0x6e736673;

/** True if `path` is a namespace file (a /run/netns bind mount or /proc/PID/ns/*). */
export function netnsExists(path: string): boolean {
  try {
    return statfsSync(path).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Open a namespace file for use as IFLA_NET_NS_FD. The caller closes it with closeNetnsFd once
 * the request that carries it is answered.
 */
export function openNetnsFd(path: string): number {
  if (!netnsExists(path)) throw new BerthError('not-found', `network namespace ${path} does not exist`);
  return openSync(path, 'r');
}

export function closeNetnsFd(fd: number): void {
  closeSync(fd);
}

/**
 * A new network namespace pinned at `path` (a bind mount of the namespace onto a new empty
 * file), as `ip netns add` makes them, without a process to keep it alive. EEXIST if `path` exists.
 */
export function createNetns(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  nativeAddon('newNetns').newNetns(path);
}

/** Unpin and remove a namespace made by createNetns; a missing one is fine. */
export function deleteNetns(path: string): void {
  try {
    nativeAddon('umount2').umount2(path, 2 /* MNT_DETACH */);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
  }
  rmSync(path, { force: true });
}

export interface ConnectOptions {
  /** Give up after this long (ETIMEDOUT): a port that drops SYNs never answers. */
  timeoutMs: number;
  /** A numeric address; default the namespace's 127.0.0.1. */
  host?: string;
  /** Read into a buffer of the caller's (net.Socket's onread). */
  onread?: OnReadOpts;
}

/**
 * A TCP connection to `host:port` as seen from inside the network namespace at `netnsPath` (a
 * pod's localhost for CRI port-forward); the host's own namespace when `netnsPath` is empty.
 * Nothing waits on a thread meanwhile: the event loop watches the connect (lib/native/setns.c).
 * Refused and unreachable ports reject with the errno's code (ECONNREFUSED, ETIMEDOUT...).
 */
export async function connectInNetns(netnsPath: string | undefined, port: number, options: ConnectOptions): Promise<Socket> {
  const { host = '127.0.0.1', timeoutMs, onread } = options;
  let fd: number;
  try {
    fd = await nativeAddon('connectTcp').connectTcp(netnsPath ?? '', host, port, timeoutMs);
  } catch (err) {
    throw netnsEntryError(netnsPath ?? '', err);
  }
  return new Socket({ fd, readable: true, writable: true, ...(onread ? { onread } : {}) } as SocketConstructorOpts);
}
