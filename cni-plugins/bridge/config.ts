import { BerthError } from '../../lib/errors.js';
import type { CniCommand, CniDns } from '../../lib/cni/types.js';
import { isObject, optBool, optEnum, optInt, optObject, optString, validInterfaceName, type Json } from '../../lib/cni/validate.js';
import type { FirewallBackend } from '../../lib/netfilter.js';

// berth-bridge configuration: the reference bridge plugin's fields (cni.dev/plugins/current/main/bridge).

export interface BridgeConfig {
  network: string;
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  ipMasqBackend: FirewallBackend | undefined;
  mtu: number | undefined;
  hairpinMode: boolean;
  promiscMode: boolean;
  vlan: number;
  preserveDefaultVlan: boolean;
  enableDad: boolean;
  macSpoofCheck: boolean;
  /** IPAM plugin type; undefined for a layer-2 only network (`"ipam": {}`). */
  ipamType: string | undefined;
  dns: CniDns | undefined;
  /** Container MAC requested by the runtime (capability "mac" or args.cni.mac). */
  mac: string | undefined;
}

const macPattern = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;

function parseDns(raw: Json): CniDns | undefined {
  const dns = optObject(raw, 'dns', '');
  if (!dns) return undefined;
  const out: CniDns = {};
  for (const key of ['nameservers', 'search', 'options'] as const) {
    const v = dns[key];
    if (v === undefined) continue;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
      throw new BerthError('invalid-config', `dns.${key}: expected an array of strings, got ${JSON.stringify(v)}`);
    }
    out[key] = v as string[];
  }
  const domain = optString(dns, 'domain', 'dns.');
  if (domain) out.domain = domain;
  return out;
}

function requestedMac(raw: Json): string | undefined {
  const runtime = optObject(raw, 'runtimeConfig', '');
  const args = optObject(raw, 'args', '');
  const fromArgs = args && isObject(args.cni) ? args.cni.mac : undefined;
  const mac = runtime?.mac ?? fromArgs;
  if (mac === undefined || mac === '') return undefined;
  if (typeof mac !== 'string' || !macPattern.test(mac)) {
    throw new BerthError('invalid-config', `runtimeConfig.mac: expected a MAC address like 0a:58:0a:f4:00:02, got ${JSON.stringify(mac)}`);
  }
  return mac.toLowerCase();
}

export function parseBridgeConfig(raw: Json, _command: CniCommand): BridgeConfig {
  const bridge = optString(raw, 'bridge', '') || 'cni0';
  if (!validInterfaceName(bridge)) {
    throw new BerthError('invalid-config', `bridge: ${JSON.stringify(bridge)} is not a valid interface name (1-15 characters, no '/', ':' or whitespace)`);
  }
  const isDefaultGateway = optBool(raw, 'isDefaultGateway', '') ?? false;
  const vlan = optInt(raw, 'vlan', '', 0, 4094) ?? 0;
  const ipMasq = optBool(raw, 'ipMasq', '') ?? false;
  const ipam = raw.ipam;
  if (ipam === undefined || ipam === null) {
    throw new BerthError('invalid-config', 'ipam: required field is missing (use "ipam": {} for a layer-2 only network)');
  }
  if (!isObject(ipam)) throw new BerthError('invalid-config', `ipam: expected an object, got ${JSON.stringify(ipam)}`);
  const ipamType = optString(ipam, 'type', 'ipam.') || undefined;
  if (ipamType !== undefined && (ipamType.includes('/') || ipamType === '.' || ipamType === '..')) {
    throw new BerthError('invalid-config', `ipam.type: ${JSON.stringify(ipamType)} must be a plugin name, not a path`);
  }
  for (const unsupported of ['vlanTrunk', 'disableContainerInterface', 'portIsolation'] as const) {
    if (raw[unsupported] !== undefined && raw[unsupported] !== false && raw[unsupported] !== null) {
      throw new BerthError('unsupported-field', `${unsupported}: ${JSON.stringify(raw[unsupported])} is not supported by berth-bridge`);
    }
  }
  return {
    network: raw.name as string,
    bridge,
    isGateway: (optBool(raw, 'isGateway', '') ?? false) || isDefaultGateway,
    isDefaultGateway,
    forceAddress: optBool(raw, 'forceAddress', '') ?? false,
    ipMasq,
    ipMasqBackend: optEnum(raw, 'ipMasqBackend', '', ['iptables', 'nftables'] as const),
    mtu: optInt(raw, 'mtu', '', 68, 65535),
    hairpinMode: optBool(raw, 'hairpinMode', '') ?? false,
    promiscMode: optBool(raw, 'promiscMode', '') ?? false,
    vlan,
    preserveDefaultVlan: optBool(raw, 'preserveDefaultVlan', '') ?? true,
    enableDad: optBool(raw, 'enabledad', '') ?? false,
    macSpoofCheck: optBool(raw, 'macspoofchk', '') ?? false,
    ipamType,
    dns: parseDns(raw),
    mac: requestedMac(raw),
  };
}
