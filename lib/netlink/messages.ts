import { BerthError } from '../errors.js';
import { networkCidr, parseCidr, type Family } from '../ip.js';
import type { AddressInfo, BridgePortInfo, BridgeVlan, LinkInfo, RouteInfo, RouteSpec, VethSpec, VxlanInfo } from './types.js';
import {
  NL, afToFamily, attrList, familyToAf, ifaddrmsg, ifinfomsg, ipBytes, ipFromBytes, macBytes, macFromBytes, nla, nlaNest,
  nlaString, nlaU16, nlaU32, nlaU8, parseAttrs, readString, rtmsg,
} from './codec.js';

// rtnetlink requests as plain data (type, flags, body) and replies decoded into berth's types.
// Pure: the session in lib/netlink/rtnl.ts sends what these build, and the unit tests read the bytes.
// Links, addresses and routes; VXLAN devices, neighbours and FDB entries are in overlay-messages.ts.

export interface Request {
  type: number;
  flags: number;
  body: Buffer[];
}

const IFNAMSIZ = 16;

export function checkIfname(name: string, what = 'interface name'): void {
  if (name.length === 0 || Buffer.byteLength(name) >= IFNAMSIZ || /[/:\s]/.test(name) || name === '.' || name === '..') {
    throw new BerthError('invalid-argument', `${what} ${JSON.stringify(name)} is not a valid Linux interface name (1-15 bytes, no '/', ':' or whitespace)`);
  }
}

const skipStats = () => nlaU32(NL.IFLA_EXT_MASK, NL.RTEXT_FILTER_SKIP_STATS);

// ---- links ------------------------------------------------------------------------------

export function getLinkByName(name: string): Request {
  checkIfname(name);
  return { type: NL.RTM_GETLINK, flags: 0, body: [ifinfomsg(), nlaString(NL.IFLA_IFNAME, name), skipStats()] };
}

export function getLinkByIndex(index: number): Request {
  return { type: NL.RTM_GETLINK, flags: 0, body: [ifinfomsg({ index }), skipStats()] };
}

export function dumpLinks(): Request {
  return { type: NL.RTM_GETLINK, flags: NL.F_DUMP, body: [ifinfomsg(), skipStats()] };
}

export function newBridge(name: string, o: { mtu?: number; vlanFiltering?: boolean; mac?: string }): Request {
  checkIfname(name, 'bridge name');
  // Off is the default for a new bridge, so only "on" is sent: a kernel built without VLAN
  // filtering refuses the attribute with EOPNOTSUPP even when it asks for off.
  const data = o.vlanFiltering ? [nlaNest(NL.IFLA_INFO_DATA, [nlaU8(NL.IFLA_BR_VLAN_FILTERING, 1)])] : [];
  return {
    type: NL.RTM_NEWLINK,
    flags: NL.F_CREATE | NL.F_EXCL,
    body: [
      ifinfomsg(),
      nlaString(NL.IFLA_IFNAME, name),
      ...(o.mtu ? [nlaU32(NL.IFLA_MTU, o.mtu)] : []),
      ...(o.mac ? [nla(NL.IFLA_ADDRESS, macBytes(o.mac))] : []),
      nlaNest(NL.IFLA_LINKINFO, [nlaString(NL.IFLA_INFO_KIND, 'bridge'), ...data]),
    ],
  };
}

/** A veth pair; `peerNetnsFd` (an open namespace file) places the peer there at creation. */
export function newVeth(spec: VethSpec, peerNetnsFd: number | undefined): Request {
  checkIfname(spec.name, 'veth name');
  checkIfname(spec.peerName, 'veth peer name');
  const own = (name: string, mac: string | undefined) => [
    nlaString(NL.IFLA_IFNAME, name),
    ...(spec.mtu ? [nlaU32(NL.IFLA_MTU, spec.mtu)] : []),
    ...(mac ? [nla(NL.IFLA_ADDRESS, macBytes(mac))] : []),
  ];
  // VETH_INFO_PEER carries a whole ifinfomsg plus the peer's own attributes.
  const peer = nla(NL.VETH_INFO_PEER, [
    ifinfomsg(),
    ...own(spec.peerName, spec.peerMac),
    ...(peerNetnsFd === undefined ? [] : [nlaU32(NL.IFLA_NET_NS_FD, peerNetnsFd)]),
  ]);
  return {
    type: NL.RTM_NEWLINK,
    flags: NL.F_CREATE | NL.F_EXCL,
    body: [
      ifinfomsg(),
      ...own(spec.name, spec.mac),
      nlaNest(NL.IFLA_LINKINFO, [nlaString(NL.IFLA_INFO_KIND, 'veth'), nlaNest(NL.IFLA_INFO_DATA, [peer])]),
    ],
  };
}

/** Change one device flag (IFF_UP, IFF_PROMISC) without touching the others. */
export function setFlag(index: number, flag: number, on: boolean): Request {
  return { type: NL.RTM_SETLINK, flags: 0, body: [ifinfomsg({ index, flags: on ? flag : 0, change: flag })] };
}

export function setLinkAttr(index: number, attr: Buffer): Request {
  return { type: NL.RTM_SETLINK, flags: 0, body: [ifinfomsg({ index }), attr] };
}

export function deleteLink(target: { name: string } | { index: number }): Request {
  if ('name' in target) {
    checkIfname(target.name);
    return { type: NL.RTM_DELLINK, flags: 0, body: [ifinfomsg(), nlaString(NL.IFLA_IFNAME, target.name)] };
  }
  return { type: NL.RTM_DELLINK, flags: 0, body: [ifinfomsg({ index: target.index })] };
}

/** Bridge port hairpin mode: an AF_BRIDGE setlink whose IFLA_PROTINFO must carry NLA_F_NESTED. */
export function setHairpin(portIndex: number, on: boolean): Request {
  return {
    type: NL.RTM_SETLINK,
    flags: 0,
    body: [ifinfomsg({ family: NL.AF_BRIDGE, index: portIndex }), nlaNest(NL.IFLA_PROTINFO, [nlaU8(NL.IFLA_BRPORT_MODE, on ? 1 : 0)], true)],
  };
}

/** Add (or with del, remove) one VLAN on a bridge port, or on the bridge itself with self. */
export function bridgeVlan(portIndex: number, vid: number, o: { pvid?: boolean; untagged?: boolean; self?: boolean }, del = false): Request {
  if (!Number.isInteger(vid) || vid < 1 || vid > 4094) throw new BerthError('invalid-argument', `VLAN id ${vid} is outside 1-4094`);
  const info = Buffer.alloc(4);
  info.writeUInt16LE((o.pvid ? NL.BRIDGE_VLAN_INFO_PVID : 0) | (o.untagged ? NL.BRIDGE_VLAN_INFO_UNTAGGED : 0), 0);
  info.writeUInt16LE(vid, 2);
  const spec = [...(o.self ? [nlaU16(NL.IFLA_BRIDGE_FLAGS, NL.BRIDGE_FLAGS_SELF)] : []), nla(NL.IFLA_BRIDGE_VLAN_INFO, info)];
  return {
    type: del ? NL.RTM_DELLINK : NL.RTM_SETLINK,
    flags: 0,
    body: [ifinfomsg({ family: NL.AF_BRIDGE, index: portIndex }), nlaNest(NL.IFLA_AF_SPEC, spec)],
  };
}

export function dumpBridgePorts(): Request {
  return { type: NL.RTM_GETLINK, flags: NL.F_DUMP, body: [ifinfomsg({ family: NL.AF_BRIDGE }), nlaU32(NL.IFLA_EXT_MASK, NL.RTEXT_FILTER_BRVLAN)] };
}

export function decodeLink(body: Buffer): LinkInfo {
  const a = parseAttrs(body, 16);
  const flags = body.readUInt32LE(8);
  const link: LinkInfo = {
    index: body.readInt32LE(4),
    name: readString(a.get(NL.IFLA_IFNAME) ?? Buffer.alloc(0)),
    mac: a.has(NL.IFLA_ADDRESS) ? macFromBytes(a.get(NL.IFLA_ADDRESS) as Buffer) : '',
    mtu: a.get(NL.IFLA_MTU)?.readUInt32LE(0) ?? 0,
    up: (flags & NL.IFF_UP) !== 0,
    promisc: (flags & NL.IFF_PROMISC) !== 0,
  };
  if (flags & NL.IFF_ALLMULTI) link.allmulti = true;
  const txQLen = a.get(NL.IFLA_TXQLEN)?.readUInt32LE(0);
  if (txQLen !== undefined) link.txQLen = txQLen;
  const alias = a.get(NL.IFLA_IFALIAS);
  if (alias && alias.length > 0) link.alias = readString(alias);
  const info = a.get(NL.IFLA_LINKINFO);
  const infoAttrs = info && parseAttrs(info);
  const kind = infoAttrs?.get(NL.IFLA_INFO_KIND);
  if (kind) link.kind = readString(kind);
  const data = infoAttrs?.get(NL.IFLA_INFO_DATA);
  if (link.kind === 'vxlan' && data) link.vxlan = decodeVxlanData(data);
  const master = a.get(NL.IFLA_MASTER)?.readUInt32LE(0);
  if (master) link.masterIndex = master;
  const peer = a.get(NL.IFLA_LINK)?.readUInt32LE(0);
  if (peer) link.linkIndex = peer;
  const nsid = a.get(NL.IFLA_LINK_NETNSID)?.readInt32LE(0);
  if (nsid !== undefined) link.linkNetnsId = nsid;
  return link;
}

/** The IFLA_INFO_DATA of a vxlan link; the kernel omits LOCAL and LINK when they are unset. */
export function decodeVxlanData(data: Buffer): VxlanInfo {
  const a = parseAttrs(data);
  const local = a.get(NL.IFLA_VXLAN_LOCAL) ?? a.get(NL.IFLA_VXLAN_LOCAL6);
  const underlay = a.get(NL.IFLA_VXLAN_LINK)?.readUInt32LE(0);
  return {
    vni: a.get(NL.IFLA_VXLAN_ID)?.readUInt32LE(0) ?? 0,
    port: a.get(NL.IFLA_VXLAN_PORT)?.readUInt16BE(0) ?? 0,
    ...(local ? { local: ipFromBytes(local) } : {}),
    ...(underlay ? { underlayIndex: underlay } : {}),
    learning: a.get(NL.IFLA_VXLAN_LEARNING)?.[0] === 1,
  };
}

export function decodeBridgePort(body: Buffer): BridgePortInfo {
  const a = parseAttrs(body, 16);
  const protinfo = a.get(NL.IFLA_PROTINFO);
  const vlans: BridgeVlan[] = [];
  for (const [type, data] of attrList(a.get(NL.IFLA_AF_SPEC) ?? Buffer.alloc(0))) {
    if (type !== NL.IFLA_BRIDGE_VLAN_INFO || data.length < 4) continue;
    const f = data.readUInt16LE(0);
    vlans.push({ vid: data.readUInt16LE(2), pvid: (f & NL.BRIDGE_VLAN_INFO_PVID) !== 0, untagged: (f & NL.BRIDGE_VLAN_INFO_UNTAGGED) !== 0 });
  }
  const mode = protinfo && parseAttrs(protinfo).get(NL.IFLA_BRPORT_MODE);
  return {
    index: body.readInt32LE(4),
    name: readString(a.get(NL.IFLA_IFNAME) ?? Buffer.alloc(0)),
    masterIndex: a.get(NL.IFLA_MASTER)?.readUInt32LE(0) ?? 0,
    hairpin: mode !== undefined && mode[0] === 1,
    vlans,
  };
}

// ---- addresses --------------------------------------------------------------------------

const isLoopback = (address: string, family: Family) => (family === 4 ? address.startsWith('127.') : address === '::1');

export function address(del: boolean, index: number, cidr: string, o: { noDad?: boolean; noPrefixRoute?: boolean; scope?: number } = {}): Request {
  const c = parseCidr(cidr, 'address');
  const flags = (o.noDad ? NL.IFA_F_NODAD : 0) | (o.noPrefixRoute ? NL.IFA_F_NOPREFIXROUTE : 0);
  // Loopback addresses get host scope, as iproute2 gives them.
  const scope = o.scope ?? (isLoopback(c.address, c.family) ? NL.RT_SCOPE_HOST : NL.RT_SCOPE_UNIVERSE);
  const bytes = ipBytes(c.address);
  const body = [ifaddrmsg({ family: familyToAf(c.family), prefixLength: c.prefixLength, flags, scope, index }), nla(NL.IFA_LOCAL, bytes), nla(NL.IFA_ADDRESS, bytes)];
  if (!del && c.family === 4 && c.prefixLength < 31) {
    // The subnet broadcast address, as the reference plugins (and `ip addr add ... brd +`) set it.
    const brd = Buffer.from(bytes);
    const host = 32 - c.prefixLength;
    brd.writeUInt32BE((brd.readUInt32BE(0) | (host === 32 ? 0xffffffff : (2 ** host - 1))) >>> 0, 0);
    body.push(nla(NL.IFA_BROADCAST, brd));
  }
  if (flags > 0xff) body.push(nlaU32(NL.IFA_FLAGS, flags));
  return { type: del ? NL.RTM_DELADDR : NL.RTM_NEWADDR, flags: del ? 0 : NL.F_CREATE | NL.F_EXCL, body };
}

export function dumpAddresses(family?: Family): Request {
  return { type: NL.RTM_GETADDR, flags: NL.F_DUMP, body: [ifaddrmsg({ family: family ? familyToAf(family) : NL.AF_UNSPEC })] };
}

export function decodeAddress(body: Buffer): AddressInfo | undefined {
  const family = afToFamily(body.readUInt8(0));
  if (!family) return undefined;
  const a = parseAttrs(body, 8);
  // IFA_LOCAL is the interface's own address; IPv6 only sends IFA_ADDRESS.
  const raw = a.get(NL.IFA_LOCAL) ?? a.get(NL.IFA_ADDRESS);
  if (!raw) return undefined;
  const prefixLength = body.readUInt8(1);
  const addr = ipFromBytes(raw);
  const label = a.get(NL.IFA_LABEL);
  return {
    index: body.readUInt32LE(4),
    family,
    address: addr,
    prefixLength,
    cidr: `${addr}/${prefixLength}`,
    scope: body.readUInt8(3),
    flags: a.get(NL.IFA_FLAGS)?.readUInt32LE(0) ?? body.readUInt8(2),
    ...(label ? { label: readString(label) } : {}),
  };
}

// ---- routes -----------------------------------------------------------------------------

const scopes: Record<string, number> = { universe: NL.RT_SCOPE_UNIVERSE, link: NL.RT_SCOPE_LINK, host: NL.RT_SCOPE_HOST };

export function route(del: boolean, spec: RouteSpec, replace = false): Request {
  const dst = parseCidr(spec.dst, 'route dst');
  const af = familyToAf(dst.family);
  const table = spec.table ?? NL.RT_TABLE_MAIN;
  const scope = del
    ? NL.RT_SCOPE_NOWHERE // matches a route of any scope
    : typeof spec.scope === 'string'
      ? scopes[spec.scope] ?? NL.RT_SCOPE_UNIVERSE
      : spec.scope ?? (spec.gw ? NL.RT_SCOPE_UNIVERSE : NL.RT_SCOPE_LINK);
  const header = rtmsg({
    family: af,
    dstLen: dst.prefixLength,
    table: table < 256 ? table : NL.RT_TABLE_COMPAT,
    protocol: del ? 0 : NL.RTPROT_BOOT,
    scope,
    type: del ? 0 : NL.RTN_UNICAST,
    flags: spec.onlink ? NL.RTNH_F_ONLINK : 0,
  });
  const body = [header];
  // The kernel rejects a destination with host bits set, so send the network address.
  if (dst.prefixLength > 0) body.push(nla(NL.RTA_DST, ipBytes(parseCidr(networkCidr(dst)).address)));
  if (spec.gw) {
    const gw = ipBytes(spec.gw);
    if (gw.length !== (dst.family === 4 ? 4 : 16)) throw new BerthError('invalid-argument', `route to ${spec.dst}: gateway ${spec.gw} is not an IPv${dst.family} address`);
    body.push(nla(NL.RTA_GATEWAY, gw));
  }
  if (spec.index) body.push(nlaU32(NL.RTA_OIF, spec.index));
  if (spec.src) body.push(nla(NL.RTA_PREFSRC, ipBytes(spec.src)));
  if (spec.priority !== undefined) body.push(nlaU32(NL.RTA_PRIORITY, spec.priority));
  body.push(nlaU32(NL.RTA_TABLE, table));
  const metrics = [...(spec.mtu ? [nlaU32(NL.RTAX_MTU, spec.mtu)] : []), ...(spec.advmss ? [nlaU32(NL.RTAX_ADVMSS, spec.advmss)] : [])];
  if (metrics.length > 0 && !del) body.push(nlaNest(NL.RTA_METRICS, metrics));
  const flags = del ? 0 : NL.F_CREATE | (replace ? NL.F_REPLACE : NL.F_EXCL);
  return { type: del ? NL.RTM_DELROUTE : NL.RTM_NEWROUTE, flags, body };
}

export function dumpRoutes(family: Family): Request {
  return { type: NL.RTM_GETROUTE, flags: NL.F_DUMP, body: [rtmsg({ family: familyToAf(family) })] };
}

export function decodeRoute(body: Buffer): RouteInfo | undefined {
  const family = afToFamily(body.readUInt8(0));
  if (!family) return undefined;
  const a = parseAttrs(body, 12);
  const dstLen = body.readUInt8(1);
  const dst = a.get(NL.RTA_DST);
  const r: RouteInfo = {
    family,
    dst: `${dst ? ipFromBytes(dst) : family === 4 ? '0.0.0.0' : '::'}/${dstLen}`,
    table: a.get(NL.RTA_TABLE)?.readUInt32LE(0) ?? body.readUInt8(4),
    protocol: body.readUInt8(5),
    scope: body.readUInt8(6),
    type: body.readUInt8(7),
    onlink: (body.readUInt32LE(8) & NL.RTNH_F_ONLINK) !== 0,
  };
  const gw = a.get(NL.RTA_GATEWAY);
  if (gw) r.gw = ipFromBytes(gw);
  const oif = a.get(NL.RTA_OIF);
  if (oif) r.index = oif.readUInt32LE(0);
  const prio = a.get(NL.RTA_PRIORITY);
  if (prio) r.priority = prio.readUInt32LE(0);
  const src = a.get(NL.RTA_PREFSRC);
  if (src) r.src = ipFromBytes(src);
  const metrics = a.get(NL.RTA_METRICS);
  if (metrics) {
    const m = parseAttrs(metrics);
    const mtu = m.get(NL.RTAX_MTU)?.readUInt32LE(0);
    if (mtu) r.mtu = mtu;
    const advmss = m.get(NL.RTAX_ADVMSS)?.readUInt32LE(0);
    if (advmss) r.advmss = advmss;
  }
  return r;
}
