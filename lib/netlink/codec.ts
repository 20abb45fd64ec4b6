import { BerthError } from '../errors.js';
import { bigIntToIp, ipFamily, ipToBigInt, type Family } from '../ip.js';

// The rtnetlink wire format (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h, if_bridge.h,
// neighbour.h): a fixed struct per message kind followed by type-length-value attributes,
// 4-byte aligned, host byte order (except fields the headers declare __be16, like the VXLAN
// port). Only what berth uses is here; the full generated codec of the `netlink` package adds
// 5-8 ms to the start of every CNI executable (measured); this one, next to none.

/** Message types, header flags and the attribute numbers berth uses (kernel uapi values). */
export const NL = {
  // nlmsghdr types
  ERROR: 2,
  DONE: 3,
  RTM_NEWLINK: 16,
  RTM_DELLINK: 17,
  RTM_GETLINK: 18,
  RTM_SETLINK: 19,
  RTM_NEWADDR: 20,
  RTM_DELADDR: 21,
  RTM_GETADDR: 22,
  RTM_NEWROUTE: 24,
  RTM_DELROUTE: 25,
  RTM_GETROUTE: 26,
  RTM_NEWNEIGH: 28,
  RTM_DELNEIGH: 29,
  RTM_GETNEIGH: 30,
  // nlmsghdr flags (REQUEST and ACK are added by the socket layer)
  F_DUMP: 0x300,
  F_REPLACE: 0x100,
  F_EXCL: 0x200,
  F_CREATE: 0x400,
  NLA_F_NESTED: 0x8000,
  NLA_TYPE_MASK: 0x3fff,
  // address families
  AF_UNSPEC: 0,
  AF_INET: 2,
  AF_BRIDGE: 7,
  AF_INET6: 10,
  // net_device flags
  IFF_UP: 0x1,
  IFF_PROMISC: 0x100,
  IFF_ALLMULTI: 0x200,
  // IFLA_*
  IFLA_ADDRESS: 1,
  IFLA_IFNAME: 3,
  IFLA_MTU: 4,
  IFLA_LINK: 5,
  IFLA_MASTER: 10,
  IFLA_PROTINFO: 12,
  IFLA_TXQLEN: 13,
  IFLA_OPERSTATE: 16,
  IFLA_LINKINFO: 18,
  IFLA_IFALIAS: 20,
  IFLA_AF_SPEC: 26,
  IFLA_NET_NS_FD: 28,
  IFLA_EXT_MASK: 29,
  IFLA_PROMISCUITY: 30,
  IFLA_LINK_NETNSID: 37,
  IFLA_INFO_KIND: 1,
  IFLA_INFO_DATA: 2,
  IFLA_BR_VLAN_FILTERING: 7,
  IFLA_BRPORT_MODE: 4,
  IFLA_BRIDGE_FLAGS: 0,
  IFLA_BRIDGE_VLAN_INFO: 2,
  VETH_INFO_PEER: 1,
  // IFLA_VXLAN_* (inside IFLA_INFO_DATA of kind "vxlan")
  IFLA_VXLAN_ID: 1,
  IFLA_VXLAN_LINK: 3,
  IFLA_VXLAN_LOCAL: 4,
  IFLA_VXLAN_LEARNING: 7,
  IFLA_VXLAN_PORT: 15,
  IFLA_VXLAN_LOCAL6: 17,
  BRIDGE_FLAGS_SELF: 2,
  BRIDGE_VLAN_INFO_PVID: 0x2,
  BRIDGE_VLAN_INFO_UNTAGGED: 0x4,
  RTEXT_FILTER_BRVLAN: 0x2,
  RTEXT_FILTER_SKIP_STATS: 0x8,
  // IFA_*
  IFA_ADDRESS: 1,
  IFA_LOCAL: 2,
  IFA_LABEL: 3,
  IFA_BROADCAST: 4,
  IFA_FLAGS: 8,
  IFA_F_NODAD: 0x2,
  IFA_F_NOPREFIXROUTE: 0x200,
  // RTA_*
  RTA_DST: 1,
  RTA_OIF: 4,
  RTA_GATEWAY: 5,
  RTA_PRIORITY: 6,
  RTA_PREFSRC: 7,
  RTA_METRICS: 8,
  RTA_TABLE: 15,
  RTAX_MTU: 2,
  RTAX_ADVMSS: 8,
  RTNH_F_ONLINK: 0x4,
  RT_TABLE_UNSPEC: 0,
  RT_TABLE_COMPAT: 252,
  RT_TABLE_MAIN: 254,
  RTN_UNICAST: 1,
  RTPROT_BOOT: 3,
  RT_SCOPE_UNIVERSE: 0,
  RT_SCOPE_LINK: 253,
  RT_SCOPE_HOST: 254,
  RT_SCOPE_NOWHERE: 255,
  // NDA_* (neighbour and FDB attributes)
  NDA_DST: 1,
  NDA_LLADDR: 2,
  NDA_PORT: 6,
  NDA_VNI: 7,
  NDA_IFINDEX: 8,
  NDA_MASTER: 9,
  // NUD_* neighbour states (ndm_state)
  NUD_INCOMPLETE: 0x01,
  NUD_REACHABLE: 0x02,
  NUD_STALE: 0x04,
  NUD_NOARP: 0x40,
  NUD_PERMANENT: 0x80,
  // NTF_* neighbour flags (ndm_flags)
  NTF_SELF: 0x02,
  NTF_MASTER: 0x04,
} as const;

// ---- attributes -------------------------------------------------------------------------

const align4 = (n: number): number => (n + 3) & ~3;

/** One attribute: 4-byte header (length, type), payload, zero padding to 4 bytes. */
export function nla(type: number, payload: Buffer | Buffer[]): Buffer {
  const body = Array.isArray(payload) ? Buffer.concat(payload) : payload;
  const out = Buffer.alloc(align4(4 + body.length));
  out.writeUInt16LE(4 + body.length, 0);
  out.writeUInt16LE(type, 2);
  body.copy(out, 4);
  return out;
}

/** A nested attribute. `flag` sets NLA_F_NESTED, which some parsers (bridge IFLA_PROTINFO) require. */
export function nlaNest(type: number, children: Buffer[], flag = false): Buffer {
  return nla(flag ? type | NL.NLA_F_NESTED : type, children);
}

export const nlaU8 = (type: number, v: number): Buffer => nla(type, Buffer.from([v & 0xff]));
export function nlaU16(type: number, v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v, 0);
  return nla(type, b);
}
export function nlaU32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return nla(type, b);
}
/** A NUL-terminated string attribute (IFLA_IFNAME, IFLA_INFO_KIND). */
export const nlaString = (type: number, s: string): Buffer => nla(type, Buffer.from(s + '\0', 'utf8'));

/** Attributes of a message body from `offset`, keyed by type without the NESTED/BYTEORDER bits (last wins). */
export function parseAttrs(buf: Buffer, offset = 0): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  for (const [type, data] of attrList(buf, offset)) attrs.set(type, data);
  return attrs;
}

/** Attributes in order, for lists that repeat a type (bridge VLAN entries). */
export function attrList(buf: Buffer, offset = 0): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  let at = offset;
  while (at + 4 <= buf.length) {
    const len = buf.readUInt16LE(at);
    if (len < 4 || at + len > buf.length) break;
    out.push([buf.readUInt16LE(at + 2) & NL.NLA_TYPE_MASK, buf.subarray(at + 4, at + len)]);
    at += align4(len);
  }
  return out;
}

export const readString = (b: Buffer): string => {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
};

// ---- fixed headers ----------------------------------------------------------------------

/** struct ifinfomsg: family, pad, type, index, flags, change mask. */
export function ifinfomsg(o: { family?: number; index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(o.family ?? NL.AF_UNSPEC, 0);
  b.writeInt32LE(o.index ?? 0, 4);
  b.writeUInt32LE((o.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((o.change ?? 0) >>> 0, 12);
  return b;
}

/** struct ifaddrmsg: family, prefixlen, flags (low 8 bits), scope, index. */
export function ifaddrmsg(o: { family: number; prefixLength?: number; flags?: number; scope?: number; index?: number }): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(o.family, 0);
  b.writeUInt8(o.prefixLength ?? 0, 1);
  b.writeUInt8((o.flags ?? 0) & 0xff, 2);
  b.writeUInt8(o.scope ?? 0, 3);
  b.writeUInt32LE(o.index ?? 0, 4);
  return b;
}

export interface RtmsgFields {
  family: number;
  dstLen?: number;
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  flags?: number;
}

/** struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags. */
export function rtmsg(o: RtmsgFields): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(o.family, 0);
  b.writeUInt8(o.dstLen ?? 0, 1);
  b.writeUInt8(o.table ?? 0, 4);
  b.writeUInt8(o.protocol ?? 0, 5);
  b.writeUInt8(o.scope ?? 0, 6);
  b.writeUInt8(o.type ?? 0, 7);
  b.writeUInt32LE((o.flags ?? 0) >>> 0, 8);
  return b;
}

/** struct ndmsg: family, 3 pad bytes, ifindex, state (NUD_*), flags (NTF_*), type. */
export function ndmsg(o: { family: number; index?: number; state?: number; flags?: number; type?: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(o.family, 0);
  b.writeInt32LE(o.index ?? 0, 4);
  b.writeUInt16LE(o.state ?? 0, 8);
  b.writeUInt8(o.flags ?? 0, 10);
  b.writeUInt8(o.type ?? 0, 11);
  return b;
}

// ---- addresses --------------------------------------------------------------------------

export const familyToAf = (f: Family): number => (f === 4 ? NL.AF_INET : NL.AF_INET6);
export const afToFamily = (af: number): Family | undefined => (af === NL.AF_INET ? 4 : af === NL.AF_INET6 ? 6 : undefined);

/** An IP address in network byte order (4 or 16 bytes). */
export function ipBytes(address: string): Buffer {
  const family = ipFamily(address);
  if (!family) throw new BerthError('invalid-argument', `${JSON.stringify(address)} is not an IP address`);
  const size = family === 4 ? 4 : 16;
  const b = Buffer.alloc(size);
  let v = ipToBigInt(address);
  for (let i = size - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

export function ipFromBytes(b: Buffer): string {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return bigIntToIp(v, b.length === 4 ? 4 : 6);
}

/** "aa:bb:cc:dd:ee:ff" -> 6 bytes; throws naming the value. */
export function macBytes(mac: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) {
    throw new BerthError('invalid-argument', `${JSON.stringify(mac)} is not a MAC address (xx:xx:xx:xx:xx:xx)`);
  }
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

export function macFromBytes(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

// ---- error replies ----------------------------------------------------------------------

/** The errno carried by an NLMSG_ERROR body (0 is an ACK), as a positive number. */
export function errorReplyErrno(body: Buffer): number {
  if (body.length < 4) throw new BerthError('internal', 'netlink: truncated error reply');
  return 0 - body.readInt32LE(0); // not -x: that makes an ACK -0
}
