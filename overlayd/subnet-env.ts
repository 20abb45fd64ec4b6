import { BerthError } from '../lib/errors.js';
import { tryParseCidr } from '../lib/ip.js';

// /run/berth/subnet.env: what overlayd tells the node (and berth-overlay) about its share of the
// cluster network, in flannel's subnet.env shape with BERTH_ names. SUBNET is written as the
// node's first usable address with the subnet's prefix (10.244.3.1/24), as flannel does.

export interface SubnetEnv {
  /** Cluster network (IPv4), e.g. 10.244.0.0/16. */
  network?: string;
  /** This node's IPv4 subnet as gateway address/prefix, e.g. 10.244.3.1/24. */
  subnet?: string;
  ipv6Network?: string;
  ipv6Subnet?: string;
  mtu: number;
  ipMasq: boolean;
}

const keys = {
  network: 'BERTH_NETWORK',
  subnet: 'BERTH_SUBNET',
  ipv6Network: 'BERTH_IPV6_NETWORK',
  ipv6Subnet: 'BERTH_IPV6_SUBNET',
} as const;

export function formatSubnetEnv(e: SubnetEnv): string {
  const lines: string[] = [];
  for (const [field, key] of Object.entries(keys) as [keyof typeof keys, string][]) {
    if (e[field] !== undefined) lines.push(`${key}=${e[field]}`);
  }
  lines.push(`BERTH_MTU=${e.mtu}`, `BERTH_IPMASQ=${e.ipMasq}`);
  return `${lines.join('\n')}\n`;
}

/** Parse subnet.env text; `source` (the path) names the file in errors. */
export function parseSubnetEnv(text: string, source: string): SubnetEnv {
  const vars = new Map<string, string>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new BerthError('invalid-config', `${source}:${i + 1}: expected KEY=VALUE, got ${JSON.stringify(line)}`);
    vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const out: SubnetEnv = { mtu: 0, ipMasq: false };
  for (const [field, key] of Object.entries(keys) as [keyof typeof keys, string][]) {
    const v = vars.get(key);
    if (v === undefined) continue;
    const want = field.startsWith('ipv6') ? 6 : 4;
    if (tryParseCidr(v)?.address.family !== want) throw new BerthError('invalid-config', `${source}: ${key}: ${JSON.stringify(v)} is not an IPv${want} CIDR`);
    out[field] = v;
  }
  if (!out.subnet && !out.ipv6Subnet) throw new BerthError('invalid-config', `${source}: neither BERTH_SUBNET nor BERTH_IPV6_SUBNET is set`);
  if (out.subnet && !out.network) throw new BerthError('invalid-config', `${source}: BERTH_SUBNET is set but BERTH_NETWORK is not`);
  if (out.ipv6Subnet && !out.ipv6Network) throw new BerthError('invalid-config', `${source}: BERTH_IPV6_SUBNET is set but BERTH_IPV6_NETWORK is not`);
  const mtu = vars.get('BERTH_MTU');
  if (mtu === undefined || !/^\d+$/.test(mtu) || Number(mtu) < 576 || Number(mtu) > 65535) {
    throw new BerthError('invalid-config', `${source}: BERTH_MTU: expected a number 576..65535, got ${JSON.stringify(mtu ?? null)}`);
  }
  out.mtu = Number(mtu);
  const masq = vars.get('BERTH_IPMASQ') ?? 'false';
  if (masq !== 'true' && masq !== 'false') throw new BerthError('invalid-config', `${source}: BERTH_IPMASQ: expected true or false, got ${JSON.stringify(masq)}`);
  out.ipMasq = masq === 'true';
  return out;
}
