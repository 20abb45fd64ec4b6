import { BerthError } from '../errors.js';
import { ipFamily, type Family } from '../ip.js';
import {
  NL, afToFamily, familyToAf, ifinfomsg, ipBytes, ipFromBytes, macBytes, macFromBytes, ndmsg, nla, nlaNest, nlaString, nlaU32, nlaU8,
  parseAttrs,
} from './codec.js';
import { checkIfname, type Request } from './messages.js';
import type { FdbEntry, NeighborInfo, VxlanSpec } from './types.js';

// The messages an overlay needs on top of links, addresses and routes (messages.ts): VXLAN
// devices, permanent neighbours, and the FDB entries that send a MAC to its remote VTEP. Pure,
// like messages.ts: requests as plain data, replies decoded into berth's types.

// ---- VXLAN devices ------------------------------------------------------------------------

/** A VXLAN device. Learning is sent even when off: the kernel's default is on. */
export function newVxlan(spec: VxlanSpec): Request {
  checkIfname(spec.name, 'vxlan name');
  if (!Number.isInteger(spec.vni) || spec.vni < 0 || spec.vni > 0xffffff) {
    throw new BerthError('invalid-argument', `vxlan ${spec.name}: vni ${spec.vni} is outside 0-16777215`);
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 0xffff) {
    throw new BerthError('invalid-argument', `vxlan ${spec.name}: port ${spec.port} is outside 1-65535`);
  }
  // if_link.h declares IFLA_VXLAN_PORT __be16: unlike every other integer here, big-endian.
  const port = Buffer.alloc(2);
  port.writeUInt16BE(spec.port, 0);
  const data = [nlaU32(NL.IFLA_VXLAN_ID, spec.vni), nla(NL.IFLA_VXLAN_PORT, port), nlaU8(NL.IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0)];
  if (spec.local !== undefined) {
    const local = ipBytes(spec.local);
    data.push(nla(local.length === 4 ? NL.IFLA_VXLAN_LOCAL : NL.IFLA_VXLAN_LOCAL6, local));
  }
  if (spec.underlayIndex) data.push(nlaU32(NL.IFLA_VXLAN_LINK, spec.underlayIndex));
  return {
    type: NL.RTM_NEWLINK,
    flags: NL.F_CREATE | NL.F_EXCL,
    body: [
      ifinfomsg(),
      nlaString(NL.IFLA_IFNAME, spec.name),
      ...(spec.mtu ? [nlaU32(NL.IFLA_MTU, spec.mtu)] : []),
      ...(spec.mac ? [nla(NL.IFLA_ADDRESS, macBytes(spec.mac))] : []),
      nlaNest(NL.IFLA_LINKINFO, [nlaString(NL.IFLA_INFO_KIND, 'vxlan'), nlaNest(NL.IFLA_INFO_DATA, data)]),
    ],
  };
}

// ---- neighbours (ARP / NDP) ---------------------------------------------------------------

function checkIp(ip: string, what: string): Family {
  const family = ipFamily(ip);
  if (!family) throw new BerthError('invalid-argument', `${what}: ${JSON.stringify(ip)} is not an IP address`);
  return family;
}

/** A permanent neighbour (created or replaced), or with del, its removal (the MAC is not needed). */
export function neighbor(del: boolean, n: { index: number; ip: string; mac?: string }): Request {
  const family = checkIp(n.ip, `neighbour on link #${n.index}`);
  const body = [ndmsg({ family: familyToAf(family), index: n.index, state: del ? 0 : NL.NUD_PERMANENT }), nla(NL.NDA_DST, ipBytes(n.ip))];
  if (!del) {
    if (n.mac === undefined) throw new BerthError('invalid-argument', `neighbour ${n.ip} on link #${n.index}: a MAC address is required`);
    body.push(nla(NL.NDA_LLADDR, macBytes(n.mac)));
  }
  return { type: del ? NL.RTM_DELNEIGH : NL.RTM_NEWNEIGH, flags: del ? 0 : NL.F_CREATE | NL.F_REPLACE, body };
}

export function dumpNeighbors(family?: Family): Request {
  return { type: NL.RTM_GETNEIGH, flags: NL.F_DUMP, body: [ndmsg({ family: family ? familyToAf(family) : NL.AF_UNSPEC })] };
}

/** An ARP/NDP entry; undefined for other families. Entries still resolving have no MAC (""). */
export function decodeNeighbor(body: Buffer): NeighborInfo | undefined {
  const family = afToFamily(body.readUInt8(0));
  if (!family) return undefined;
  const a = parseAttrs(body, 12);
  const dst = a.get(NL.NDA_DST);
  if (!dst) return undefined;
  const state = body.readUInt16LE(8);
  const mac = a.get(NL.NDA_LLADDR);
  return {
    index: body.readInt32LE(4),
    family,
    ip: ipFromBytes(dst),
    mac: mac && mac.length === 6 ? macFromBytes(mac) : '',
    state,
    permanent: (state & NL.NUD_PERMANENT) !== 0,
  };
}

// ---- bridge FDB (here: the forwarding table of a VXLAN device) ----------------------------

/**
 * A permanent FDB entry on the device itself (NTF_SELF: the VXLAN driver's table, not a bridge
 * master's). CREATE|REPLACE: a unicast MAC keeps one remote, the new dst replaces the old one.
 * With del, `dst` (when given) removes only that remote.
 */
export function fdb(del: boolean, e: { index: number; mac: string; dst?: string }): Request {
  const body = [
    ndmsg({ family: NL.AF_BRIDGE, index: e.index, state: del ? 0 : NL.NUD_PERMANENT, flags: NL.NTF_SELF }),
    nla(NL.NDA_LLADDR, macBytes(e.mac)),
  ];
  if (e.dst !== undefined) {
    checkIp(e.dst, `fdb entry ${e.mac} on link #${e.index}`);
    body.push(nla(NL.NDA_DST, ipBytes(e.dst)));
  } else if (!del) {
    throw new BerthError('invalid-argument', `fdb entry ${e.mac} on link #${e.index}: a dst address is required`);
  }
  return { type: del ? NL.RTM_DELNEIGH : NL.RTM_NEWNEIGH, flags: del ? 0 : NL.F_CREATE | NL.F_REPLACE, body };
}

/** Every device's FDB; the kernel filters by device only for sockets in strict-check mode. */
export function dumpFdb(): Request {
  return { type: NL.RTM_GETNEIGH, flags: NL.F_DUMP, body: [ndmsg({ family: NL.AF_BRIDGE })] };
}

export function decodeFdb(body: Buffer): FdbEntry | undefined {
  if (body.readUInt8(0) !== NL.AF_BRIDGE) return undefined;
  const a = parseAttrs(body, 12);
  const mac = a.get(NL.NDA_LLADDR);
  if (!mac || mac.length !== 6) return undefined;
  const state = body.readUInt16LE(8);
  const flags = body.readUInt8(10);
  const dst = a.get(NL.NDA_DST);
  const master = a.get(NL.NDA_MASTER)?.readUInt32LE(0);
  const vni = a.get(NL.NDA_VNI)?.readUInt32LE(0);
  return {
    index: body.readInt32LE(4),
    mac: macFromBytes(mac),
    ...(dst ? { dst: ipFromBytes(dst) } : {}),
    permanent: (state & NL.NUD_PERMANENT) !== 0,
    self: (flags & NL.NTF_SELF) !== 0,
    state,
    ...(master ? { masterIndex: master } : {}),
    ...(vni !== undefined ? { vni } : {}),
  };
}
