import { formatIp, tryParseCidr } from '../../lib/ip.js';
import type { Lease, LeaseAttrs } from '../types.js';

// How a lease is spelled in etcd, with no client in sight: the key names its subnets
// ("<ip>-<len>[&<ip6>-<len>]"), the value is flannel's JSON of the lease attributes, and a
// prefix is read as a [key, range_end) range.

export type Subnets = Pick<Lease, 'subnet' | 'ipv6Subnet'>;

/** The key's subnets, canonical, or undefined when it is not "<ip>-<len>[&<ip6>-<len>]". */
export function subnetsOfKey(key: string): Subnets | undefined {
  const out: Subnets = {};
  for (const part of key.split('&')) {
    const dash = part.lastIndexOf('-');
    const p = dash > 0 ? tryParseCidr(`${part.slice(0, dash)}/${part.slice(dash + 1)}`) : undefined;
    if (!p) return undefined;
    const cidr = `${formatIp(p.address.value, p.address.family)}/${p.prefixLength}`;
    const field = p.address.family === 4 ? 'subnet' : 'ipv6Subnet';
    if (out[field]) return undefined;
    out[field] = cidr;
  }
  return out;
}

export function canonicalCidr(cidr: string | undefined): string | undefined {
  const p = cidr === undefined ? undefined : tryParseCidr(cidr);
  return p && `${formatIp(p.address.value, p.address.family)}/${p.prefixLength}`;
}

/** The value of a lease key, in flannel's capitalised spelling. */
export function formatLeaseValue(a: LeaseAttrs): string {
  const vtep = (d: { vtepMAC: string; vni: number } | undefined) => d && { VtepMAC: d.vtepMAC, VNI: d.vni };
  return JSON.stringify({ PublicIP: a.publicIP, PublicIPv6: a.publicIPv6, BackendType: a.backendType, BackendData: vtep(a.backendData), BackendV6Data: vtep(a.backendV6Data) });
}

/**
 * The PublicIP of a lease value, however incomplete the rest: an operator's reservation may be
 * written by hand as just {"PublicIP": "..."}, and it still names the node it is for.
 */
export function publicIPOf(text: string): string | undefined {
  try {
    const v = JSON.parse(text) as { PublicIP?: unknown } | null;
    return typeof v?.PublicIP === 'string' ? v.PublicIP : undefined;
  } catch {
    return undefined;
  }
}

/** Parse a lease value; a string is the reason it is malformed. */
export function parseLeaseValue(text: string): LeaseAttrs | string {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null) return 'not a JSON object';
  const vtep = (d: unknown, name: string): { vtepMAC: string; vni: number } | string => {
    const o = d as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null || typeof o.VtepMAC !== 'string' || typeof o.VNI !== 'number') return `${name}: expected {"VtepMAC": string, "VNI": number}`;
    return { vtepMAC: o.VtepMAC, vni: o.VNI };
  };
  if (typeof v.PublicIP !== 'string') return 'PublicIP: missing';
  if (v.PublicIPv6 !== undefined && typeof v.PublicIPv6 !== 'string') return 'PublicIPv6: expected a string';
  if (v.BackendType !== 'vxlan') return `BackendType: ${JSON.stringify(v.BackendType)} is not "vxlan"`;
  const data = vtep(v.BackendData, 'BackendData');
  if (typeof data === 'string') return data;
  const attrs: LeaseAttrs = { publicIP: v.PublicIP, backendType: 'vxlan', backendData: data };
  if (typeof v.PublicIPv6 === 'string') attrs.publicIPv6 = v.PublicIPv6;
  if (v.BackendV6Data !== undefined) {
    const v6 = vtep(v.BackendV6Data, 'BackendV6Data');
    if (typeof v6 === 'string') return v6;
    attrs.backendV6Data = v6;
  }
  return attrs;
}

/** [key, key+1): the range of every key under `prefix`. */
export function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  const key = Buffer.from(prefix);
  const end = Buffer.from(key);
  end[end.length - 1]! += 1; // prefixes end in '/', never 0xff
  return { key, range_end: end };
}
