import type { Logger } from 'pino';
import { BerthError } from '../lib/errors.js';
import { cidrContains, networkCidr, parseCidr, type Family } from '../lib/ip.js';
import type { RouteSpec, RtnlSession } from '../lib/netlink/rtnl.js';
import type { Underlay } from './iface.js';
import { leaseKey, type Lease } from './types.js';

// The VXLAN data plane of one address family, flannel's vxlan backend: a device berth.<VNI>
// (berth-v6.<VNI> for IPv6) without learning, holding this node's VTEP address (its subnet's
// network address, /32 or /128); and for every other node
//   route    <its subnet> via <its VTEP address> dev berth.<VNI> onlink
//   neighbour <its VTEP address> -> <its VTEP MAC>, permanent
//   fdb      <its VTEP MAC> -> dst <its public IP>, permanent
// so the kernel never has to ask (no ARP, no learning on the wire). With DirectRouting a peer
// on our own underlay subnet gets a plain route via its public IP instead.
// Changes touch one peer's entries at a time; resync() compares the kernel with the whole
// lease set and repairs what differs (someone deleting a route by hand).

export interface PeerEntries {
  route: RouteSpec;
  /** Absent for a direct route. */
  neighbor?: { ip: string; mac: string };
  fdb?: { mac: string; dst: string };
}

export interface DataPlaneOptions {
  family: Family;
  vni: number;
  port: number;
  mtu: number;
  directRouting: boolean;
  underlay: Underlay;
  log: Logger;
}

/** The network address of a CIDR: the VTEP address of the node owning that subnet. */
export function vtepAddress(subnet: string): string {
  return networkCidr(parseCidr(subnet, 'subnet')).split('/')[0]!;
}

/**
 * Bytes VXLAN adds per packet, by the underlay family it is carried over: outer IPv4 (20) or
 * IPv6 (40) header, UDP (8), VXLAN (8), inner Ethernet (14). Each family's device tunnels over
 * the underlay of its own family (berth-v6 uses the node's IPv6 address as its source).
 */
export const vxlanOverhead: Record<Family, number> = { 4: 50, 6: 70 };

/**
 * The overlay MTU for both devices and subnet.env: the configured one, else the underlay MTU
 * less the largest overhead among the enabled families. One value serves both, because a pod
 * has one interface (one MTU) for IPv4 and IPv6; and the kernel refuses a VXLAN-over-IPv6 MTU
 * above underlay - 70, so dual-stack cannot use the IPv4 figure (underlay - 50).
 */
export function overlayMtu(underlayMtu: number, families: readonly Family[], configured?: number): number {
  if (configured !== undefined) return configured;
  return underlayMtu - Math.max(...families.map((f) => vxlanOverhead[f]));
}

export function deviceName(family: Family, vni: number): string {
  return family === 4 ? `berth.${vni}` : `berth-v6.${vni}`;
}

export class VxlanDataPlane {
  readonly name: string;
  private index = 0;
  mac = '';
  /** What is programmed per peer (by lease key), to remove exactly that on change or expiry. */
  private readonly peers = new Map<string, PeerEntries>();

  constructor(
    private readonly nl: RtnlSession,
    private readonly o: DataPlaneOptions,
  ) {
    this.name = deviceName(o.family, o.vni);
  }

  private get local(): string {
    const a = this.o.family === 4 ? this.o.underlay.address : this.o.underlay.publicIPv6;
    if (!a) throw new BerthError('failed-precondition', `underlay ${this.o.underlay.name} has no IPv${this.o.family} address for the IPv${this.o.family} overlay`);
    return a;
  }

  /** Create (or adopt) the VXLAN device, up, with the overlay MTU; returns its MAC (the VTEP MAC). */
  async ensureDevice(): Promise<string> {
    const spec = { name: this.name, vni: this.o.vni, port: this.o.port, local: this.local, underlayIndex: this.o.underlay.index, learning: false, mtu: this.o.mtu };
    let link;
    try {
      link = await this.nl.createVxlan(spec);
    } catch (err) {
      if (!(err instanceof BerthError) || err.kind !== 'already-exists') throw err;
      // A device of ours from another configuration (VNI, port, underlay): rebuild it.
      this.o.log.warn({ device: this.name, err: err.message }, 'VXLAN device exists with other settings; recreating it');
      await this.nl.deleteLink(this.name);
      link = await this.nl.createVxlan(spec);
    }
    if (link.mtu !== this.o.mtu) await this.nl.setMtu(link.index, this.o.mtu);
    if (!link.up) await this.nl.setUp(link.index);
    this.index = link.index;
    this.mac = link.mac;
    return link.mac;
  }

  /** Give the device this node's VTEP address (and only that one). */
  async setLocalSubnet(subnet: string): Promise<void> {
    const bits = this.o.family === 4 ? 32 : 128;
    const want = `${vtepAddress(subnet)}/${bits}`;
    for (const a of await this.nl.listAddresses(this.index, this.o.family)) {
      if (a.cidr !== want && a.scope === 0) await this.nl.delAddress(this.index, a.cidr);
    }
    await this.nl.addAddress(this.index, want, { noDad: this.o.family === 6 });
  }

  /** The entries a peer's lease asks for, or undefined when the lease has nothing for this family. */
  entriesFor(lease: Lease): PeerEntries | undefined {
    const v4 = this.o.family === 4;
    const subnet = v4 ? lease.subnet : lease.ipv6Subnet;
    const publicIP = v4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
    const data = v4 ? lease.attrs.backendData : (lease.attrs.backendV6Data ?? lease.attrs.backendData);
    if (!subnet || !publicIP || !data) return undefined;
    if (this.o.directRouting && cidrContains(parseCidr(this.o.underlay.cidr), publicIP) && v4) {
      return { route: { dst: subnet, gw: publicIP, index: this.o.underlay.index } };
    }
    const vtep = vtepAddress(subnet);
    return {
      route: { dst: subnet, gw: vtep, index: this.index, onlink: true },
      neighbor: { ip: vtep, mac: data.vtepMAC },
      fdb: { mac: data.vtepMAC, dst: publicIP },
    };
  }

  /** Program (or update) one peer's entries; removes what its previous lease had that differs. */
  async applyPeer(lease: Lease): Promise<void> {
    const key = leaseKey(lease);
    const want = this.entriesFor(lease);
    if (!want) return this.removePeer(key);
    const had = this.peers.get(key);
    if (had && same(had, want)) return;
    if (had) await this.removeStale(had, want);
    // Tunnel first, then the neighbour, then the route: once the route exists, packets can go.
    if (want.fdb) await this.nl.setFdb({ index: this.index, ...want.fdb });
    if (want.neighbor) await this.nl.setNeighbor({ index: this.index, ...want.neighbor });
    await this.nl.addRoute(want.route, { replace: true });
    this.peers.set(key, want);
  }

  /** Remove one peer's entries (route first, so nothing is sent into a half-removed tunnel). */
  async removePeer(key: string): Promise<void> {
    const had = this.peers.get(key);
    if (!had) return;
    await this.nl.delRoute(had.route);
    if (had.neighbor) await this.nl.delNeighbor({ index: this.index, ip: had.neighbor.ip });
    if (had.fdb) await this.nl.delFdb({ index: this.index, mac: had.fdb.mac });
    this.peers.delete(key);
  }

  private async removeStale(had: PeerEntries, want: PeerEntries): Promise<void> {
    if (had.route.index !== want.route.index || had.route.dst !== want.route.dst) await this.nl.delRoute(had.route);
    if (had.neighbor && had.neighbor.ip !== want.neighbor?.ip) await this.nl.delNeighbor({ index: this.index, ip: had.neighbor.ip });
    if (had.fdb && had.fdb.mac !== want.fdb?.mac) await this.nl.delFdb({ index: this.index, mac: had.fdb.mac });
  }

  /**
   * Make the kernel match `peers` (every lease but ours): add what is missing or wrong, delete
   * what no lease asks for. Returns the number of repairs (0 when nothing had drifted).
   */
  async resync(peers: Lease[], network: string): Promise<number> {
    const want = new Map<string, PeerEntries>();
    for (const l of peers) {
      const e = this.entriesFor(l);
      if (e) want.set(leaseKey(l), e);
    }
    const cluster = parseCidr(network, 'network');
    const routes = (await this.nl.listRoutes({ family: this.o.family })).filter(
      (r) => r.protocol !== 2 && (r.index === this.index || (r.index === this.o.underlay.index && r.gw !== undefined && r.dst !== '0.0.0.0/0' && r.dst !== '::/0' && cidrContains(cluster, r.dst.split('/')[0]!))),
    );
    const neighbors = (await this.nl.listNeighbors({ index: this.index, family: this.o.family })).filter((n) => n.permanent);
    const fdb = (await this.nl.listFdb(this.index)).filter((f) => f.dst !== undefined);
    let repairs = 0;
    const wantedRoutes = new Set<string>();
    const wantedNeigh = new Set<string>();
    const wantedFdb = new Set<string>();
    for (const e of want.values()) {
      wantedRoutes.add(e.route.dst);
      const r = routes.find((x) => x.dst === e.route.dst);
      if (e.fdb) {
        wantedFdb.add(e.fdb.mac);
        const f = fdb.find((x) => x.mac === e.fdb!.mac);
        if (!f || f.dst !== e.fdb.dst) {
          await this.nl.setFdb({ index: this.index, ...e.fdb });
          repairs++;
        }
      }
      if (e.neighbor) {
        wantedNeigh.add(e.neighbor.ip);
        const n = neighbors.find((x) => x.ip === e.neighbor!.ip);
        if (!n || n.mac !== e.neighbor.mac) {
          await this.nl.setNeighbor({ index: this.index, ...e.neighbor });
          repairs++;
        }
      }
      if (!r || r.gw !== e.route.gw || r.index !== e.route.index || (e.route.onlink && !r.onlink)) {
        await this.nl.addRoute(e.route, { replace: true });
        repairs++;
      }
    }
    for (const r of routes) {
      if (wantedRoutes.has(r.dst)) continue;
      await this.nl.delRoute({ dst: r.dst, gw: r.gw, index: r.index });
      repairs++;
    }
    for (const n of neighbors) {
      if (wantedNeigh.has(n.ip)) continue;
      await this.nl.delNeighbor({ index: this.index, ip: n.ip });
      repairs++;
    }
    for (const f of fdb) {
      if (wantedFdb.has(f.mac)) continue;
      await this.nl.delFdb({ index: this.index, mac: f.mac, dst: f.dst });
      repairs++;
    }
    this.peers.clear();
    for (const [k, e] of want) this.peers.set(k, e);
    return repairs;
  }

  /** Delete the device (the kernel drops its routes, neighbours and FDB with it). */
  async destroy(): Promise<void> {
    await this.nl.deleteLink(this.name);
    this.peers.clear();
  }

  get family(): Family {
    return this.o.family;
  }

  /** How many peers are programmed. */
  get peerCount(): number {
    return this.peers.size;
  }
}

function same(a: PeerEntries, b: PeerEntries): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
