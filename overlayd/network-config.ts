import { readFileSync } from 'node:fs';
import * as z from 'zod';
import { describeZodError } from '../lib/config-file.js';
import { BerthError } from '../lib/errors.js';
import { formatIp, ipToBigInt, parseCidr, tryParseCidr, type Family } from '../lib/ip.js';
import type { NetworkConfig } from './types.js';

// The cluster network config, in flannel's JSON spelling (Network, SubnetLen, Backend.VNI...),
// so an operator's net-conf.json reads the same. Validated field by field; the subnet range
// checks (SubnetLen against Network, SubnetMin/Max inside it) are done here too, so a bad
// config is refused before any lease is taken.

const cidrText = (family: Family) =>
  z.string().refine((s) => tryParseCidr(s)?.address.family === family, { message: `expected an IPv${family} CIDR like ${family === 4 ? '10.244.0.0/16' : 'fd00:10:244::/56'}` });
const ipText = (family: Family) =>
  z.string().refine((s) => tryParseCidr(`${s}/${family === 4 ? 32 : 128}`)?.address.family === family, { message: `expected an IPv${family} address` });

const schema = z
  .object({
    Network: cidrText(4).optional(),
    SubnetLen: z.number().int().min(1).max(32).optional(),
    SubnetMin: ipText(4).optional(),
    SubnetMax: ipText(4).optional(),
    EnableIPv4: z.boolean().optional(),
    EnableIPv6: z.boolean().optional(),
    IPv6Network: cidrText(6).optional(),
    IPv6SubnetLen: z.number().int().min(1).max(128).optional(),
    IPv6SubnetMin: ipText(6).optional(),
    IPv6SubnetMax: ipText(6).optional(),
    Backend: z
      .object({
        Type: z.literal('vxlan', { message: 'only "vxlan" is supported' }).optional(),
        VNI: z.number().int().min(1).max(16777215).optional(),
        Port: z.number().int().min(1).max(65535).optional(),
        MTU: z.number().int().min(576).max(65535).optional(),
        DirectRouting: z.boolean().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** A subnet range check: prefix `len` fits in `network`, min/max are subnets inside it. */
function checkRange(family: Family, network: string, len: number, min: string | undefined, max: string | undefined, source: string, names: [string, string, string, string]): { min: string; max: string } {
  const [netName, lenName, minName, maxName] = names;
  const fail = (msg: string): never => {
    throw new BerthError('invalid-config', `${source}: ${msg}`);
  };
  const net = parseCidr(network, netName);
  const bits = family === 4 ? 32 : 128;
  if (len <= net.prefixLength) fail(`${lenName}: ${len} must be longer than the prefix of ${netName} (${network})`);
  if (len > bits - 2 && family === 4) fail(`${lenName}: ${len} leaves no room for pods (at most ${bits - 2})`);
  const size = 1n << BigInt(bits - len);
  const first = ipToBigInt(net.address) & ~((1n << BigInt(bits - net.prefixLength)) - 1n);
  const last = first + (1n << BigInt(bits - net.prefixLength)) - size;
  // flannel leaves the network's first subnet out by default (its address is the network's own).
  const lo = min === undefined ? first + size : ipToBigInt(min);
  const hi = max === undefined ? last : ipToBigInt(max);
  for (const [name, v] of [[minName, lo], [maxName, hi]] as const) {
    if (v < first || v > last) fail(`${name}: ${formatIp(v, family)} is outside ${netName} ${network}`);
    if (v % size !== 0n) fail(`${name}: ${formatIp(v, family)} is not the start of a /${len} subnet`);
  }
  if (lo > hi) fail(`${minName} (${formatIp(lo, family)}) is after ${maxName} (${formatIp(hi, family)})`);
  return { min: formatIp(lo, family), max: formatIp(hi, family) };
}

/** Parse and validate a network config (JSON text); errors name the field and `source`. */
export function parseNetworkConfig(text: string, source: string): NetworkConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BerthError('invalid-config', `${source}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(doc);
  if (!parsed.success) throw new BerthError('invalid-config', describeZodError(parsed.error, source));
  const c = parsed.data;
  const enableIPv4 = c.EnableIPv4 ?? true;
  const enableIPv6 = c.EnableIPv6 ?? false;
  if (!enableIPv4 && !enableIPv6) throw new BerthError('invalid-config', `${source}: EnableIPv4 and EnableIPv6 are both false: nothing to do`);
  if (enableIPv4 && !c.Network) throw new BerthError('invalid-config', `${source}: Network: required when IPv4 is enabled (e.g. "10.244.0.0/16")`);
  if (enableIPv6 && !c.IPv6Network) throw new BerthError('invalid-config', `${source}: IPv6Network: required when EnableIPv6 is true`);
  const out: NetworkConfig = {
    enableIPv4,
    enableIPv6,
    subnetLen: c.SubnetLen ?? 24,
    ipv6SubnetLen: c.IPv6SubnetLen ?? 64,
    backend: { type: 'vxlan', vni: c.Backend?.VNI ?? 1, port: c.Backend?.Port ?? 8472, mtu: c.Backend?.MTU, directRouting: c.Backend?.DirectRouting ?? false },
  };
  if (enableIPv4) {
    const network = parseCidr(c.Network!, `${source}: Network`);
    out.network = `${formatIp(ipToBigInt(network.address) & ~((1n << BigInt(32 - network.prefixLength)) - 1n), 4)}/${network.prefixLength}`;
    const r = checkRange(4, out.network, out.subnetLen, c.SubnetMin, c.SubnetMax, source, ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax']);
    out.subnetMin = r.min;
    out.subnetMax = r.max;
  }
  if (enableIPv6) {
    const network = parseCidr(c.IPv6Network!, `${source}: IPv6Network`);
    out.ipv6Network = `${formatIp(ipToBigInt(network.address) & ~((1n << BigInt(128 - network.prefixLength)) - 1n), 6)}/${network.prefixLength}`;
    const r = checkRange(6, out.ipv6Network, out.ipv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax, source, ['IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax']);
    out.ipv6SubnetMin = r.min;
    out.ipv6SubnetMax = r.max;
  }
  return out;
}

/** Read and validate --network-config FILE; errors name the flag and the file. */
export function readNetworkConfigFile(path: string): NetworkConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BerthError('invalid-config', `--network-config ${path}: ${(err as Error).message}`);
  }
  return parseNetworkConfig(text, path);
}

/** The config back in flannel's spelling (what the etcd store seeds at <prefix>/config). */
export function formatNetworkConfig(c: NetworkConfig): string {
  return JSON.stringify({
    Network: c.network,
    SubnetLen: c.subnetLen,
    SubnetMin: c.subnetMin,
    SubnetMax: c.subnetMax,
    EnableIPv4: c.enableIPv4,
    EnableIPv6: c.enableIPv6,
    IPv6Network: c.ipv6Network,
    IPv6SubnetLen: c.enableIPv6 ? c.ipv6SubnetLen : undefined,
    IPv6SubnetMin: c.ipv6SubnetMin,
    IPv6SubnetMax: c.ipv6SubnetMax,
    Backend: { Type: 'vxlan', VNI: c.backend.vni, Port: c.backend.port, MTU: c.backend.mtu, DirectRouting: c.backend.directRouting },
  });
}

/**
 * The subnets of a family in config order, lowest first, as CIDRs. A generator: a /8 split
 * in /24s has 65536 of them and the allocator usually stops at the first free one.
 */
export function* candidateSubnets(c: NetworkConfig, family: Family): Generator<string> {
  const min = family === 4 ? c.subnetMin : c.ipv6SubnetMin;
  const max = family === 4 ? c.subnetMax : c.ipv6SubnetMax;
  const len = family === 4 ? c.subnetLen : c.ipv6SubnetLen;
  if (min === undefined || max === undefined) return;
  const size = 1n << BigInt((family === 4 ? 32 : 128) - len);
  for (let v = ipToBigInt(min); v <= ipToBigInt(max); v += size) yield `${formatIp(v, family)}/${len}`;
}

/** Whether `subnet` (a CIDR) is a valid lease subnet of the config: right length, inside min..max, aligned. */
export function isLeasableSubnet(c: NetworkConfig, subnet: string): boolean {
  const p = tryParseCidr(subnet);
  if (!p) return false;
  const family = p.address.family;
  const min = family === 4 ? c.subnetMin : c.ipv6SubnetMin;
  const max = family === 4 ? c.subnetMax : c.ipv6SubnetMax;
  const len = family === 4 ? c.subnetLen : c.ipv6SubnetLen;
  if (min === undefined || max === undefined || p.prefixLength !== len) return false;
  const v = p.address.value;
  const size = 1n << BigInt((family === 4 ? 32 : 128) - len);
  return v >= ipToBigInt(min) && v <= ipToBigInt(max) && v % size === 0n;
}
