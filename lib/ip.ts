import { isIPv4, isIPv6 } from 'node:net';
import { BerthError } from './errors.js';

// IPv4/IPv6 addresses as BigInt, enough for CIDR arithmetic: network address, nth host, contains.

export type Family = 4 | 6;

export interface Cidr {
  /** The address as written (may be a host address inside the subnet). */
  address: string;
  prefixLength: number;
  family: Family;
}

export function ipFamily(address: string): Family | undefined {
  return isIPv4(address) ? 4 : isIPv6(address) ? 6 : undefined;
}

export function ipToBigInt(address: string): bigint {
  if (isIPv4(address)) return address.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
  if (!isIPv6(address)) throw new BerthError('invalid-argument', `${JSON.stringify(address)} is not an IP address`);
  let text = address;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const n = ipToBigInt(v4[1]);
    text = text.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function bigIntToIp(value: bigint, family: Family): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => Number((value >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export function parseCidr(text: string, field = 'address'): Cidr {
  const slash = text.indexOf('/');
  const address = slash < 0 ? '' : text.slice(0, slash);
  const prefixText = slash < 0 ? '' : text.slice(slash + 1);
  const family = ipFamily(address);
  const prefixLength = Number(prefixText);
  const max = family === 4 ? 32 : 128;
  if (!family || !/^\d+$/.test(prefixText) || prefixLength > max) {
    throw new BerthError('invalid-config', `${field}: ${JSON.stringify(text)} is not a CIDR (address/prefix length)`);
  }
  return { address, prefixLength, family };
}

function bits(family: Family): bigint {
  return family === 4 ? 32n : 128n;
}

export function maskOf(prefixLength: number, family: Family): bigint {
  const total = bits(family);
  return ((1n << total) - 1n) ^ ((1n << (total - BigInt(prefixLength))) - 1n);
}

export function networkOf(cidr: Cidr): bigint {
  return ipToBigInt(cidr.address) & maskOf(cidr.prefixLength, cidr.family);
}

export function lastAddressOf(cidr: Cidr): bigint {
  return networkOf(cidr) | (((1n << bits(cidr.family)) - 1n) ^ maskOf(cidr.prefixLength, cidr.family));
}

/** "10.1.2.3/24" -> "10.1.2.0/24". */
export function networkCidr(cidr: Cidr): string {
  return `${bigIntToIp(networkOf(cidr), cidr.family)}/${cidr.prefixLength}`;
}

export function cidrContains(cidr: Cidr, address: string): boolean {
  if (ipFamily(address) !== cidr.family) return false;
  const mask = maskOf(cidr.prefixLength, cidr.family);
  return (ipToBigInt(address) & mask) === networkOf(cidr);
}

/** The n-th address of the subnet (n = 1 is the conventional gateway). */
export function nthAddress(cidr: Cidr, n: bigint): string {
  return bigIntToIp(networkOf(cidr) + n, cidr.family);
}

export function defaultRouteFor(family: Family): string {
  return family === 4 ? '0.0.0.0/0' : '::/0';
}
