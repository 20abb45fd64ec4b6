import { parseIp } from '../../lib/ip.js';

// What counts as loopback for the registry client's plain-http allowances: an address in 127/8,
// ::1, or 127/8 written as an IPv4-mapped IPv6 address. Decided on parsed addresses, never on a
// text prefix, so `127.evil.example` is a name like any other.

const mappedV4Prefix = 0xffffn << 32n;

/** Whether an IP address (as a socket reports its peer) is a loopback address. */
export function isLoopbackAddress(address: string): boolean {
  const ip = parseIp(address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, ''));
  if (!ip) return false;
  if (ip.family === 4) return ip.value >> 24n === 127n;
  if (ip.value === 1n) return true;
  // ::ffff:127.x.y.z is 127/8 reached over an IPv6 socket.
  return ip.value >> 32n === mappedV4Prefix >> 32n && (ip.value & 0xffffffffn) >> 24n === 127n;
}

/** `host` without its port: `[::1]:5000` is `::1`, `reg:5000` is `reg`. */
export function hostnameOf(host: string): string {
  const bracketed = /^\[([^\]]*)\](?::\d+)?$/.exec(host);
  if (bracketed) return bracketed[1]!;
  // A bare IPv6 address has several colons and no port.
  if ((host.match(/:/g) ?? []).length > 1) return host;
  return host.replace(/:\d+$/, '');
}

/**
 * Whether a `host[:port]` names loopback before any lookup, as containerd's MatchLocalhost:
 * `localhost` or a loopback address literal. The address a name resolves to is checked on the
 * connected socket (transport.ts), not here.
 */
export function namesLoopback(host: string): boolean {
  const name = hostnameOf(host).toLowerCase();
  return name === 'localhost' || isLoopbackAddress(name);
}
