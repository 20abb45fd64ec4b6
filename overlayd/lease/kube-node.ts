import type { V1Node } from '@kubernetes/client-node';
import { errorMessage } from '../../lib/errors.js';
import { networkCidr, parseCidr, tryParseCidr, type Family } from '../../lib/ip.js';
import type { Lease, LeaseAttrs, NetworkConfig } from '../types.js';

// A lease as it reads on a Node object: the subnets come from spec.podCIDRs, the rest from
// berth's annotations. Pure, so the client library is not needed to encode or decode one.

export const annotationKeys = {
  backendType: 'berth.io/backend-type',
  backendData: 'berth.io/backend-data',
  publicIP: 'berth.io/public-ip',
  publicIPv6: 'berth.io/public-ipv6',
  backendV6Data: 'berth.io/backend-v6-data',
} as const;
export const allAnnotationKeys = Object.values(annotationKeys);

/** A node's lease as the store sees it: the lease, or why there is none. */
export type Decoded = { lease: Lease } | { missing: string } | { broken: string };

interface VtepJson {
  VtepMAC: string;
  VNI: number;
}

function encodeVtep(data: { vtepMAC: string; vni: number }): string {
  const json: VtepJson = { VtepMAC: data.vtepMAC, VNI: data.vni };
  return JSON.stringify(json);
}

function decodeVtep(text: string, key: string): { vtepMAC: string; vni: number } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${key}: not JSON: ${JSON.stringify(text)}`);
  }
  const { VtepMAC, VNI } = (parsed ?? {}) as Partial<VtepJson>;
  if (typeof VtepMAC !== 'string' || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(VtepMAC) || typeof VNI !== 'number' || !Number.isInteger(VNI)) {
    throw new Error(`${key}: expected {"VtepMAC": "xx:xx:xx:xx:xx:xx", "VNI": n}, got ${text}`);
  }
  return { vtepMAC: VtepMAC.toLowerCase(), vni: VNI };
}

/** The node's pod CIDR of one family, as a network CIDR; undefined when none is assigned. */
export function podCIDROf(node: V1Node, family: Family): string | undefined {
  const cidrs = node.spec?.podCIDRs?.length ? node.spec.podCIDRs : node.spec?.podCIDR ? [node.spec.podCIDR] : [];
  for (const text of cidrs) {
    const parsed = tryParseCidr(text);
    if (parsed?.address.family === family) return networkCidr(parseCidr(text, 'podCIDR'));
  }
  return undefined;
}

/** Read a node's lease from its podCIDRs and berth annotations. */
export function decodeNode(node: V1Node, config: NetworkConfig): Decoded {
  const a = node.metadata?.annotations ?? {};
  const subnet = config.enableIPv4 ? podCIDROf(node, 4) : undefined;
  const ipv6Subnet = config.enableIPv6 ? podCIDROf(node, 6) : undefined;
  if (config.enableIPv4 && !subnet) return { missing: 'no IPv4 podCIDR' };
  if (config.enableIPv6 && !ipv6Subnet) return { missing: 'no IPv6 podCIDR' };
  const type = a[annotationKeys.backendType];
  if (type === undefined) return { missing: `no ${annotationKeys.backendType} annotation` };
  if (type !== 'vxlan') return { broken: `${annotationKeys.backendType}: ${JSON.stringify(type)} is not "vxlan"` };
  const needed = [annotationKeys.backendData, ...(config.enableIPv4 ? [annotationKeys.publicIP] : []), ...(config.enableIPv6 ? [annotationKeys.publicIPv6, annotationKeys.backendV6Data] : [])];
  const absent = needed.find((k) => a[k] === undefined);
  if (absent) return { missing: `no ${absent} annotation` };
  try {
    const attrs: LeaseAttrs = {
      publicIP: a[annotationKeys.publicIP] ?? '',
      backendType: 'vxlan',
      backendData: decodeVtep(a[annotationKeys.backendData] as string, annotationKeys.backendData),
    };
    if (config.enableIPv6) {
      attrs.publicIPv6 = a[annotationKeys.publicIPv6];
      attrs.backendV6Data = decodeVtep(a[annotationKeys.backendV6Data] as string, annotationKeys.backendV6Data);
    }
    const lease: Lease = { attrs };
    if (subnet) lease.subnet = subnet;
    if (ipv6Subnet) lease.ipv6Subnet = ipv6Subnet;
    return { lease };
  } catch (err) {
    return { broken: errorMessage(err) };
  }
}

/** The annotations that publish `attrs`; keys of a family that is off are removed (null). */
export function leaseAnnotations(attrs: LeaseAttrs, config: NetworkConfig): Record<string, string | null> {
  const v6 = config.enableIPv6 && attrs.backendV6Data;
  return {
    [annotationKeys.backendType]: attrs.backendType,
    [annotationKeys.backendData]: encodeVtep(attrs.backendData),
    [annotationKeys.publicIP]: attrs.publicIP || null,
    [annotationKeys.publicIPv6]: v6 ? (attrs.publicIPv6 ?? null) : null,
    [annotationKeys.backendV6Data]: v6 ? encodeVtep(attrs.backendV6Data as { vtepMAC: string; vni: number }) : null,
  };
}

/** The part of `wanted` that differs from `current` (null = delete, only when present). */
export function annotationPatch(current: Record<string, string>, wanted: Record<string, string | null>): Record<string, string | null> | undefined {
  const patch: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(wanted)) {
    if (v === null ? k in current : current[k] !== v) patch[k] = v;
  }
  return Object.keys(patch).length ? patch : undefined;
}
