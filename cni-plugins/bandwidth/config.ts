import { BerthError } from '../../lib/errors.js';
import type { CniCommand } from '../../lib/cni/types.js';
import { optArray, optObject, type Json } from '../../lib/cni/validate.js';
import { tryParseCidr } from '../../lib/ip.js';
import type { SubnetMatch } from '../../lib/netlink/tc-messages.js';

// berth-bandwidth configuration: the reference bandwidth plugin's fields
// (cni.dev/plugins/current/meta/bandwidth) at the top level, or the runtime's `bandwidth`
// capability (runtimeConfig.bandwidth) with the same keys. Rates are bits per second, bursts
// bits; 0 (or absent) means no limit in that direction.

export interface Limit {
  /** Bits per second. */
  rate: number;
  /** Bits. */
  burst: number;
}

export interface BandwidthConfig {
  network: string;
  /** Traffic to the pod; undefined = not shaped. */
  ingress: Limit | undefined;
  /** Traffic from the pod; undefined = not shaped. */
  egress: Limit | undefined;
  /** Where the limits came from, for messages. */
  source: '' | 'runtimeConfig.bandwidth.';
  /**
   * Shape only part of the traffic: `shaped` lists the only subnets whose traffic is shaped
   * (shapedSubnets), `unshaped` the subnets whose traffic is not (unshapedSubnets); the subnet is
   * the far end's (the source of traffic to the pod, the destination of traffic from it).
   * Undefined: all of it.
   */
  subnets: { mode: 'shaped' | 'unshaped'; list: SubnetMatch[] } | undefined;
}

const keys = ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const;
// The reference refuses a bucket of 4 GiB or more: the kernel's TBF counts it in a u32 of bytes.
const maxBurstBytes = 0xffffffff;

function bits(obj: Json, key: string, path: string): number {
  const v = obj[key];
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new BerthError('invalid-config', `${path}${key}: expected a non-negative integer (bits), got ${JSON.stringify(v)}`);
  }
  return v;
}

function limitOf(entry: Json, direction: 'ingress' | 'egress', path: string): Limit | undefined {
  const rate = bits(entry, `${direction}Rate`, path);
  const burst = bits(entry, `${direction}Burst`, path);
  if (rate === 0 && burst === 0) return undefined;
  if (burst === 0) throw new BerthError('invalid-config', `${path}${direction}Burst: must be set (> 0) when ${direction}Rate is set (${rate})`);
  if (rate === 0) throw new BerthError('invalid-config', `${path}${direction}Rate: must be set (> 0) when ${direction}Burst is set (${burst})`);
  if (Math.floor(burst / 8) >= maxBurstBytes) throw new BerthError('invalid-config', `${path}${direction}Burst: ${burst} bits is more than the 4 GiB a bucket can hold`);
  // Below one byte per second the kernel's rate (bytes per second) would be 0: no traffic at all.
  if (rate < 8) throw new BerthError('invalid-config', `${path}${direction}Rate: ${rate} bits/s is below the 8 bits/s the kernel can shape to`);
  return { rate, burst };
}

/** The reference's shapedSubnets / unshapedSubnets: one of the two, each a list of CIDRs. */
function subnetsOf(entry: Json, path: string): BandwidthConfig['subnets'] {
  const found: { mode: 'shaped' | 'unshaped'; list: SubnetMatch[] }[] = [];
  for (const [key, mode] of [
    ['shapedSubnets', 'shaped'],
    ['unshapedSubnets', 'unshaped'],
  ] as const) {
    const raw = optArray(entry, key, path);
    if (!raw || raw.length === 0) continue;
    const list = raw.map((c, i): SubnetMatch => {
      const cidr = typeof c === 'string' ? tryParseCidr(c) : undefined;
      if (!cidr) throw new BerthError('invalid-config', `${path}${key}[${i}]: expected a CIDR, got ${JSON.stringify(c)}`);
      const bytes = cidr.address.family === 4 ? 4 : 16;
      const address = Buffer.from(cidr.address.value.toString(16).padStart(bytes * 2, '0'), 'hex');
      return { family: cidr.address.family, address, prefixLength: cidr.prefixLength, text: c as string };
    });
    found.push({ mode, list });
  }
  if (found.length > 1) throw new BerthError('invalid-config', `${path}shapedSubnets, ${path}unshapedSubnets: set one of the two, not both`);
  return found[0];
}

export function parseBandwidthConfig(raw: Json, _command: CniCommand): BandwidthConfig {
  const runtime = optObject(raw, 'runtimeConfig', '') ?? {};
  const capability = optObject(runtime, 'bandwidth', 'runtimeConfig.');
  // As the reference: limits in the config itself win over the capability, so a pod's
  // annotation cannot lift a limit the administrator wrote into the network.
  const staticSet = keys.some((k) => raw[k] !== undefined && raw[k] !== null);
  const [entry, source] = !staticSet && capability ? [capability, 'runtimeConfig.bandwidth.' as const] : [raw, '' as const];
  const ingress = limitOf(entry, 'ingress', source);
  const egress = limitOf(entry, 'egress', source);
  const subnets = subnetsOf(entry, source);
  return { network: raw.name as string, ingress, egress, source, subnets };
}
