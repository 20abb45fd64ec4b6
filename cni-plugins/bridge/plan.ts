import { BerthError } from '../../lib/errors.js';
import { shortHash } from '../../lib/hash.js';
import { defaultRouteFor, networkCidr, nthAddress, parseCidr, type Family } from '../../lib/ip.js';
import type { CniDns, CniInterface, CniIpConfig, CniResult, CniRoute } from '../../lib/cni/types.js';
import type { BridgeConfig } from './config.js';

// Pure planning for one bridge attachment: from the config and the IPAM result to the addresses,
// routes, gateway addresses and result that the executor applies. Tested without root.

export interface IpamOutcome {
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns?: CniDns;
}

export interface ContainerAddress {
  cidr: string;
  family: Family;
  gateway: string | undefined;
}

export interface AttachmentPlan {
  hostVeth: string;
  addresses: ContainerAddress[];
  /** Routes inside the container, gateways filled in. */
  routes: CniRoute[];
  /** Gateway addresses (CIDR) the bridge must hold when isGateway. */
  bridgeAddresses: string[];
  /** Families that need forwarding enabled on the host. */
  forwarding: Family[];
  /** The container's subnets, exempt from masquerading. */
  subnets: string[];
}

/**
 * The host-side veth name is derived from the attachment, so a DEL that finds the container's
 * namespace gone, or an ADD retried after a crash, can still find (and remove) it. 11 hex
 * digits (44 bits, the most IFNAMSIZ leaves after "veth") make a clash between two live pods
 * of one node vanishingly unlikely.
 */
export function hostVethName(containerId: string, ifname: string): string {
  return 'veth' + shortHash(`${containerId}/${ifname}`, 11);
}

export function planAttachment(conf: BridgeConfig, containerId: string, ifname: string, ipam: IpamOutcome): AttachmentPlan {
  const addresses: ContainerAddress[] = ipam.ips.map((ip, i) => {
    const cidr = parseCidr(ip.address, `IPAM result ips[${i}].address`);
    // A gateway bridge without an IPAM-given gateway uses the subnet's first address.
    const gateway = ip.gateway ?? (conf.isGateway ? nthAddress(cidr, 1n) : undefined);
    if (gateway !== undefined && gateway === cidr.address) {
      throw new BerthError('invalid-config', `IPAM gave the container the gateway address ${gateway}`);
    }
    return { cidr: ip.address, family: cidr.family, gateway };
  });

  const gatewayOf = (family: Family) => addresses.find((a) => a.family === family && a.gateway)?.gateway;
  const routes: CniRoute[] = ipam.routes.map((r) => {
    const family = parseCidr(r.dst, 'IPAM result routes[].dst').family;
    const gw = r.gw ?? gatewayOf(family);
    return gw ? { ...r, gw } : { ...r };
  });
  if (conf.isDefaultGateway) {
    for (const family of [4, 6] as const) {
      const gw = gatewayOf(family);
      const dst = defaultRouteFor(family);
      if (gw && !routes.some((r) => r.dst === dst)) routes.push({ dst, gw });
    }
  }

  const bridgeAddresses: string[] = [];
  const forwarding: Family[] = [];
  if (conf.isGateway) {
    for (const a of addresses) {
      if (!a.gateway) continue;
      const gw = `${a.gateway}/${parseCidr(a.cidr).prefixLength}`;
      if (!bridgeAddresses.includes(gw)) bridgeAddresses.push(gw);
      if (!forwarding.includes(a.family)) forwarding.push(a.family);
    }
  }
  return {
    hostVeth: hostVethName(containerId, ifname),
    addresses,
    routes,
    bridgeAddresses,
    forwarding,
    subnets: [...new Set(addresses.map((a) => networkCidr(parseCidr(a.cidr))))],
  };
}

/**
 * Which bridge addresses must go before the gateway address is added: those in the same subnet
 * with another address. Without forceAddress that is a configuration conflict.
 */
export function conflictingBridgeAddresses(existing: readonly string[], wanted: string, forceAddress: boolean, bridge: string): string[] {
  const want = parseCidr(wanted);
  const net = networkCidr(want);
  const conflicts = existing.filter((e) => {
    const c = parseCidr(e);
    return c.family === want.family && networkCidr(c) === net && c.address !== want.address;
  });
  if (conflicts.length > 0 && !forceAddress) {
    throw new BerthError(
      'failed-precondition',
      `bridge ${bridge} already has address ${conflicts.join(', ')} in the subnet of gateway ${wanted}; set forceAddress to replace it`,
    );
  }
  return conflicts;
}

export interface AttachmentLinks {
  bridge: { name: string; mac: string };
  host: { name: string; mac: string };
  container: { name: string; mac: string; mtu?: number };
}

/** The ADD result: our three interfaces appended to any previous result, IPs on the container interface. */
export function buildResult(
  prev: CniResult | undefined,
  links: AttachmentLinks,
  plan: AttachmentPlan,
  ipam: IpamOutcome,
  netns: string,
  confDns: CniDns | undefined,
): CniResult {
  const interfaces: CniInterface[] = [...(prev?.interfaces ?? [])];
  const base = interfaces.length;
  interfaces.push(
    { name: links.bridge.name, mac: links.bridge.mac },
    { name: links.host.name, mac: links.host.mac },
    { name: links.container.name, mac: links.container.mac, sandbox: netns, ...(links.container.mtu ? { mtu: links.container.mtu } : {}) },
  );
  const ips: CniIpConfig[] = [
    ...(prev?.ips ?? []),
    ...plan.addresses.map((a) => ({ address: a.cidr, ...(a.gateway ? { gateway: a.gateway } : {}), interface: base + 2 })),
  ];
  const routes = [...(prev?.routes ?? []), ...plan.routes];
  const dns = confDns && Object.keys(confDns).length > 0 ? confDns : (ipam.dns ?? prev?.dns);
  return { cniVersion: '1.1.0', interfaces, ips, routes, ...(dns ? { dns } : {}) };
}
