import { BerthError } from '../errors.js';
import { canonicalIp, type Family } from '../ip.js';
import { NL, errorReplyErrno, nla, macBytes, nlaString, nlaU32 } from './codec.js';
import * as msg from './messages.js';
import * as overlayMsg from './overlay-messages.js';
import * as tcMsg from './tc-messages.js';
import { NETLINK_ROUTE, NetlinkError, REQUEST_TIMEOUT_MS, errnoName, kindOf, loadNetlink, type NetlinkSocket } from './socket.js';
import type { AddressInfo, BridgeOptions, BridgePortInfo, FdbEntry, LinkInfo, NeighborInfo, RouteInfo, RouteSpec, VethSpec, VxlanInfo, VxlanSpec } from './types.js';
import { closeNetnsFd, openNetnsFd, withNetns } from '../netns.js';

// rtnetlink for berth: links, veth pairs, bridges, VXLAN devices, addresses, routes, bridge
// VLANs, neighbours and FDB entries, in any network namespace. A netlink socket belongs to the
// namespace it was created in, so a session opens its socket inside withNetns() and can then be
// used from anywhere, asynchronously.
// The socket layer is the `netlink` package's (its native binding); messages are ours
// (lib/netlink/messages.ts and overlay-messages.ts), since its generated rtnetlink codec adds
// 5-8 ms to every start.

// ---- the API ------------------------------------------------------------------------------

/** Thrown for kernel errors; `code` is the errno name ("EEXIST"), `kind` its BerthError kind. */
export { NetlinkError };

export type { LinkInfo, VxlanSpec, VxlanInfo, NeighborInfo, FdbEntry, AddressInfo, RouteSpec, RouteInfo, VethSpec, BridgeOptions, BridgeVlan, BridgePortInfo } from './types.js';

/** The class of traffic berth-bandwidth leaves unshaped: 100 Gbit/s, with a 1 MiB bucket. */
const unshapedRate = { rate: 12_500_000_000, burst: 1 << 20 };

export class RtnlSession {
  private constructor(
    private readonly socket: NetlinkSocket,
    /** The namespace the socket was opened in; undefined = the process's own. */
    readonly netnsPath: string | undefined,
  ) {}

  /** Open a route netlink socket in `netnsPath` (default: the current namespace). */
  static async open(netnsPath?: string): Promise<RtnlSession> {
    const nl = await loadNetlink();
    const create = () => nl.createNetlink(NETLINK_ROUTE);
    const socket = netnsPath ? withNetns(netnsPath, create) : create();
    return new RtnlSession(socket, netnsPath);
  }

  close(): void {
    this.socket.close();
  }

  private where(): string {
    return this.netnsPath ? ` in ${this.netnsPath}` : '';
  }

  /**
   * Send one request and return the replies' bodies. A kernel error becomes a NetlinkError whose
   * message starts with `what` (each `#N` in it replaced by that link's name), unless its errno
   * name is listed in `tolerate`: then the result is empty and says which one it was.
   */
  private async send(req: msg.Request, what: string, tolerate: readonly string[] = []): Promise<Buffer[] & { tolerated?: string }> {
    let replies;
    try {
      [replies] = await this.socket.request(req.type, req.body, { flags: req.flags, checkError: false, timeout: REQUEST_TIMEOUT_MS });
    } catch (err) {
      throw new BerthError('io', `${what}${this.where()}: ${(err as Error).message}`, { cause: err });
    }
    const out: Buffer[] = [];
    for (const r of replies) {
      if (r.type === NL.DONE) continue;
      if (r.type === NL.ERROR) {
        const errno = errorReplyErrno(r.data);
        if (errno === 0) continue;
        const [code, text] = errnoName(errno);
        if (tolerate.includes(code)) return Object.assign([], { tolerated: code });
        const named = await this.nameLinks(what);
        throw new NetlinkError(kindOf(code), `${named}${this.where()}: ${text} (${code})`, code, errno);
      }
      out.push(r.data);
    }
    return out;
  }

  /** "set link #4 up" -> "set link eth0 (#4) up", best effort. */
  private async nameLinks(what: string): Promise<string> {
    let out = what;
    for (const m of what.matchAll(/#(\d+)/g)) {
      const index = Number(m[1]);
      const [body] = await this.send(msg.getLinkByIndex(index), 'name', ['ENODEV']).catch(() => []);
      if (body) out = out.replace(m[0], `${msg.decodeLink(body).name} (#${index})`);
    }
    return out;
  }

  // ---- links --------------------------------------------------------------------------------

  async getLink(name: string): Promise<LinkInfo | undefined> {
    const [body] = await this.send(msg.getLinkByName(name), `get link ${name}`, ['ENODEV']);
    return body ? msg.decodeLink(body) : undefined;
  }

  async getLinkByIndex(index: number): Promise<LinkInfo | undefined> {
    const [body] = await this.send(msg.getLinkByIndex(index), `get link #${index}`, ['ENODEV']);
    return body ? msg.decodeLink(body) : undefined;
  }

  async listLinks(): Promise<LinkInfo[]> {
    return (await this.send(msg.dumpLinks(), 'list links')).map(msg.decodeLink);
  }

  /** The peer ifindex of a veth (in the peer's namespace), e.g. to find a container's host veth. */
  async peerIndexOf(name: string): Promise<number | undefined> {
    return (await this.getLink(name))?.linkIndex;
  }

  /**
   * Create a bridge. An existing bridge of that name is returned as it is (options unchanged);
   * any other kind of link of that name is an already-exists error.
   */
  async createBridge(name: string, options: BridgeOptions = {}): Promise<LinkInfo> {
    const exists = (await this.send(msg.newBridge(name, options), `create bridge ${name}`, ['EEXIST'])).tolerated;
    const link = await this.requireLink(name, `create bridge ${name}`);
    if (exists && link.kind !== 'bridge') {
      throw new BerthError('already-exists', `create bridge ${name}${this.where()}: a ${link.kind ?? 'non-bridge'} link of that name exists`);
    }
    return link;
  }

  /**
   * Create a VXLAN device. A vxlan of that name with the same vni, port, local, underlay and
   * learning is returned as it is (mtu and mac unchanged); any other link of that name is an
   * already-exists error naming what differs.
   */
  async createVxlan(spec: VxlanSpec): Promise<LinkInfo> {
    const what = `create vxlan ${spec.name} (vni ${spec.vni}, port ${spec.port})`;
    const exists = (await this.send(overlayMsg.newVxlan(spec), what, ['EEXIST'])).tolerated;
    const link = await this.getLink(spec.name);
    if (exists && !link) {
      // EEXIST without a link of that name: another vxlan already uses this vni and port.
      const other = (await this.listLinks()).find((l) => l.vxlan?.vni === spec.vni && l.vxlan.port === spec.port);
      throw new BerthError('already-exists', `${what}${this.where()}: vxlan ${other?.name ?? '(unknown)'} already uses vni ${spec.vni} on port ${spec.port}`);
    }
    if (!link) throw new BerthError('internal', `${what}${this.where()}: link vanished right after creation`);
    if (!exists) return link;
    if (link.kind !== 'vxlan' || !link.vxlan) {
      throw new BerthError('already-exists', `${what}${this.where()}: a ${link.kind ?? 'non-vxlan'} link of that name exists`);
    }
    const differences = vxlanDifferences(spec, link.vxlan);
    if (differences.length > 0) {
      throw new BerthError('already-exists', `${what}${this.where()}: a vxlan of that name exists with ${differences.join(', ')}`);
    }
    return link;
  }

  /** Create a veth pair; returns the end named `spec.name` (in this session's namespace). */
  async createVethPair(spec: VethSpec): Promise<LinkInfo> {
    const what = `create veth ${spec.name} (peer ${spec.peerName}${spec.peerNetnsPath ? ` in ${spec.peerNetnsPath}` : ''})`;
    const fd = spec.peerNetnsPath ? openNetnsFd(spec.peerNetnsPath) : undefined;
    try {
      await this.send(msg.newVeth(spec, fd), what);
    } finally {
      if (fd !== undefined) closeNetnsFd(fd);
    }
    return this.requireLink(spec.name, what);
  }

  private async requireLink(name: string, what: string): Promise<LinkInfo> {
    const link = await this.getLink(name);
    if (!link) throw new BerthError('internal', `${what}${this.where()}: link vanished right after creation`);
    return link;
  }

  async setUp(index: number, up = true): Promise<void> {
    await this.send(msg.setFlag(index, NL.IFF_UP, up), `set link #${index} ${up ? 'up' : 'down'}`);
  }

  async setDown(index: number): Promise<void> {
    await this.setUp(index, false);
  }

  async setPromisc(index: number, on: boolean): Promise<void> {
    await this.send(msg.setFlag(index, NL.IFF_PROMISC, on), `set promisc ${on ? 'on' : 'off'} on link #${index}`);
  }

  /** Enslave to a bridge; masterIndex 0 releases the link from its master. */
  async setMaster(index: number, masterIndex: number): Promise<void> {
    await this.send(msg.setLinkAttr(index, nlaU32(NL.IFLA_MASTER, masterIndex)), `set master of link #${index} to #${masterIndex}`);
  }

  async setMtu(index: number, mtu: number): Promise<void> {
    await this.send(msg.setLinkAttr(index, nlaU32(NL.IFLA_MTU, mtu)), `set mtu ${mtu} on link #${index}`);
  }

  async setMac(index: number, mac: string): Promise<void> {
    await this.send(msg.setLinkAttr(index, nla(NL.IFLA_ADDRESS, macBytes(mac))), `set mac ${mac} on link #${index}`);
  }

  /** Rename a link. Kernels before 6.2 only allow it while the link is down (EBUSY). */
  async renameLink(index: number, newName: string): Promise<void> {
    msg.checkIfname(newName, 'new interface name');
    await this.send(msg.setLinkAttr(index, nlaString(NL.IFLA_IFNAME, newName)), `rename link #${index} to ${newName}`);
  }

  /** Delete a link by name; a missing link is not an error (returns false). */
  async deleteLink(name: string): Promise<boolean> {
    return (await this.send(msg.deleteLink({ name }), `delete link ${name}`, ['ENODEV'])).tolerated === undefined;
  }

  async deleteLinkByIndex(index: number): Promise<boolean> {
    return (await this.send(msg.deleteLink({ index }), `delete link #${index}`, ['ENODEV'])).tolerated === undefined;
  }

  async setAllmulti(index: number, on: boolean): Promise<void> {
    await this.send(msg.setFlag(index, NL.IFF_ALLMULTI, on), `set allmulticast ${on ? 'on' : 'off'} on link #${index}`);
  }

  async setTxQLen(index: number, qlen: number): Promise<void> {
    await this.send(msg.setLinkAttr(index, nlaU32(NL.IFLA_TXQLEN, qlen)), `set txqueuelen ${qlen} on link #${index}`);
  }

  // ---- traffic control ----------------------------------------------------------------------

  /** Create an ifb device (down); an existing link of that name is an already-exists error. */
  async createIfb(o: { name: string; mtu?: number; txQLen?: number; alias?: string }): Promise<LinkInfo> {
    const what = `create ifb ${o.name}`;
    await this.send(tcMsg.newIfb(o), what);
    const link = await this.requireLink(o.name, what);
    // The kernel applies IFLA_IFALIAS on a change only, not when it creates the link.
    if (o.alias) {
      await this.send(msg.setLinkAttr(link.index, nla(NL.IFLA_IFALIAS, Buffer.from(o.alias, 'utf8'))), `set alias of link #${link.index}`);
      link.alias = o.alias;
    }
    return link;
  }

  /** Make a TBF the root qdisc of a link, replacing the one there. */
  async replaceRootTbf(index: number, spec: tcMsg.TbfSpec): Promise<void> {
    await this.send(tcMsg.newTbfQdisc(index, spec), `add tbf qdisc (rate ${spec.rate} B/s, burst ${spec.burst} B) on link #${index}`);
  }

  /**
   * Shape only some of a link's traffic: an HTB root whose class 1:1 holds the limit and 1:2
   * (everything else) a rate no link reaches, what no filter picks going to `defaultClass`, and a
   * filter per subnet (matched on `field`) sending its packets to the other class.
   */
  async replaceRootHtbShaping(index: number, spec: tcMsg.TbfSpec, defaultClass: 1 | 2, subnets: readonly tcMsg.SubnetMatch[], field: 'src' | 'dst'): Promise<void> {
    await this.send(tcMsg.newHtbQdisc(index, defaultClass), `add htb qdisc on link #${index}`);
    await this.send(tcMsg.newHtbClass(index, 1, spec), `add htb class 1:1 (rate ${spec.rate} B/s, burst ${spec.burst} B) on link #${index}`);
    await this.send(tcMsg.newHtbClass(index, 2, unshapedRate), `add htb class 1:2 (unshaped) on link #${index}`);
    const other = defaultClass === 1 ? 2 : 1;
    for (const s of subnets) {
      await this.send(tcMsg.newSubnetFilter(index, s, field, other, s.family === 4 ? 1 : 2), `add u32 filter for ${field} ${s.text} on link #${index}`);
    }
  }

  /** The traffic-control classes of one link. */
  async listClasses(index: number): Promise<tcMsg.TcObject[]> {
    return (await this.send(tcMsg.dumpClasses(index), `list classes of link #${index}`, ['EINVAL', 'ENOENT'])).map(tcMsg.decodeTcObject);
  }

  /** Add the ingress qdisc of a link; false if it already has one. */
  async addIngressQdisc(index: number): Promise<boolean> {
    return (await this.send(tcMsg.newIngressQdisc(index), `add ingress qdisc on link #${index}`, ['EEXIST'])).tolerated === undefined;
  }

  /** Remove a qdisc; false if there was none there. */
  async deleteQdisc(index: number, parent: number): Promise<boolean> {
    const r = await this.send(tcMsg.deleteQdisc(index, parent), `delete qdisc ${parent.toString(16)} of link #${index}`, ['ENOENT', 'EINVAL', 'ENODEV']);
    return r.tolerated === undefined;
  }

  /** Redirect everything a link receives (under its ingress qdisc) to the egress of another. */
  async addRedirectAllFilter(index: number, toIndex: number): Promise<void> {
    await this.send(tcMsg.newRedirectAllFilter(index, tcMsg.TC.INGRESS_HANDLE, toIndex), `add u32 redirect filter on link #${index} to #${toIndex}`);
  }

  /** The qdiscs of one link (every link's when index is undefined). */
  async listQdiscs(index?: number): Promise<tcMsg.TcObject[]> {
    const all = (await this.send(tcMsg.dumpQdiscs(), 'list qdiscs')).map(tcMsg.decodeTcObject);
    return index === undefined ? all : all.filter((q) => q.index === index);
  }

  /** The filters under one parent of one link. */
  async listFilters(index: number, parent: number): Promise<tcMsg.TcObject[]> {
    return (await this.send(tcMsg.dumpFilters(index, parent), `list filters of link #${index}`, ['EINVAL', 'ENOENT'])).map(tcMsg.decodeTcObject);
  }

  // ---- bridge ports ------------------------------------------------------------------------

  async setHairpin(portIndex: number, on: boolean): Promise<void> {
    await this.send(msg.setHairpin(portIndex, on), `set hairpin ${on ? 'on' : 'off'} on bridge port #${portIndex}`);
  }

  /** Add a VLAN to a bridge port (or with self, to the bridge device itself). */
  async addBridgeVlan(portIndex: number, vid: number, o: { pvid?: boolean; untagged?: boolean; self?: boolean } = {}): Promise<void> {
    await this.send(msg.bridgeVlan(portIndex, vid, o), `add vlan ${vid} to bridge port #${portIndex}`);
  }

  async delBridgeVlan(portIndex: number, vid: number, o: { self?: boolean } = {}): Promise<boolean> {
    return (await this.send(msg.bridgeVlan(portIndex, vid, o, true), `delete vlan ${vid} from bridge port #${portIndex}`, ['ENOENT'])).tolerated === undefined;
  }

  /** Bridge port state (hairpin, VLANs) of one port, or undefined if it is no bridge port. */
  async getBridgePort(index: number): Promise<BridgePortInfo | undefined> {
    const bodies = await this.send(msg.dumpBridgePorts(), 'list bridge ports');
    // The dump also lists each bridge as its own master; that is no port.
    return bodies.map(msg.decodeBridgePort).find((p) => p.index === index && p.masterIndex !== index);
  }

  // ---- addresses ----------------------------------------------------------------------------

  /** Add an address (CIDR); the same address already present is fine. */
  async addAddress(index: number, cidr: string, o: { noDad?: boolean; noPrefixRoute?: boolean; scope?: number } = {}): Promise<void> {
    await this.send(msg.address(false, index, cidr, o), `add address ${cidr} to link #${index}`, ['EEXIST']);
  }

  /** Delete an address; false if it was not there. */
  async delAddress(index: number, cidr: string): Promise<boolean> {
    return (await this.send(msg.address(true, index, cidr), `delete address ${cidr} from link #${index}`, ['EADDRNOTAVAIL'])).tolerated === undefined;
  }

  async listAddresses(index?: number, family?: Family): Promise<AddressInfo[]> {
    const bodies = await this.send(msg.dumpAddresses(family), 'list addresses');
    const all = bodies.map(msg.decodeAddress).filter((a): a is AddressInfo => a !== undefined);
    return all.filter((a) => (index === undefined || a.index === index) && (family === undefined || a.family === family));
  }

  // ---- neighbours ---------------------------------------------------------------------------

  /** A permanent neighbour entry ip -> mac; an entry for that ip is replaced. */
  async setNeighbor(n: { index: number; ip: string; mac: string }): Promise<void> {
    await this.send(overlayMsg.neighbor(false, n), `set neighbour ${n.ip} lladdr ${n.mac} on link #${n.index}`);
  }

  /** Delete a neighbour entry; false if there was none. */
  async delNeighbor(n: { index: number; ip: string }): Promise<boolean> {
    return (await this.send(overlayMsg.neighbor(true, n), `delete neighbour ${n.ip} on link #${n.index}`, ['ENOENT'])).tolerated === undefined;
  }

  async listNeighbors(o: { index?: number; family?: Family } = {}): Promise<NeighborInfo[]> {
    const bodies = await this.send(overlayMsg.dumpNeighbors(o.family), 'list neighbours');
    return bodies
      .map(overlayMsg.decodeNeighbor)
      .filter((n): n is NeighborInfo => n !== undefined && (o.index === undefined || n.index === o.index) && (o.family === undefined || n.family === o.family));
  }

  // ---- FDB ----------------------------------------------------------------------------------

  /** A permanent FDB entry mac -> dst on a VXLAN device; a MAC keeps one dst (replaced). */
  async setFdb(e: { index: number; mac: string; dst: string }): Promise<void> {
    await this.send(overlayMsg.fdb(false, e), `set fdb ${e.mac} dst ${e.dst} on link #${e.index}`);
  }

  /** Delete an FDB entry (only its `dst` remote when given); false if there was none. */
  async delFdb(e: { index: number; mac: string; dst?: string }): Promise<boolean> {
    const what = `delete fdb ${e.mac}${e.dst ? ` dst ${e.dst}` : ''} on link #${e.index}`;
    // The VXLAN driver answers a delete whose dst matches no remote of the MAC with success and
    // deletes nothing; so look first, or a stale dst would read as deleted.
    if (e.dst !== undefined) {
      const mac = e.mac.toLowerCase();
      const dst = canonicalIp(e.dst) ?? e.dst;
      if (!(await this.listFdb(e.index)).some((x) => x.mac === mac && x.dst === dst)) {
        // Still fail for a missing link, as the kernel does when there is no dst.
        if (!(await this.getLinkByIndex(e.index))) throw new BerthError('not-found', `${what}${this.where()}: no such link`);
        return false;
      }
    }
    return (await this.send(overlayMsg.fdb(true, e), what, ['ENOENT'])).tolerated === undefined;
  }

  /** The FDB entries of one device (not those of its bridge ports, nor of its bridge). */
  async listFdb(index: number): Promise<FdbEntry[]> {
    const bodies = await this.send(overlayMsg.dumpFdb(), `list fdb of link #${index}`);
    return bodies.map(overlayMsg.decodeFdb).filter((e): e is FdbEntry => e !== undefined && e.index === index);
  }

  // ---- routes -------------------------------------------------------------------------------

  /** Add a route; an identical route already present is fine. `replace` overwrites a different one. */
  async addRoute(spec: RouteSpec, o: { replace?: boolean } = {}): Promise<void> {
    const what = `add route ${spec.dst}${spec.gw ? ` via ${spec.gw}` : ''}${spec.index ? ` dev #${spec.index}` : ''}`;
    await this.send(msg.route(false, spec, o.replace), what, ['EEXIST']);
  }

  /** Delete a route; false if no such route. */
  async delRoute(spec: RouteSpec): Promise<boolean> {
    const what = `delete route ${spec.dst}${spec.gw ? ` via ${spec.gw}` : ''}`;
    return (await this.send(msg.route(true, spec), what, ['ESRCH'])).tolerated === undefined;
  }

  /** Routes of one family in one table (default main; 0 = every table), optionally one interface. */
  async listRoutes(o: { family: Family; table?: number; index?: number }): Promise<RouteInfo[]> {
    const table = o.table ?? NL.RT_TABLE_MAIN;
    const bodies = await this.send(msg.dumpRoutes(o.family), `list IPv${o.family} routes`);
    return bodies
      .map(msg.decodeRoute)
      .filter((r): r is RouteInfo => r !== undefined && (table === 0 || r.table === table) && (o.index === undefined || r.index === o.index));
  }
}

/** "vni 8 (want 7)" for each setting of an existing vxlan that differs from the spec. */
function vxlanDifferences(spec: VxlanSpec, have: VxlanInfo): string[] {
  const want = {
    vni: spec.vni,
    port: spec.port,
    local: spec.local === undefined ? undefined : canonicalIp(spec.local) ?? spec.local,
    underlay: spec.underlayIndex || undefined,
    learning: spec.learning ?? false,
  };
  const got = { vni: have.vni, port: have.port, local: have.local, underlay: have.underlayIndex, learning: have.learning };
  const show = (v: unknown) => (v === undefined ? 'none' : v === true ? 'on' : v === false ? 'off' : String(v));
  return (Object.keys(want) as (keyof typeof want)[])
    .filter((k) => want[k] !== got[k])
    .map((k) => `${k} ${show(got[k])} (want ${show(want[k])})`);
}

/** Open a session, run `fn`, always close it. */
export async function withRtnl<T>(netnsPath: string | undefined, fn: (s: RtnlSession) => Promise<T>): Promise<T> {
  const session = await RtnlSession.open(netnsPath);
  try {
    return await fn(session);
  } finally {
    session.close();
  }
}
