import { getSystemErrorMap } from 'node:util';
import type * as NetlinkPackage from 'netlink/dist/netlink.js';
import { BerthError, type ErrorKind } from '../errors.js';

// The socket layer: the `netlink` package's NetlinkSocket (native socket, sequence numbers,
// multipart dumps), loaded on first use; and kernel errno values turned into BerthErrors.

/** A failed netlink request: a BerthError that also carries the kernel's errno name. */
export class NetlinkError extends BerthError {
  constructor(
    kind: ErrorKind,
    message: string,
    /** e.g. "EEXIST" */
    readonly code: string,
    readonly errno: number,
  ) {
    super(kind, message);
    this.name = 'NetlinkError';
  }
}

type NetlinkModule = typeof NetlinkPackage;
export type NetlinkSocket = InstanceType<NetlinkModule['NetlinkSocket']>;
export const NETLINK_ROUTE = 0;
export const REQUEST_TIMEOUT_MS = 10_000;

let loading: Promise<NetlinkModule> | undefined;

/** Load the netlink package's socket layer once, on first use (not at import). */
export function loadNetlink(): Promise<NetlinkModule> {
  loading ??= import('netlink/dist/netlink.js').then((m) => {
    // A CommonJS module seen from ESM may arrive under `default`.
    const mod = m as NetlinkModule & { default?: NetlinkModule };
    return typeof mod.createNetlink === 'function' ? mod : (mod.default as NetlinkModule);
  });
  return loading;
}

export function errnoName(errno: number): [string, string] {
  // libuv names 95 ENOTSUP after "on socket"; the kernel means EOPNOTSUPP (e.g. a kernel
  // built without bridge VLAN filtering).
  if (errno === 95) return ['EOPNOTSUPP', 'operation not supported by this kernel'];
  // libuv's table: negative errno -> [name, message].
  return getSystemErrorMap().get(-errno) ?? [`E${errno}`, `errno ${errno}`];
}

export function kindOf(code: string): ErrorKind {
  if (code === 'EEXIST') return 'already-exists';
  if (code === 'ENODEV' || code === 'ENOENT' || code === 'ESRCH' || code === 'EADDRNOTAVAIL') return 'not-found';
  if (code === 'EPERM') return 'failed-precondition';
  if (code === 'EOPNOTSUPP') return 'unimplemented';
  return 'internal';
}
