import { BerthError } from './errors.js';

// IP address arithmetic for the whole suite: addresses as BigInt so IPv4 and IPv6 share one code
// path. No node:net: loading it costs 3-6 ms of every CNI executable's start-up.
// Text output matches Go's net.IP.String(), because the reference host-local names its
// lease files that way and both plugins must agree on the name of every lease.

export type Family = 4 | 6;

export interface IpAddress {
  family: Family;
  value: bigint;
}

export interface Subnet {
  family: Family;
  /** The network address (host bits cleared). */
  network: bigint;
  prefixLength: number;
}

export function addressBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

const v4Octet = /^(0|[1-9][0-9]{0,2})$/;
const v6Group = /^[0-9a-fA-F]{1,4}$/;

function parseV4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // Leading zeros are refused, as Go does: "010" is octal in some parsers, decimal in others.
    if (!v4Octet.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseGroups(text: string): number[] | undefined {
  if (text === '') return [];
  const groups: number[] = [];
  for (const g of text.split(':')) {
    if (!v6Group.test(g)) return undefined;
    groups.push(parseInt(g, 16));
  }
  return groups;
}

function parseV6(text: string): bigint | undefined {
  let body = text;
  let tail: number[] = [];
  // An embedded IPv4 tail (::ffff:10.1.2.3) stands for the last two groups.
  const lastColon = body.lastIndexOf(':');
  if (lastColon >= 0 && body.slice(lastColon + 1).includes('.')) {
    const v4 = parseV4(body.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [Number(v4 >> 16n), Number(v4 & 0xffffn)];
    body = body.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::"; "64:ff9b::1.2.3.4" leaves "64:ff9b::"; "1:2:3:4:5:6:1.2.3.4" leaves "...6:".
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0] ?? '');
    const rest = parseGroups(halves[1] ?? '');
    if (!head || !rest) return undefined;
    const zeros = 8 - head.length - rest.length - tail.length;
    // "::" stands for at least one zero group.
    if (zeros < 1) return undefined;
    groups = [...head, ...Array<number>(zeros).fill(0), ...rest, ...tail];
  } else {
    const all = parseGroups(body);
    if (!all) return undefined;
    groups = [...all, ...tail];
    if (groups.length !== 8) return undefined;
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** Parse an IPv4 or IPv6 address (no prefix, no zone); undefined if it is not one. */
export function parseIp(text: string): IpAddress | undefined {
  if (text.includes(':')) {
    const value = parseV6(text);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseV4(text);
  return value === undefined ? undefined : { family: 4, value };
}

/** Format as Go does: dotted quad, or lowercase RFC 5952 with the longest zero run compressed. */
export function formatIp(value: bigint, family: Family): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => Number((value >> s) & 0xffn)).join('.');
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    // Only runs of two or more groups are compressed; on a tie the first run wins.
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

export function formatAddress(address: IpAddress): string {
  return formatIp(address.value, address.family);
}

/** The canonical spelling of an address, or undefined if the text is not an address. */
export function canonicalIp(text: string): string | undefined {
  const parsed = parseIp(text);
  return parsed ? formatAddress(parsed) : undefined;
}

export function hostMask(prefixLength: number, family: Family): bigint {
  return (1n << BigInt(addressBits(family) - prefixLength)) - 1n;
}

export interface ParsedCidr {
  /** The address as written, host bits included. */
  address: IpAddress;
  prefixLength: number;
}

/** Parse "address/prefix"; undefined if malformed. */
export function tryParseCidr(text: string): ParsedCidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!address || !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return undefined;
  const prefixLength = Number(prefixText);
  if (prefixLength > addressBits(address.family)) return undefined;
  return { address, prefixLength };
}

export function subnetOf(cidr: ParsedCidr): Subnet {
  const { family, value } = cidr.address;
  return { family, prefixLength: cidr.prefixLength, network: value & ~hostMask(cidr.prefixLength, family) };
}

/** The last address of a subnet (the IPv4 broadcast address). */
export function lastAddress(subnet: Subnet): bigint {
  return subnet.network | hostMask(subnet.prefixLength, subnet.family);
}

/** How many addresses the subnet spans. */
export function subnetSize(subnet: Subnet): bigint {
  return hostMask(subnet.prefixLength, subnet.family) + 1n;
}

export function subnetContains(subnet: Subnet, address: IpAddress): boolean {
  return address.family === subnet.family && (address.value & ~hostMask(subnet.prefixLength, subnet.family)) === subnet.network;
}

export function formatSubnet(subnet: Subnet): string {
  return `${formatIp(subnet.network, subnet.family)}/${subnet.prefixLength}`;
}

export function familyName(family: Family): string {
  return family === 4 ? 'IPv4' : 'IPv6';
}

// ---- CIDR strings, as configs and results carry them ----------------------------------------

export interface Cidr {
  /** The address as written (may be a host address inside the subnet), canonical spelling. */
  address: string;
  prefixLength: number;
  family: Family;
}

export function ipFamily(address: string): Family | undefined {
  return parseIp(address)?.family;
}

export function isIpAddress(text: string): boolean {
  return parseIp(text) !== undefined;
}

export function ipToBigInt(address: string): bigint {
  const parsed = parseIp(address);
  if (!parsed) throw new BerthError('invalid-argument', `${JSON.stringify(address)} is not an IP address`);
  return parsed.value;
}

export const bigIntToIp = formatIp;

/** Parse a CIDR or throw a config error naming `field`. */
export function parseCidr(text: string, field = 'address'): Cidr {
  const parsed = tryParseCidr(text);
  if (!parsed) throw new BerthError('invalid-config', `${field}: ${JSON.stringify(text)} is not a CIDR (address/prefix length)`);
  return { address: formatAddress(parsed.address), prefixLength: parsed.prefixLength, family: parsed.address.family };
}

function subnetOfCidr(cidr: Cidr): Subnet {
  return subnetOf({ address: { family: cidr.family, value: ipToBigInt(cidr.address) }, prefixLength: cidr.prefixLength });
}

/** "10.1.2.3/24" -> "10.1.2.0/24". */
export function networkCidr(cidr: Cidr): string {
  return formatSubnet(subnetOfCidr(cidr));
}

export function lastAddressOf(cidr: Cidr): bigint {
  return lastAddress(subnetOfCidr(cidr));
}

export function cidrContains(cidr: Cidr, address: string): boolean {
  const parsed = parseIp(address);
  return parsed !== undefined && subnetContains(subnetOfCidr(cidr), parsed);
}

/** The n-th address of the subnet (n = 1 is the conventional gateway). */
export function nthAddress(cidr: Cidr, n: bigint): string {
  return formatIp(subnetOfCidr(cidr).network + n, cidr.family);
}

export function defaultRouteFor(family: Family): string {
  return family === 4 ? '0.0.0.0/0' : '::/0';
}
