import { describe, expect, it } from 'vitest';
import { NL, attrList, ifaddrmsg, ifinfomsg, ipBytes, macBytes, nla, nlaNest, nlaString, nlaU32, nlaU8, parseAttrs, readString, rtmsg } from '../../../../lib/netlink/codec.js';
import * as msg from '../../../../lib/netlink/messages.js';

// The requests berth sends, read back byte by byte, and replies the kernel would send, decoded.

const body = (r: msg.Request) => Buffer.concat(r.body);
const attrsAfter = (r: msg.Request, header: number) => parseAttrs(body(r), header);
const nested = (b: Buffer | undefined) => parseAttrs(b as Buffer);

describe('interface names', () => {
  it.each(['eth0', 'a', 'veth0123456789a'])('accepts %s', (name) => expect(() => msg.checkIfname(name)).not.toThrow());
  it.each(['', 'veth0123456789ab', 'a/b', 'a:b', 'a b', '.', '..'])('rejects %j naming it', (name) => {
    expect(() => msg.checkIfname(name, 'veth name')).toThrow(new RegExp(`veth name ${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a valid`));
  });
});

describe('link requests', () => {
  it('a bridge is created exclusively with its name, mtu and kind', () => {
    const r = msg.newBridge('cni0', { mtu: 1450, vlanFiltering: true });
    expect(r.type).toBe(NL.RTM_NEWLINK);
    expect(r.flags).toBe(NL.F_CREATE | NL.F_EXCL);
    const a = attrsAfter(r, 16);
    expect(readString(a.get(NL.IFLA_IFNAME) as Buffer)).toBe('cni0');
    expect(a.get(NL.IFLA_MTU)?.readUInt32LE(0)).toBe(1450);
    const info = nested(a.get(NL.IFLA_LINKINFO));
    expect(readString(info.get(NL.IFLA_INFO_KIND) as Buffer)).toBe('bridge');
    expect(nested(info.get(NL.IFLA_INFO_DATA)).get(NL.IFLA_BR_VLAN_FILTERING)?.[0]).toBe(1);
  });

  it.each([{}, { vlanFiltering: false }])('a bridge with %j sends no mtu and no bridge data (kernels without VLAN filtering refuse even "off")', (o) => {
    const a = attrsAfter(msg.newBridge('br0', o), 16);
    expect(a.has(NL.IFLA_MTU)).toBe(false);
    expect(nested(a.get(NL.IFLA_LINKINFO)).has(NL.IFLA_INFO_DATA)).toBe(false);
  });

  it('a veth peer carries its own ifinfomsg, name, mtu, mac and the target namespace fd', () => {
    const r = msg.newVeth({ name: 'veth1', peerName: 'eth0', mtu: 1400, mac: '02:00:00:00:00:01', peerMac: '02:00:00:00:00:02' }, 23);
    const a = attrsAfter(r, 16);
    expect(readString(a.get(NL.IFLA_IFNAME) as Buffer)).toBe('veth1');
    expect(a.get(NL.IFLA_ADDRESS)?.equals(macBytes('02:00:00:00:00:01'))).toBe(true);
    const info = nested(a.get(NL.IFLA_LINKINFO));
    expect(readString(info.get(NL.IFLA_INFO_KIND) as Buffer)).toBe('veth');
    const peer = nested(info.get(NL.IFLA_INFO_DATA)).get(NL.VETH_INFO_PEER) as Buffer;
    expect(peer.subarray(0, 16).equals(ifinfomsg())).toBe(true);
    const p = parseAttrs(peer, 16);
    expect(readString(p.get(NL.IFLA_IFNAME) as Buffer)).toBe('eth0');
    expect(p.get(NL.IFLA_MTU)?.readUInt32LE(0)).toBe(1400);
    expect(p.get(NL.IFLA_ADDRESS)?.equals(macBytes('02:00:00:00:00:02'))).toBe(true);
    expect(p.get(NL.IFLA_NET_NS_FD)?.readUInt32LE(0)).toBe(23);
  });

  it('a veth peer in the same namespace has no namespace fd', () => {
    const info = nested(attrsAfter(msg.newVeth({ name: 'a0', peerName: 'a1' }, undefined), 16).get(NL.IFLA_LINKINFO));
    const peer = nested(info.get(NL.IFLA_INFO_DATA)).get(NL.VETH_INFO_PEER) as Buffer;
    expect(parseAttrs(peer, 16).has(NL.IFLA_NET_NS_FD)).toBe(false);
  });

  it('a veth with an invalid peer name is refused before anything is sent', () => {
    expect(() => msg.newVeth({ name: 'a0', peerName: 'x'.repeat(16) }, undefined)).toThrow(/veth peer name/);
  });

  it('up and down change only IFF_UP', () => {
    const up = body(msg.setFlag(5, NL.IFF_UP, true));
    const down = body(msg.setFlag(5, NL.IFF_UP, false));
    expect([up.readInt32LE(4), up.readUInt32LE(8), up.readUInt32LE(12)]).toEqual([5, 1, 1]);
    expect([down.readUInt32LE(8), down.readUInt32LE(12)]).toEqual([0, 1]);
  });

  it('deleting by name sends the name; by index the index', () => {
    const byName = msg.deleteLink({ name: 'veth1' });
    expect(byName.type).toBe(NL.RTM_DELLINK);
    expect(readString(attrsAfter(byName, 16).get(NL.IFLA_IFNAME) as Buffer)).toBe('veth1');
    expect(body(msg.deleteLink({ index: 9 })).readInt32LE(4)).toBe(9);
  });

  it('hairpin is an AF_BRIDGE setlink with a NLA_F_NESTED IFLA_PROTINFO holding IFLA_BRPORT_MODE', () => {
    const b = body(msg.setHairpin(7, true));
    expect(b[0]).toBe(NL.AF_BRIDGE);
    expect(b.readInt32LE(4)).toBe(7);
    const [[type, data]] = attrList(b, 16) as [[number, Buffer]];
    expect(type).toBe(NL.IFLA_PROTINFO);
    expect(b.readUInt16LE(18) & NL.NLA_F_NESTED).toBe(NL.NLA_F_NESTED);
    expect(parseAttrs(data).get(NL.IFLA_BRPORT_MODE)?.[0]).toBe(1);
    expect(parseAttrs(body(msg.setHairpin(7, false)), 16).get(NL.IFLA_PROTINFO)?.subarray(4)[0]).toBe(0);
  });

  it('a bridge VLAN is a bridge_vlan_info in IFLA_AF_SPEC; self adds BRIDGE_FLAGS_SELF', () => {
    const r = msg.bridgeVlan(7, 100, { pvid: true, untagged: true });
    expect(r.type).toBe(NL.RTM_SETLINK);
    const spec = attrsAfter(r, 16).get(NL.IFLA_AF_SPEC) as Buffer;
    const info = parseAttrs(spec).get(NL.IFLA_BRIDGE_VLAN_INFO) as Buffer;
    expect([info.readUInt16LE(0), info.readUInt16LE(2)]).toEqual([NL.BRIDGE_VLAN_INFO_PVID | NL.BRIDGE_VLAN_INFO_UNTAGGED, 100]);
    expect(parseAttrs(spec).has(NL.IFLA_BRIDGE_FLAGS)).toBe(false);
    const self = parseAttrs(attrsAfter(msg.bridgeVlan(2, 5, { self: true }), 16).get(NL.IFLA_AF_SPEC) as Buffer);
    expect(self.get(NL.IFLA_BRIDGE_FLAGS)?.readUInt16LE(0)).toBe(NL.BRIDGE_FLAGS_SELF);
    expect(msg.bridgeVlan(7, 100, {}, true).type).toBe(NL.RTM_DELLINK);
  });

  it.each([0, 4095, 1.5])('VLAN id %s is refused', (vid) => {
    expect(() => msg.bridgeVlan(7, vid, {})).toThrow(/VLAN id/);
  });
});

describe('address requests', () => {
  it('an IPv4 address gets local, address and the subnet broadcast', () => {
    const r = msg.address(false, 4, '10.22.0.5/16');
    expect(r.type).toBe(NL.RTM_NEWADDR);
    expect(r.flags).toBe(NL.F_CREATE | NL.F_EXCL);
    const b = body(r);
    expect([...b.subarray(0, 4)]).toEqual([NL.AF_INET, 16, 0, NL.RT_SCOPE_UNIVERSE]);
    expect(b.readUInt32LE(4)).toBe(4);
    const a = parseAttrs(b, 8);
    expect([...(a.get(NL.IFA_LOCAL) as Buffer)]).toEqual([10, 22, 0, 5]);
    expect([...(a.get(NL.IFA_ADDRESS) as Buffer)]).toEqual([10, 22, 0, 5]);
    expect([...(a.get(NL.IFA_BROADCAST) as Buffer)]).toEqual([10, 22, 255, 255]);
  });

  it.each(['10.0.0.1/31', '10.0.0.1/32'])('%s has no broadcast address', (cidr) => {
    expect(attrsAfter(msg.address(false, 1, cidr), 8).has(NL.IFA_BROADCAST)).toBe(false);
  });

  it('0.0.0.0/0 would broadcast to everything', () => {
    expect([...(attrsAfter(msg.address(false, 1, '10.0.0.1/0'), 8).get(NL.IFA_BROADCAST) as Buffer)]).toEqual([255, 255, 255, 255]);
  });

  it('an IPv6 address with noDad sets IFA_F_NODAD in the header and has no broadcast', () => {
    const b = body(msg.address(false, 3, 'fd00::2/64', { noDad: true }));
    expect([...b.subarray(0, 3)]).toEqual([NL.AF_INET6, 64, NL.IFA_F_NODAD]);
    expect(parseAttrs(b, 8).has(NL.IFA_BROADCAST)).toBe(false);
    expect(parseAttrs(b, 8).has(NL.IFA_FLAGS)).toBe(false);
  });

  it('flags above 8 bits travel in IFA_FLAGS', () => {
    expect(attrsAfter(msg.address(false, 3, '10.0.0.2/24', { noPrefixRoute: true }), 8).get(NL.IFA_FLAGS)?.readUInt32LE(0)).toBe(NL.IFA_F_NOPREFIXROUTE);
  });

  it.each([['127.0.0.2/8'], ['::1/128']])('loopback address %s gets host scope', (cidr) => {
    expect(body(msg.address(false, 1, cidr))[3]).toBe(NL.RT_SCOPE_HOST);
  });

  it('deleting sends no create flags and no broadcast', () => {
    const r = msg.address(true, 4, '10.22.0.5/16');
    expect([r.type, r.flags]).toEqual([NL.RTM_DELADDR, 0]);
    expect(attrsAfter(r, 8).has(NL.IFA_BROADCAST)).toBe(false);
  });

  it('a malformed CIDR is refused naming it', () => {
    expect(() => msg.address(false, 1, '10.0.0.1')).toThrow(/"10\.0\.0\.1" is not a CIDR/);
  });
});

describe('route requests', () => {
  it('a default route has dst_len 0, no RTA_DST, and the gateway', () => {
    const r = msg.route(false, { dst: '0.0.0.0/0', gw: '10.0.0.1' });
    const b = body(r);
    expect([...b.subarray(0, 8)]).toEqual([NL.AF_INET, 0, 0, 0, NL.RT_TABLE_MAIN, NL.RTPROT_BOOT, NL.RT_SCOPE_UNIVERSE, NL.RTN_UNICAST]);
    const a = parseAttrs(b, 12);
    expect(a.has(NL.RTA_DST)).toBe(false);
    expect([...(a.get(NL.RTA_GATEWAY) as Buffer)]).toEqual([10, 0, 0, 1]);
    expect(r.flags).toBe(NL.F_CREATE | NL.F_EXCL);
  });

  it('the destination loses its host bits; a device route without gateway is link scope', () => {
    const b = body(msg.route(false, { dst: '10.1.2.3/16', index: 4 }));
    expect(b[1]).toBe(16);
    expect(b[6]).toBe(NL.RT_SCOPE_LINK);
    const a = parseAttrs(b, 12);
    expect([...(a.get(NL.RTA_DST) as Buffer)]).toEqual([10, 1, 0, 0]);
    expect(a.get(NL.RTA_OIF)?.readUInt32LE(0)).toBe(4);
  });

  it('onlink, metric, mtu, advmss, source and scope names are encoded', () => {
    const b = body(msg.route(false, { dst: 'fd00::/64', gw: 'fe80::1', index: 2, onlink: true, priority: 100, mtu: 1400, advmss: 1360, src: 'fd00::5', scope: 'host' }));
    expect(b[0]).toBe(NL.AF_INET6);
    expect(b[6]).toBe(NL.RT_SCOPE_HOST);
    expect(b.readUInt32LE(8)).toBe(NL.RTNH_F_ONLINK);
    const a = parseAttrs(b, 12);
    expect(a.get(NL.RTA_PRIORITY)?.readUInt32LE(0)).toBe(100);
    expect(a.get(NL.RTA_PREFSRC)?.equals(ipBytes('fd00::5'))).toBe(true);
    const metrics = parseAttrs(a.get(NL.RTA_METRICS) as Buffer);
    expect(metrics.get(NL.RTAX_MTU)?.readUInt32LE(0)).toBe(1400);
    expect(metrics.get(NL.RTAX_ADVMSS)?.readUInt32LE(0)).toBe(1360);
  });

  it('a table above 255 goes in RTA_TABLE with RT_TABLE_COMPAT in the header', () => {
    const b = body(msg.route(false, { dst: '10.0.0.0/8', index: 1, table: 1000 }));
    expect(b[4]).toBe(NL.RT_TABLE_COMPAT);
    expect(parseAttrs(b, 12).get(NL.RTA_TABLE)?.readUInt32LE(0)).toBe(1000);
  });

  it('replace asks for CREATE|REPLACE instead of EXCL', () => {
    expect(msg.route(false, { dst: '10.0.0.0/8', index: 1 }, true).flags).toBe(NL.F_CREATE | NL.F_REPLACE);
  });

  it('deleting matches any scope, type and protocol', () => {
    const r = msg.route(true, { dst: '10.0.0.0/8', gw: '10.0.0.1', mtu: 1400 });
    const b = body(r);
    expect([r.type, r.flags]).toEqual([NL.RTM_DELROUTE, 0]);
    expect([b[5], b[6], b[7]]).toEqual([0, NL.RT_SCOPE_NOWHERE, 0]);
    expect(parseAttrs(b, 12).has(NL.RTA_METRICS)).toBe(false);
  });

  it('a gateway of the other family is refused naming both', () => {
    expect(() => msg.route(false, { dst: '10.0.0.0/8', gw: 'fd00::1' })).toThrow(/route to 10\.0\.0\.0\/8: gateway fd00::1 is not an IPv4 address/);
  });
});

describe('decoding replies', () => {
  it('a link reply becomes a LinkInfo with kind, master and veth peer', () => {
    const reply = Buffer.concat([
      ifinfomsg({ index: 12, flags: NL.IFF_UP | NL.IFF_PROMISC }),
      nlaString(NL.IFLA_IFNAME, 'veth1'),
      nla(NL.IFLA_ADDRESS, macBytes('0a:58:0a:f4:00:01')),
      nlaU32(NL.IFLA_MTU, 1450),
      nlaU32(NL.IFLA_MASTER, 3),
      nlaU32(NL.IFLA_LINK, 2),
      nlaU32(NL.IFLA_LINK_NETNSID, 0),
      nlaNest(NL.IFLA_LINKINFO, [nlaString(NL.IFLA_INFO_KIND, 'veth')]),
    ]);
    expect(msg.decodeLink(reply)).toEqual({
      index: 12, name: 'veth1', mac: '0a:58:0a:f4:00:01', mtu: 1450, up: true, promisc: true, kind: 'veth', masterIndex: 3, linkIndex: 2, linkNetnsId: 0,
    });
  });

  it('a plain link has no kind, master or peer', () => {
    const link = msg.decodeLink(Buffer.concat([ifinfomsg({ index: 1 }), nlaString(NL.IFLA_IFNAME, 'lo'), nlaU32(NL.IFLA_MTU, 65536)]));
    expect(link).toEqual({ index: 1, name: 'lo', mac: '', mtu: 65536, up: false, promisc: false });
  });

  it('an IPv4 address reply prefers IFA_LOCAL (the peer address of point-to-point links is IFA_ADDRESS)', () => {
    const reply = Buffer.concat([
      ifaddrmsg({ family: NL.AF_INET, prefixLength: 32, scope: 0, index: 5, flags: 0x80 }),
      nla(NL.IFA_ADDRESS, ipBytes('10.0.0.9')),
      nla(NL.IFA_LOCAL, ipBytes('10.0.0.1')),
      nlaString(NL.IFA_LABEL, 'tun0'),
    ]);
    expect(msg.decodeAddress(reply)).toEqual({ index: 5, family: 4, address: '10.0.0.1', prefixLength: 32, cidr: '10.0.0.1/32', scope: 0, flags: 0x80, label: 'tun0' });
  });

  it('an IPv6 address reply reads IFA_ADDRESS and IFA_FLAGS', () => {
    const reply = Buffer.concat([ifaddrmsg({ family: NL.AF_INET6, prefixLength: 64, index: 2 }), nla(NL.IFA_ADDRESS, ipBytes('fd00::2')), nlaU32(NL.IFA_FLAGS, 0x280)]);
    expect(msg.decodeAddress(reply)).toMatchObject({ family: 6, cidr: 'fd00::2/64', flags: 0x280 });
  });

  it('replies of other families are skipped', () => {
    expect(msg.decodeAddress(ifaddrmsg({ family: 17 }))).toBeUndefined();
    expect(msg.decodeRoute(rtmsg({ family: 128 }))).toBeUndefined();
  });

  it('a default route reply has dst 0.0.0.0/0, its gateway, device, table and metrics', () => {
    const reply = Buffer.concat([
      rtmsg({ family: NL.AF_INET, dstLen: 0, table: 254, protocol: 3, scope: 0, type: 1, flags: NL.RTNH_F_ONLINK }),
      nlaU32(NL.RTA_TABLE, 254),
      nla(NL.RTA_GATEWAY, ipBytes('192.168.1.1')),
      nlaU32(NL.RTA_OIF, 2),
      nlaU32(NL.RTA_PRIORITY, 10),
      nlaNest(NL.RTA_METRICS, [nlaU32(NL.RTAX_MTU, 1400)]),
    ]);
    expect(msg.decodeRoute(reply)).toEqual({
      family: 4, dst: '0.0.0.0/0', gw: '192.168.1.1', index: 2, table: 254, protocol: 3, scope: 0, type: 1, onlink: true, priority: 10, mtu: 1400,
    });
  });

  it('an IPv6 route reply names its destination', () => {
    const reply = Buffer.concat([rtmsg({ family: NL.AF_INET6, dstLen: 64, table: 254, scope: 0, type: 1 }), nla(NL.RTA_DST, ipBytes('fd00:1::')), nlaU32(NL.RTA_OIF, 3)]);
    expect(msg.decodeRoute(reply)).toMatchObject({ family: 6, dst: 'fd00:1::/64', index: 3, table: 254 });
  });

  it('a bridge port reply gives hairpin mode and VLANs', () => {
    const vlan = (flags: number, vid: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt16LE(flags, 0);
      b.writeUInt16LE(vid, 2);
      return nla(NL.IFLA_BRIDGE_VLAN_INFO, b);
    };
    const reply = Buffer.concat([
      ifinfomsg({ family: NL.AF_BRIDGE, index: 8 }),
      nlaString(NL.IFLA_IFNAME, 'veth8'),
      nlaU32(NL.IFLA_MASTER, 3),
      nlaNest(NL.IFLA_PROTINFO, [nlaU8(1, 3), nlaU8(NL.IFLA_BRPORT_MODE, 1)], true),
      nlaNest(NL.IFLA_AF_SPEC, [vlan(NL.BRIDGE_VLAN_INFO_PVID | NL.BRIDGE_VLAN_INFO_UNTAGGED, 1), vlan(0, 20)]),
    ]);
    expect(msg.decodeBridgePort(reply)).toEqual({
      index: 8, name: 'veth8', masterIndex: 3, hairpin: true,
      vlans: [{ vid: 1, pvid: true, untagged: true }, { vid: 20, pvid: false, untagged: false }],
    });
  });
});

describe('dump requests', () => {
  it('dumps ask for NLM_F_DUMP and skip statistics where possible', () => {
    const links = msg.dumpLinks();
    expect(links.flags).toBe(NL.F_DUMP);
    expect(attrsAfter(links, 16).get(NL.IFLA_EXT_MASK)?.readUInt32LE(0)).toBe(NL.RTEXT_FILTER_SKIP_STATS);
    expect(body(msg.dumpAddresses(6))[0]).toBe(NL.AF_INET6);
    expect(body(msg.dumpAddresses())[0]).toBe(NL.AF_UNSPEC);
    expect(body(msg.dumpRoutes(4))[0]).toBe(NL.AF_INET);
    expect(attrsAfter(msg.dumpBridgePorts(), 16).get(NL.IFLA_EXT_MASK)?.readUInt32LE(0)).toBe(NL.RTEXT_FILTER_BRVLAN);
  });

  it('a lookup by name sends the name', () => {
    expect(readString(attrsAfter(msg.getLinkByName('eth0'), 16).get(NL.IFLA_IFNAME) as Buffer)).toBe('eth0');
    expect(body(msg.getLinkByIndex(3)).readInt32LE(4)).toBe(3);
  });
});
