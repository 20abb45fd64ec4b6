import type { Logger } from 'pino';
import { formatIp, hostMask, parseIp, subnetContains, subnetOf, tryParseCidr, type Family, type Subnet } from '../lib/ip.js';
import { leaseKey, type Lease, type NetworkConfig } from './types.js';

// Which peer leases berth-overlayd programs. A lease is whatever another node (or anyone who can
// write to the store) published, and it becomes a route, a neighbour and an FDB entry on this
// node: a subnet outside the cluster Network, of the wrong length, or over this node's own or
// another node's subnet would steal traffic; a PublicIP of 0.0.0.0, loopback, multicast or
// broadcast would send it nowhere or everywhere. checkPeerLease says what is wrong (pure);
// PeerLeaseFilter remembers what it already reported, so a bad lease is logged and counted once
// per revision, however often it is listed again.

/** The `reason` label of berth_overlay_leases_rejected_total, one per kind of fault. */
export const leaseRejectReasons = [
  'backend',
  'subnet-outside-network',
  'subnet-length',
  'subnet-host-bits',
  'subnet-overlap',
  'public-ip',
  'vtep-mac',
] as const;

export type LeaseRejectReason = (typeof leaseRejectReasons)[number];

export interface LeaseRejection {
  reason: LeaseRejectReason;
  /** For the log: which field, which value, why. */
  detail: string;
}

export interface PeerLeaseContext {
  network: NetworkConfig;
  /** This node's own subnets. */
  own?: Pick<Lease, 'subnet' | 'ipv6Subnet'>;
  /** The other nodes' leases already accepted (a lease is never compared with itself). */
  peers: Pick<PeerLeases, 'holder'>;
  /** The underlay's IPv4 CIDR: its broadcast address is no tunnel endpoint either. */
  underlayCidr?: string;
}

interface FamilyFields {
  family: Family;
  name: string;
  network: string;
  length: number;
  subnetField: 'subnet' | 'ipv6Subnet';
  publicField: 'PublicIP' | 'PublicIPv6';
  publicIP: string | undefined;
  dataField: 'BackendData' | 'BackendV6Data';
  data: { vtepMAC: string; vni: number } | undefined;
}

/** The fields of each enabled family a lease has a subnet for: what the data plane would use. */
function familiesOf(lease: Lease, c: NetworkConfig): FamilyFields[] {
  const out: FamilyFields[] = [];
  if (c.enableIPv4 && lease.subnet !== undefined) {
    out.push({ family: 4, name: 'Network', network: c.network!, length: c.subnetLen, subnetField: 'subnet', publicField: 'PublicIP', publicIP: lease.attrs.publicIP, dataField: 'BackendData', data: lease.attrs.backendData });
  }
  if (c.enableIPv6 && lease.ipv6Subnet !== undefined) {
    const data = lease.attrs.backendV6Data ?? lease.attrs.backendData;
    out.push({ family: 6, name: 'IPv6Network', network: c.ipv6Network!, length: c.ipv6SubnetLen, subnetField: 'ipv6Subnet', publicField: 'PublicIPv6', publicIP: lease.attrs.publicIPv6, dataField: lease.attrs.backendV6Data ? 'BackendV6Data' : 'BackendData', data });
  }
  return out;
}

function parseSubnet(text: string | undefined, family: Family): Subnet | undefined {
  const p = text === undefined ? undefined : tryParseCidr(text);
  return p && p.address.family === family ? subnetOf(p) : undefined;
}

function overlaps(a: Subnet, b: Subnet): boolean {
  const short = a.prefixLength <= b.prefixLength ? a : b;
  const long = short === a ? b : a;
  return a.family === b.family && subnetContains(short, { family: long.family, value: long.network });
}

function inRange(value: bigint, cidr: string): boolean {
  const s = parseSubnet(cidr, cidr.includes(':') ? 6 : 4);
  return s !== undefined && subnetContains(s, { family: s.family, value });
}

/** Why `ip` cannot be a VXLAN tunnel endpoint of `family`, or undefined when it can. */
export function notUnicast(ip: string, family: Family, underlayCidr?: string): string | undefined {
  const a = parseIp(ip);
  if (!a) return 'is not an IP address';
  if (a.family !== family) return `is not an IPv${family} address`;
  const v = a.value;
  if (family === 4) {
    if (v === 0xffffffffn) return 'is the broadcast address';
    if (inRange(v, '0.0.0.0/8')) return 'is unspecified ("this network", 0.0.0.0/8)';
    if (inRange(v, '127.0.0.0/8')) return 'is a loopback address';
    if (inRange(v, '224.0.0.0/4')) return 'is a multicast address';
    if (inRange(v, '240.0.0.0/4')) return 'is a reserved address (240.0.0.0/4)';
    const u = underlayCidr === undefined ? undefined : tryParseCidr(underlayCidr);
    if (u && u.address.family === 4 && u.prefixLength < 31) {
      const net = subnetOf(u);
      if (v === (net.network | hostMask(net.prefixLength, 4))) return `is the broadcast address of the underlay ${underlayCidr}`;
    }
    return undefined;
  }
  if (v === 0n) return 'is unspecified (::)';
  if (v === 1n) return 'is the loopback address';
  if (inRange(v, 'ff00::/8')) return 'is a multicast address';
  // A link-local remote needs an interface to go with it, which an FDB entry cannot name.
  if (inRange(v, 'fe80::/10')) return 'is a link-local address';
  if (inRange(v, '::ffff:0:0/96')) return 'is an IPv4-mapped address';
  return undefined;
}

const macPattern = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Why a lease must not be programmed on this node, or undefined when it may. */
export function checkPeerLease(lease: Lease, ctx: PeerLeaseContext): LeaseRejection | undefined {
  const c = ctx.network;
  const vni = c.backend.vni;
  const reject = (reason: LeaseRejectReason, detail: string): LeaseRejection => ({ reason, detail });
  if (lease.attrs.backendType !== 'vxlan') return reject('backend', `BackendType ${JSON.stringify(lease.attrs.backendType)} is not "vxlan"`);
  if (lease.attrs.backendData?.vni !== vni) return reject('backend', `BackendData.VNI ${lease.attrs.backendData?.vni} is not the network's ${vni}`);
  const key = leaseKey(lease);
  for (const f of familiesOf(lease, c)) {
    if (f.data?.vni !== vni) return reject('backend', `${f.dataField}.VNI ${f.data?.vni} is not the network's ${vni}`);
    const text = lease[f.subnetField]!;
    const subnet = parseSubnet(text, f.family);
    const network = parseSubnet(f.network, f.family)!;
    if (!subnet || subnet.prefixLength < network.prefixLength || !subnetContains(network, { family: f.family, value: subnet.network })) {
      return reject('subnet-outside-network', `subnet ${text} is not inside ${f.name} ${f.network}`);
    }
    if (subnet.prefixLength !== f.length) return reject('subnet-length', `subnet ${text} is not a /${f.length} (${f.family === 4 ? 'SubnetLen' : 'IPv6SubnetLen'})`);
    if (tryParseCidr(text)!.address.value !== subnet.network) return reject('subnet-host-bits', `subnet ${text} is not a network address (${formatIp(subnet.network, f.family)}/${f.length})`);
    const mine = parseSubnet(ctx.own?.[f.subnetField], f.family);
    if (mine && overlaps(subnet, mine)) return reject('subnet-overlap', `subnet ${text} overlaps this node's ${ctx.own![f.subnetField]}`);
    // Accepted leases passed these same checks: a /length network address each, so one of them
    // overlaps this subnet only by being the very same subnet.
    const holder = ctx.peers.holder(text);
    if (holder !== undefined && holder !== key) return reject('subnet-overlap', `subnet ${text} overlaps the lease ${holder}`);
    if (f.publicIP !== undefined) {
      const why = notUnicast(f.publicIP, f.family, f.family === 4 ? ctx.underlayCidr : undefined);
      if (why) return reject('public-ip', `${f.publicField} ${JSON.stringify(f.publicIP)} ${why}`);
    }
    const mac = f.data.vtepMAC;
    if (!macPattern.test(mac) || (parseInt(mac.slice(0, 2), 16) & 1) === 1 || /^(00:){5}00$/.test(mac)) {
      return reject('vtep-mac', `${f.dataField}.VtepMAC ${JSON.stringify(mac)} is not a unicast MAC address`);
    }
  }
  return undefined;
}

/**
 * The leases in use, by key, indexed by the subnets they hold: the overlap check is a lookup, so
 * listing N leases costs N checks, not N squared (a cluster of thousands of nodes relists on every
 * broken watch).
 */
export class PeerLeases extends Map<string, Lease> {
  private readonly bySubnet = new Map<string, string>();

  override set(key: string, lease: Lease): this {
    this.unindex(key);
    super.set(key, lease);
    for (const s of [lease.subnet, lease.ipv6Subnet]) if (s !== undefined) this.bySubnet.set(s, key);
    return this;
  }

  override delete(key: string): boolean {
    this.unindex(key);
    return super.delete(key);
  }

  override clear(): void {
    this.bySubnet.clear();
    super.clear();
  }

  /** The key of the lease in use that holds `subnet` (a network CIDR), if any. */
  holder(subnet: string): string | undefined {
    return this.bySubnet.get(subnet);
  }

  private unindex(key: string): void {
    const had = this.get(key);
    for (const s of [had?.subnet, had?.ipv6Subnet]) if (s !== undefined && this.bySubnet.get(s) === key) this.bySubnet.delete(s);
  }
}

/** What a lease says, for "have we reported this revision already" (the expiry is not part of it). */
function revisionOf(l: Lease): string {
  return JSON.stringify([l.subnet, l.ipv6Subnet, l.attrs]);
}

/**
 * checkPeerLease with a memory: each rejected lease revision is logged and counted once, and the
 * rejected leases are kept (one per key still in the store) so that a lease refused for
 * overlapping another can be taken once that other goes.
 */
export class PeerLeaseFilter {
  private readonly rejected = new Map<string, { lease: Lease; revision: string }>();

  constructor(
    private readonly log: Logger,
    private readonly onReject: (reason: LeaseRejectReason) => void,
  ) {}

  /** Whether to program `lease`; a refusal is logged and counted when this revision is new. */
  admit(lease: Lease, ctx: PeerLeaseContext): boolean {
    const key = leaseKey(lease);
    const rejection = checkPeerLease(lease, ctx);
    if (!rejection) {
      this.rejected.delete(key);
      return true;
    }
    const revision = revisionOf(lease);
    if (this.rejected.get(key)?.revision !== revision) {
      this.onReject(rejection.reason);
      this.log.warn({ lease: key, reason: rejection.reason, detail: rejection.detail }, 'ignoring an invalid peer lease: nothing is programmed for it');
    }
    this.rejected.set(key, { lease, revision });
    return false;
  }

  /** The lease left the store. */
  forget(key: string): void {
    this.rejected.delete(key);
  }

  /** After a full list: forget the leases no longer in the store. */
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.rejected.keys()) if (!keys.has(key)) this.rejected.delete(key);
  }

  /** The rejected leases still in the store, to try again when the accepted set shrinks. */
  get pending(): Lease[] {
    return [...this.rejected.values()].map((r) => r.lease);
  }
}
