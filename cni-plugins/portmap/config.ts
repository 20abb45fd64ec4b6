import { BerthError } from '../../lib/errors.js';
import type { CniCommand } from '../../lib/cni/types.js';
import { isObject, optArray, optBool, optEnum, optInt, optObject, optString, type Json } from '../../lib/cni/validate.js';
import { ipFamily, type Family } from '../../lib/ip.js';

// berth-portmap configuration: the reference portmap's fields (cni.dev/plugins/current/meta/portmap)
// and the runtime's portMappings capability.

export type Protocol = 'tcp' | 'udp' | 'sctp';

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  /** Only traffic to this host address is forwarded; undefined = every local address. */
  hostIP: string | undefined;
}

export interface PortmapConfig {
  network: string;
  mappings: PortMapping[];
  snat: boolean;
  masqAll: boolean;
  markMasqBit: number;
  externalSetMarkChain: string | undefined;
  conditionsV4: string[];
  conditionsV6: string[];
  backend: 'iptables' | 'nftables' | undefined;
}

function parseMapping(raw: unknown, i: number): PortMapping {
  const path = `runtimeConfig.portMappings[${i}].`;
  if (!isObject(raw)) throw new BerthError('invalid-config', `runtimeConfig.portMappings[${i}]: expected an object, got ${JSON.stringify(raw)}`);
  const hostPort = optInt(raw, 'hostPort', path, 1, 65535);
  const containerPort = optInt(raw, 'containerPort', path, 1, 65535);
  if (hostPort === undefined) throw new BerthError('invalid-config', `${path}hostPort: required field is missing`);
  if (containerPort === undefined) throw new BerthError('invalid-config', `${path}containerPort: required field is missing`);
  const protoText = (optString(raw, 'protocol', path) || 'tcp').toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(protoText)) {
    throw new BerthError('invalid-config', `${path}protocol: expected one of tcp, udp, sctp, got ${JSON.stringify(raw.protocol)}`);
  }
  const hostIP = optString(raw, 'hostIP', path) || undefined;
  if (hostIP !== undefined && !ipFamily(hostIP)) {
    throw new BerthError('invalid-config', `${path}hostIP: expected an IP address, got ${JSON.stringify(hostIP)}`);
  }
  return { hostPort, containerPort, protocol: protoText as Protocol, hostIP };
}

function parseConditions(raw: Json, key: string): string[] {
  const list = optArray(raw, key, '') ?? [];
  return list.map((c, i) => {
    if (typeof c !== 'string') throw new BerthError('invalid-config', `${key}[${i}]: expected a string, got ${JSON.stringify(c)}`);
    // Conditions are spliced into a rule: one rule, no new lines, no table switches.
    if (/[\n\r]/.test(c) || /^\s*[*:]/.test(c)) throw new BerthError('invalid-config', `${key}[${i}]: ${JSON.stringify(c)} is not a single match expression`);
    return c;
  });
}

export function parsePortmapConfig(raw: Json, _command: CniCommand): PortmapConfig {
  const runtime = optObject(raw, 'runtimeConfig', '') ?? {};
  const mappings = (optArray(runtime, 'portMappings', 'runtimeConfig.') ?? []).map(parseMapping);
  const externalSetMarkChain = optString(raw, 'externalSetMarkChain', '') || undefined;
  if (externalSetMarkChain !== undefined && !/^[A-Za-z0-9_-]{1,28}$/.test(externalSetMarkChain)) {
    throw new BerthError('invalid-config', `externalSetMarkChain: ${JSON.stringify(externalSetMarkChain)} is not a valid chain name`);
  }
  return {
    network: raw.name as string,
    mappings,
    snat: optBool(raw, 'snat', '') ?? true,
    masqAll: optBool(raw, 'masqAll', '') ?? false,
    markMasqBit: optInt(raw, 'markMasqBit', '', 0, 31) ?? 13,
    externalSetMarkChain,
    conditionsV4: parseConditions(raw, 'conditionsV4'),
    conditionsV6: parseConditions(raw, 'conditionsV6'),
    backend: optEnum(raw, 'backend', '', ['iptables', 'nftables'] as const),
  };
}

/** Mappings that apply to a container address of `family` (a hostIP of the other family does not). */
export function mappingsFor(mappings: PortMapping[], family: Family): PortMapping[] {
  return mappings.filter((m) => m.hostIP === undefined || ipFamily(m.hostIP) === family);
}
