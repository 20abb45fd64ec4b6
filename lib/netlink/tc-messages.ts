import { BerthError } from '../errors.js';
import { NL, ifinfomsg, nla, nlaNest, nlaString, nlaU32, parseAttrs, readString } from './codec.js';
import { checkIfname, type Request } from './messages.js';

// Traffic control over rtnetlink (linux/rtnetlink.h, pkt_sched.h, pkt_cls.h, tc_act/tc_mirred.h):
// qdiscs and filters as plain requests, the way `tc` builds them, and ifb devices. Pure, like
// messages.ts: lib/netlink/rtnl.ts sends these and the unit tests read the bytes.

export const TC = {
  RTM_NEWQDISC: 36,
  RTM_DELQDISC: 37,
  RTM_GETQDISC: 38,
  RTM_NEWTCLASS: 40,
  RTM_GETTCLASS: 42,
  RTM_NEWTFILTER: 44,
  RTM_DELTFILTER: 45,
  RTM_GETTFILTER: 46,
  TCA_KIND: 1,
  TCA_OPTIONS: 2,
  // parents and handles (major:minor packed in 32 bits)
  TC_H_ROOT: 0xffffffff,
  TC_H_INGRESS: 0xfffffff1,
  /** The ingress qdisc's own handle, ffff:0, which is also its filters' parent. */
  INGRESS_HANDLE: 0xffff0000,
  // TCA_TBF_*
  TCA_TBF_PARMS: 1,
  TCA_TBF_RATE64: 4,
  TCA_TBF_BURST: 6,
  TC_LINKLAYER_ETHERNET: 1,
  // TCA_U32_*
  TCA_U32_CLASSID: 1,
  TCA_U32_SEL: 5,
  TCA_U32_ACT: 7,
  TC_U32_TERMINAL: 1,
  // actions
  TCA_ACT_KIND: 1,
  TCA_ACT_OPTIONS: 2,
  TCA_MIRRED_PARMS: 2,
  TC_ACT_STOLEN: 4,
  TCA_EGRESS_REDIR: 1,
  ETH_P_ALL: 0x0003,
  ETH_P_IP: 0x0800,
  ETH_P_IPV6: 0x86dd,
  /** The HTB qdisc of a link shaped by subnets: 1:0, with the classes 1:1 (shaped) and 1:2 (not). */
  HTB_HANDLE: 0x00010000,
  // TCA_HTB_*
  TCA_HTB_PARMS: 1,
  TCA_HTB_INIT: 2,
  TCA_HTB_RATE64: 6,
  TCA_HTB_CEIL64: 7,
} as const;

/** A qdisc or filter as the kernel reports it. */
export interface TcObject {
  index: number;
  handle: number;
  parent: number;
  /** Filters: priority << 16 | protocol (network byte order). */
  info: number;
  kind: string;
  /** TCA_OPTIONS, undecoded. */
  options?: Buffer;
}

/** Token bucket settings of a TBF qdisc, in bytes. */
export interface TbfSpec {
  /** Bytes per second. */
  rate: number;
  /** The bucket: bytes that may pass at once. */
  burst: number;
  /** Bytes that may wait in the queue for tokens. */
  limit: number;
}

/** struct tcmsg: family, 3 pad bytes, ifindex, handle, parent, info. */
export function tcmsg(o: { index: number; handle?: number; parent?: number; info?: number }): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt8(NL.AF_UNSPEC, 0);
  b.writeInt32LE(o.index, 4);
  b.writeUInt32LE((o.handle ?? 0) >>> 0, 8);
  b.writeUInt32LE((o.parent ?? 0) >>> 0, 12);
  b.writeUInt32LE((o.info ?? 0) >>> 0, 16);
  return b;
}

// The kernel's scheduler clock counts in units of 64 ns (PSCHED_SHIFT 6): TBF's buffer is a time,
// how long the bucket takes to fill at the rate.
const PSCHED_NS_PER_TICK = 64;

/** The TBF's buffer in scheduler ticks: the time `burst` bytes take at `rate` bytes per second. */
export function tbfBufferTicks(rate: number, burst: number): number {
  const ns = (burst * 1e9) / rate;
  return Math.min(0xffffffff, Math.floor(ns / PSCHED_NS_PER_TICK));
}

/** struct tc_ratespec: cell_log, linklayer, overhead, cell_align, mpu, rate (u32 bytes/s). */
function ratespec(rate: number): Buffer {
  const b = Buffer.alloc(12);
  // An Ethernet link layer tells the kernel there is no rate table to read (it computes times itself).
  b.writeUInt8(TC.TC_LINKLAYER_ETHERNET, 1);
  b.writeUInt32LE(Math.min(rate, 0xffffffff), 8);
  return b;
}

function tbfOptions(spec: TbfSpec): Buffer {
  if (!(spec.rate > 0) || !(spec.burst > 0) || !(spec.limit > 0)) {
    throw new BerthError('invalid-argument', `tbf: rate, burst and limit must be positive, got ${JSON.stringify(spec)}`);
  }
  // struct tc_tbf_qopt: rate, peakrate (unused: zero), limit, buffer, mtu.
  const qopt = Buffer.alloc(36);
  ratespec(spec.rate).copy(qopt, 0);
  qopt.writeUInt32LE(Math.min(spec.limit, 0xffffffff), 24);
  qopt.writeUInt32LE(tbfBufferTicks(spec.rate, spec.burst), 28);
  const attrs = [nla(TC.TCA_TBF_PARMS, qopt)];
  if (spec.rate > 0xffffffff) {
    const r = Buffer.alloc(8);
    r.writeBigUInt64LE(BigInt(Math.floor(spec.rate)), 0);
    attrs.push(nla(TC.TCA_TBF_RATE64, r));
  }
  // The bucket in bytes, so the kernel need not derive it back from the buffer time.
  attrs.push(nlaU32(TC.TCA_TBF_BURST, Math.min(spec.burst, 0xffffffff)));
  return nlaNest(TC.TCA_OPTIONS, attrs);
}

/**
 * A TBF as the root qdisc of a link (`replace` swaps out whatever root qdisc is there), or under
 * another qdisc's class when `at` says where.
 */
export function newTbfQdisc(index: number, spec: TbfSpec, replace = true, at: { parent: number; handle: number } = { parent: TC.TC_H_ROOT, handle: 0x00010000 }): Request {
  return {
    type: TC.RTM_NEWQDISC,
    flags: NL.F_CREATE | (replace ? NL.F_REPLACE : NL.F_EXCL),
    body: [tcmsg({ index, parent: at.parent, handle: at.handle }), nlaString(TC.TCA_KIND, 'tbf'), tbfOptions(spec)],
  };
}

/**
 * An HTB qdisc as the root of a link (1:0), sending what no filter classifies to class
 * 1:`defaultClass`: how berth-bandwidth shapes only some subnets' traffic. HTB rather than prio
 * (which would need only a TBF under one band): kernels built without sch_prio (this one) have
 * it, and it is what the reference plugin builds. TCA_HTB_INIT is struct tc_htb_glob: version 3,
 * rate2quantum 10 (tc's defaults), the default class, debug, direct_pkts.
 */
export function newHtbQdisc(index: number, defaultClass: number): Request {
  const glob = Buffer.alloc(20);
  glob.writeUInt32LE(3, 0);
  glob.writeUInt32LE(10, 4);
  glob.writeUInt32LE(defaultClass, 8);
  return {
    type: TC.RTM_NEWQDISC,
    flags: NL.F_CREATE | NL.F_REPLACE,
    body: [tcmsg({ index, parent: TC.TC_H_ROOT, handle: TC.HTB_HANDLE }), nlaString(TC.TCA_KIND, 'htb'), nlaNest(TC.TCA_OPTIONS, [nla(TC.TCA_HTB_INIT, glob)])],
  };
}

/**
 * An HTB class 1:`minor` under the root with rate = ceil = `spec.rate` and a bucket of
 * `spec.burst` bytes (given as the time it takes at the rate, as TBF's). struct tc_htb_opt: rate
 * and ceil ratespecs, buffer, cbuffer, quantum (0: from rate2quantum), level, prio. An Ethernet
 * link layer in the ratespecs spares the rate tables; rates past 32 bits go in RATE64/CEIL64.
 */
export function newHtbClass(index: number, minor: number, spec: { rate: number; burst: number }): Request {
  const opt = Buffer.alloc(44);
  ratespec(spec.rate).copy(opt, 0);
  ratespec(spec.rate).copy(opt, 12);
  const ticks = tbfBufferTicks(spec.rate, spec.burst);
  opt.writeUInt32LE(ticks, 24);
  opt.writeUInt32LE(ticks, 28);
  const attrs = [nla(TC.TCA_HTB_PARMS, opt)];
  if (spec.rate > 0xffffffff) {
    const r = Buffer.alloc(8);
    r.writeBigUInt64LE(BigInt(Math.floor(spec.rate)), 0);
    attrs.push(nla(TC.TCA_HTB_RATE64, r), nla(TC.TCA_HTB_CEIL64, r));
  }
  return {
    type: TC.RTM_NEWTCLASS,
    flags: NL.F_CREATE | NL.F_REPLACE,
    body: [tcmsg({ index, parent: TC.HTB_HANDLE, handle: (TC.HTB_HANDLE | minor) >>> 0 }), nlaString(TC.TCA_KIND, 'htb'), nlaNest(TC.TCA_OPTIONS, attrs)],
  };
}

/** The classes of one link. */
export function dumpClasses(index: number): Request {
  return { type: TC.RTM_GETTCLASS, flags: NL.F_DUMP, body: [tcmsg({ index })] };
}

/** An HTB class's rate (bytes per second) from its TCA_OPTIONS. */
export function decodeHtbRate(options: Buffer | undefined): number | undefined {
  const parms = options && parseAttrs(options).get(TC.TCA_HTB_PARMS);
  if (!parms || parms.length < 12) return undefined;
  const rate64 = parseAttrs(options).get(TC.TCA_HTB_RATE64);
  return rate64 ? Number(rate64.readBigUInt64LE(0)) : parms.readUInt32LE(8);
}

/** A subnet as a u32 filter matches it: the family, and the address and mask as 32-bit words. */
export interface SubnetMatch {
  family: 4 | 6;
  /** The address's bytes (4 or 16), network order. */
  address: Buffer;
  prefixLength: number;
  /** As the configuration wrote it, for messages. */
  text: string;
}

/**
 * A u32 filter under the HTB qdisc (parent 1:0) that sends packets whose source or destination
 * address is in `subnet` to class 1:`minor`. The keys compare the IP header's address words:
 * IPv4's source at byte 12 and destination at 16, IPv6's at 8 and 24; a word the prefix does
 * not reach is not compared. IPv4 and IPv6 filters need priorities of their own (one u32
 * classifier per priority and protocol).
 */
export function newSubnetFilter(index: number, subnet: SubnetMatch, field: 'src' | 'dst', minor: number, priority: number): Request {
  const start = subnet.family === 4 ? (field === 'src' ? 12 : 16) : field === 'src' ? 8 : 24;
  const keys: Buffer[] = [];
  for (let word = 0; word * 32 < subnet.prefixLength; word++) {
    const bits = Math.min(32, subnet.prefixLength - word * 32);
    const mask = bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    const key = Buffer.alloc(16);
    key.writeUInt32BE(mask, 0);
    key.writeUInt32BE((subnet.address.readUInt32BE(word * 4) & mask) >>> 0, 4);
    key.writeInt32LE(start + word * 4, 8);
    keys.push(key);
  }
  // A /0 matches everything: one key with mask 0, as the match-all filter has.
  if (keys.length === 0) keys.push(Buffer.alloc(16));
  const sel = Buffer.alloc(16);
  sel.writeUInt8(TC.TC_U32_TERMINAL, 0);
  sel.writeUInt8(keys.length, 2);
  const ethType = subnet.family === 4 ? TC.ETH_P_IP : TC.ETH_P_IPV6;
  const protocol = ((ethType & 0xff) << 8) | (ethType >> 8); // htons
  return {
    type: TC.RTM_NEWTFILTER,
    flags: NL.F_CREATE | NL.F_EXCL,
    body: [
      tcmsg({ index, parent: TC.HTB_HANDLE, info: ((priority << 16) | protocol) >>> 0 }),
      nlaString(TC.TCA_KIND, 'u32'),
      nlaNest(TC.TCA_OPTIONS, [nlaU32(TC.TCA_U32_CLASSID, (TC.HTB_HANDLE | minor) >>> 0), nla(TC.TCA_U32_SEL, Buffer.concat([sel, ...keys]))]),
    ],
  };
}

/** The class a u32 filter sends its packets to, if it names one. */
export function decodeFilterClass(options: Buffer | undefined): number | undefined {
  const classid = options && parseAttrs(options).get(TC.TCA_U32_CLASSID);
  return classid && classid.length >= 4 ? classid.readUInt32LE(0) : undefined;
}

/** The ingress qdisc (handle ffff:), where filters see the packets a link receives. */
export function newIngressQdisc(index: number): Request {
  return {
    type: TC.RTM_NEWQDISC,
    flags: NL.F_CREATE | NL.F_EXCL,
    body: [tcmsg({ index, parent: TC.TC_H_INGRESS, handle: TC.INGRESS_HANDLE }), nlaString(TC.TCA_KIND, 'ingress')],
  };
}

export function deleteQdisc(index: number, parent: number, handle = 0): Request {
  return { type: TC.RTM_DELQDISC, flags: 0, body: [tcmsg({ index, parent, handle })] };
}

export function dumpQdiscs(): Request {
  return { type: TC.RTM_GETQDISC, flags: NL.F_DUMP, body: [tcmsg({ index: 0 })] };
}

/** The filters under one parent of one link. */
export function dumpFilters(index: number, parent: number): Request {
  return { type: TC.RTM_GETTFILTER, flags: NL.F_DUMP, body: [tcmsg({ index, parent })] };
}

/** struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex. */
function mirredRedirect(toIndex: number): Buffer {
  const parms = Buffer.alloc(28);
  parms.writeInt32LE(TC.TC_ACT_STOLEN, 8);
  parms.writeInt32LE(TC.TCA_EGRESS_REDIR, 20);
  parms.writeUInt32LE(toIndex, 24);
  // The action list is a nest of numbered entries (their order), each a kind and its options.
  return nlaNest(TC.TCA_U32_ACT, [
    nlaNest(1, [nlaString(TC.TCA_ACT_KIND, 'mirred'), nlaNest(TC.TCA_ACT_OPTIONS, [nla(TC.TCA_MIRRED_PARMS, parms)])]),
  ]);
}

/**
 * A u32 filter that matches every packet (one key: mask 0, value 0) and redirects it to the
 * egress of `toIndex`; `u32 match u32 0 0 action mirred egress redirect` in tc's words. u32
 * rather than matchall: kernels built without CONFIG_NET_CLS_MATCHALL (this one) still have it.
 */
export function newRedirectAllFilter(index: number, parent: number, toIndex: number, priority = 1): Request {
  // struct tc_u32_sel (16 bytes) + one struct tc_u32_key (mask, val, off, offmask).
  const sel = Buffer.alloc(16 + 16);
  sel.writeUInt8(TC.TC_U32_TERMINAL, 0);
  sel.writeUInt8(1, 2); // nkeys
  const protocol = ((TC.ETH_P_ALL & 0xff) << 8) | (TC.ETH_P_ALL >> 8); // htons
  return {
    type: TC.RTM_NEWTFILTER,
    flags: NL.F_CREATE | NL.F_EXCL,
    body: [
      tcmsg({ index, parent, info: ((priority << 16) | protocol) >>> 0 }),
      nlaString(TC.TCA_KIND, 'u32'),
      nlaNest(TC.TCA_OPTIONS, [nla(TC.TCA_U32_SEL, sel), mirredRedirect(toIndex)]),
    ],
  };
}

export function decodeTcObject(body: Buffer): TcObject {
  const a = parseAttrs(body, 20);
  const options = a.get(TC.TCA_OPTIONS);
  return {
    index: body.readInt32LE(4),
    handle: body.readUInt32LE(8),
    parent: body.readUInt32LE(12),
    info: body.readUInt32LE(16),
    kind: readString(a.get(TC.TCA_KIND) ?? Buffer.alloc(0)),
    ...(options ? { options } : {}),
  };
}

/** A TBF's rate and bucket from its TCA_OPTIONS (bytes per second, bytes). */
export function decodeTbf(options: Buffer | undefined): { rate: number; burst?: number; limit: number } | undefined {
  const parms = options && parseAttrs(options).get(TC.TCA_TBF_PARMS);
  if (!parms || parms.length < 36) return undefined;
  const rate64 = parseAttrs(options).get(TC.TCA_TBF_RATE64);
  const rate = rate64 ? Number(rate64.readBigUInt64LE(0)) : parms.readUInt32LE(8);
  return { rate, limit: parms.readUInt32LE(24) };
}

/** The ifindex a filter's mirred action redirects to, if it has one. */
export function decodeRedirectTarget(options: Buffer | undefined): number | undefined {
  const acts = options && parseAttrs(options).get(TC.TCA_U32_ACT);
  if (!acts) return undefined;
  for (const act of parseAttrs(acts).values()) {
    const a = parseAttrs(act);
    if (readString(a.get(TC.TCA_ACT_KIND) ?? Buffer.alloc(0)) !== 'mirred') continue;
    const parms = a.get(TC.TCA_ACT_OPTIONS) && parseAttrs(a.get(TC.TCA_ACT_OPTIONS)!).get(TC.TCA_MIRRED_PARMS);
    if (parms && parms.length >= 28) return parms.readUInt32LE(24);
  }
  return undefined;
}

/** An ifb device: it receives what a mirred action redirects to it and sends it back on. */
export function newIfb(o: { name: string; mtu?: number; txQLen?: number }): Request {
  checkIfname(o.name, 'ifb name');
  return {
    type: NL.RTM_NEWLINK,
    flags: NL.F_CREATE | NL.F_EXCL,
    body: [
      ifinfomsg(),
      nlaString(NL.IFLA_IFNAME, o.name),
      ...(o.mtu ? [nlaU32(NL.IFLA_MTU, o.mtu)] : []),
      ...(o.txQLen !== undefined ? [nlaU32(NL.IFLA_TXQLEN, o.txQLen)] : []),
      nlaNest(NL.IFLA_LINKINFO, [nlaString(NL.IFLA_INFO_KIND, 'ifb')]),
    ],
  };
}
