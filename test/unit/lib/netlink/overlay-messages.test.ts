import { describe, expect, it } from 'vitest';
import { NL, ifinfomsg, ipBytes, macBytes, ndmsg, nla, nlaNest, nlaString, nlaU32, nlaU8, parseAttrs, readString } from '../../../../lib/netlink/codec.js';
import { decodeLink, decodeVxlanData, type Request } from '../../../../lib/netlink/messages.js';
import * as msg from '../../../../lib/netlink/overlay-messages.js';

// The messages an overlay sends (VXLAN devices, neighbours, FDB entries), read back byte by
// byte, and the kernel's replies for them, decoded.

const body = (r: Request) => Buffer.concat(r.body);
const nested = (b: Buffer | undefined) => parseAttrs(b as Buffer);

const be16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
};

describe('ndmsg', () => {
  it('is 12 bytes: family, padding, ifindex, state, flags, type', () => {
    const b = ndmsg({ family: NL.AF_BRIDGE, index: 9, state: NL.NUD_PERMANENT, flags: NL.NTF_SELF, type: 1 });
    expect([...b]).toEqual([NL.AF_BRIDGE, 0, 0, 0, 9, 0, 0, 0, 0x80, 0, NL.NTF_SELF, 1]);
  });
});

describe('vxlan requests', () => {
  const vxlanData = (r: Request) => {
    const info = nested(parseAttrs(body(r), 16).get(NL.IFLA_LINKINFO));
    expect(readString(info.get(NL.IFLA_INFO_KIND) as Buffer)).toBe('vxlan');
    return nested(info.get(NL.IFLA_INFO_DATA));
  };

  it('a vxlan is created exclusively with its name, mtu, mac, vni, local, underlay and nolearning', () => {
    const r = msg.newVxlan({ name: 'flannel.1', vni: 1, port: 8472, local: '192.168.1.5', underlayIndex: 2, mtu: 1450, mac: '02:aa:00:00:00:01' });
    expect(r.type).toBe(NL.RTM_NEWLINK);
    expect(r.flags).toBe(NL.F_CREATE | NL.F_EXCL);
    const a = parseAttrs(body(r), 16);
    expect(readString(a.get(NL.IFLA_IFNAME) as Buffer)).toBe('flannel.1');
    expect(a.get(NL.IFLA_MTU)?.readUInt32LE(0)).toBe(1450);
    expect(a.get(NL.IFLA_ADDRESS)?.equals(macBytes('02:aa:00:00:00:01'))).toBe(true);
    const d = vxlanData(r);
    expect(d.get(NL.IFLA_VXLAN_ID)?.readUInt32LE(0)).toBe(1);
    expect([...(d.get(NL.IFLA_VXLAN_LOCAL) as Buffer)]).toEqual([192, 168, 1, 5]);
    expect(d.has(NL.IFLA_VXLAN_LOCAL6)).toBe(false);
    expect(d.get(NL.IFLA_VXLAN_LINK)?.readUInt32LE(0)).toBe(2);
    expect([...(d.get(NL.IFLA_VXLAN_LEARNING) as Buffer)]).toEqual([0]);
  });

  it('the port is big-endian (__be16), unlike every other integer attribute', () => {
    const port = vxlanData(msg.newVxlan({ name: 'vx0', vni: 7, port: 8472 })).get(NL.IFLA_VXLAN_PORT) as Buffer;
    expect([...port]).toEqual([0x21, 0x18]);
  });

  it('an IPv6 local goes in IFLA_VXLAN_LOCAL6; learning on is sent as 1', () => {
    const d = vxlanData(msg.newVxlan({ name: 'vx6', vni: 7, port: 4789, local: 'fd00::5', learning: true }));
    expect(d.get(NL.IFLA_VXLAN_LOCAL6)?.equals(ipBytes('fd00::5'))).toBe(true);
    expect(d.has(NL.IFLA_VXLAN_LOCAL)).toBe(false);
    expect(d.get(NL.IFLA_VXLAN_LEARNING)?.[0]).toBe(1);
  });

  it('without local, underlay, mtu or mac none of them is sent', () => {
    const r = msg.newVxlan({ name: 'vx0', vni: 0, port: 4789 });
    const a = parseAttrs(body(r), 16);
    expect(a.has(NL.IFLA_MTU) || a.has(NL.IFLA_ADDRESS)).toBe(false);
    const d = vxlanData(r);
    expect([...d.keys()].sort((x, y) => x - y)).toEqual([NL.IFLA_VXLAN_ID, NL.IFLA_VXLAN_LEARNING, NL.IFLA_VXLAN_PORT]);
  });

  it.each([
    [{ vni: -1 }, /vni -1 is outside 0-16777215/],
    [{ vni: 1 << 24 }, /vni 16777216 is outside/],
    [{ vni: 1.5 }, /vni 1\.5 is outside/],
    [{ port: 0 }, /port 0 is outside 1-65535/],
    [{ port: 65536 }, /port 65536 is outside/],
    [{ local: '10.0.0' }, /"10\.0\.0" is not an IP address/],
    [{ name: 'a-very-long-name0' }, /vxlan name "a-very-long-name0" is not a valid/],
    [{ mac: 'zz' }, /"zz" is not a MAC address/],
  ])('%j is refused naming the value', (bad, message) => {
    expect(() => msg.newVxlan({ name: 'vx0', vni: 7, port: 8472, ...bad })).toThrow(message);
  });

  it('a vxlan link reply carries its settings in LinkInfo.vxlan', () => {
    const reply = Buffer.concat([
      ifinfomsg({ index: 5, flags: NL.IFF_UP }),
      nlaString(NL.IFLA_IFNAME, 'flannel.1'),
      nla(NL.IFLA_ADDRESS, macBytes('02:aa:00:00:00:01')),
      nlaU32(NL.IFLA_MTU, 1450),
      nlaNest(NL.IFLA_LINKINFO, [
        nlaString(NL.IFLA_INFO_KIND, 'vxlan'),
        nlaNest(NL.IFLA_INFO_DATA, [
          nlaU32(NL.IFLA_VXLAN_ID, 1),
          nlaU32(NL.IFLA_VXLAN_LINK, 2),
          nla(NL.IFLA_VXLAN_LOCAL, ipBytes('192.168.1.5')),
          nlaU8(NL.IFLA_VXLAN_LEARNING, 0),
          nla(NL.IFLA_VXLAN_PORT, be16(8472)),
        ]),
      ]),
    ]);
    expect(decodeLink(reply)).toEqual({
      index: 5, name: 'flannel.1', mac: '02:aa:00:00:00:01', mtu: 1450, up: true, promisc: false, kind: 'vxlan',
      vxlan: { vni: 1, port: 8472, local: '192.168.1.5', underlayIndex: 2, learning: false },
    });
  });

  it('vxlan data without local or underlay, with LOCAL6 and learning on', () => {
    expect(decodeVxlanData(Buffer.concat([nlaU32(NL.IFLA_VXLAN_ID, 9), nla(NL.IFLA_VXLAN_PORT, be16(4789)), nlaU8(NL.IFLA_VXLAN_LEARNING, 1)])))
      .toEqual({ vni: 9, port: 4789, learning: true });
    expect(decodeVxlanData(nla(NL.IFLA_VXLAN_LOCAL6, ipBytes('fd00::1')))).toMatchObject({ local: 'fd00::1' });
  });

  it('the data of other link kinds is not read as vxlan', () => {
    const reply = Buffer.concat([
      ifinfomsg({ index: 3 }),
      nlaNest(NL.IFLA_LINKINFO, [nlaString(NL.IFLA_INFO_KIND, 'bridge'), nlaNest(NL.IFLA_INFO_DATA, [nlaU32(1, 7)])]),
    ]);
    expect(decodeLink(reply).vxlan).toBeUndefined();
  });
});

describe('neighbour requests', () => {
  it('a neighbour is a permanent entry, created or replaced, with NDA_DST and NDA_LLADDR', () => {
    const r = msg.neighbor(false, { index: 5, ip: '10.244.1.0', mac: '02:bb:00:00:00:01' });
    expect(r.type).toBe(NL.RTM_NEWNEIGH);
    expect(r.flags).toBe(NL.F_CREATE | NL.F_REPLACE);
    const b = body(r);
    expect(b.subarray(0, 12).equals(ndmsg({ family: NL.AF_INET, index: 5, state: NL.NUD_PERMANENT }))).toBe(true);
    const a = parseAttrs(b, 12);
    expect([...(a.get(NL.NDA_DST) as Buffer)]).toEqual([10, 244, 1, 0]);
    expect(a.get(NL.NDA_LLADDR)?.equals(macBytes('02:bb:00:00:00:01'))).toBe(true);
  });

  it('an IPv6 neighbour is AF_INET6', () => {
    const b = body(msg.neighbor(false, { index: 5, ip: 'fd44::1', mac: '02:bb:00:00:00:01' }));
    expect(b[0]).toBe(NL.AF_INET6);
    expect(parseAttrs(b, 12).get(NL.NDA_DST)?.equals(ipBytes('fd44::1'))).toBe(true);
  });

  it('deleting sends only the address, no state and no flags', () => {
    const r = msg.neighbor(true, { index: 5, ip: '10.244.1.0' });
    expect([r.type, r.flags]).toEqual([NL.RTM_DELNEIGH, 0]);
    const b = body(r);
    expect(b.readUInt16LE(8)).toBe(0);
    expect([...parseAttrs(b, 12).keys()]).toEqual([NL.NDA_DST]);
  });

  it('a bad address or a missing MAC is refused naming it', () => {
    expect(() => msg.neighbor(false, { index: 5, ip: 'x', mac: '02:bb:00:00:00:01' })).toThrow(/neighbour on link #5: "x" is not an IP address/);
    expect(() => msg.neighbor(false, { index: 5, ip: '10.0.0.1' })).toThrow(/neighbour 10\.0\.0\.1 on link #5: a MAC address is required/);
  });

  it('a dump asks for one family or all', () => {
    const r = msg.dumpNeighbors(4);
    expect([r.type, r.flags]).toEqual([NL.RTM_GETNEIGH, NL.F_DUMP]);
    expect(body(r)[0]).toBe(NL.AF_INET);
    expect(body(msg.dumpNeighbors())[0]).toBe(NL.AF_UNSPEC);
  });

  it('a neighbour reply becomes a NeighborInfo', () => {
    const reply = Buffer.concat([
      ndmsg({ family: NL.AF_INET, index: 5, state: NL.NUD_PERMANENT, type: NL.RTN_UNICAST }),
      nla(NL.NDA_DST, ipBytes('10.244.1.0')),
      nla(NL.NDA_LLADDR, macBytes('02:bb:00:00:00:01')),
    ]);
    expect(msg.decodeNeighbor(reply)).toEqual({ index: 5, family: 4, ip: '10.244.1.0', mac: '02:bb:00:00:00:01', state: NL.NUD_PERMANENT, permanent: true });
  });

  it('an unresolved neighbour has no MAC and is not permanent; other families are skipped', () => {
    const reply = Buffer.concat([ndmsg({ family: NL.AF_INET6, index: 2, state: NL.NUD_INCOMPLETE }), nla(NL.NDA_DST, ipBytes('fd00::9'))]);
    expect(msg.decodeNeighbor(reply)).toEqual({ index: 2, family: 6, ip: 'fd00::9', mac: '', state: NL.NUD_INCOMPLETE, permanent: false });
    expect(msg.decodeNeighbor(ndmsg({ family: NL.AF_BRIDGE }))).toBeUndefined();
    expect(msg.decodeNeighbor(ndmsg({ family: NL.AF_INET }))).toBeUndefined();
  });
});

describe('FDB requests', () => {
  it('an FDB entry is an AF_BRIDGE permanent NTF_SELF neighbour with NDA_LLADDR and NDA_DST, created or replaced', () => {
    const r = msg.fdb(false, { index: 5, mac: '02:BB:00:00:00:01', dst: '192.168.1.6' });
    expect(r.type).toBe(NL.RTM_NEWNEIGH);
    expect(r.flags).toBe(NL.F_CREATE | NL.F_REPLACE);
    const b = body(r);
    expect(b.subarray(0, 12).equals(ndmsg({ family: NL.AF_BRIDGE, index: 5, state: NL.NUD_PERMANENT, flags: NL.NTF_SELF }))).toBe(true);
    const a = parseAttrs(b, 12);
    expect(a.get(NL.NDA_LLADDR)?.equals(macBytes('02:bb:00:00:00:01'))).toBe(true);
    expect([...(a.get(NL.NDA_DST) as Buffer)]).toEqual([192, 168, 1, 6]);
  });

  it('deleting sends the MAC, and the dst only when given', () => {
    const r = msg.fdb(true, { index: 5, mac: '02:bb:00:00:00:01' });
    expect([r.type, r.flags]).toEqual([NL.RTM_DELNEIGH, 0]);
    const b = body(r);
    expect([b[0], b[10]]).toEqual([NL.AF_BRIDGE, NL.NTF_SELF]);
    expect([...parseAttrs(b, 12).keys()]).toEqual([NL.NDA_LLADDR]);
    expect(parseAttrs(body(msg.fdb(true, { index: 5, mac: '02:bb:00:00:00:01', dst: 'fd00::6' })), 12).get(NL.NDA_DST)?.equals(ipBytes('fd00::6'))).toBe(true);
  });

  it('an entry without dst, or with a bad one, is refused naming it', () => {
    expect(() => msg.fdb(false, { index: 5, mac: '02:bb:00:00:00:01' })).toThrow(/fdb entry 02:bb:00:00:00:01 on link #5: a dst address is required/);
    expect(() => msg.fdb(false, { index: 5, mac: '02:bb:00:00:00:01', dst: '1.2.3' })).toThrow(/fdb entry 02:bb:00:00:00:01 on link #5: "1\.2\.3" is not an IP address/);
    expect(() => msg.fdb(false, { index: 5, mac: 'nope', dst: '1.2.3.4' })).toThrow(/"nope" is not a MAC address/);
  });

  it('the dump asks for AF_BRIDGE neighbours', () => {
    const r = msg.dumpFdb();
    expect([r.type, r.flags, body(r)[0]]).toEqual([NL.RTM_GETNEIGH, NL.F_DUMP, NL.AF_BRIDGE]);
  });

  it('a VXLAN FDB reply becomes an FdbEntry with its remote', () => {
    const reply = Buffer.concat([
      ndmsg({ family: NL.AF_BRIDGE, index: 5, state: NL.NUD_PERMANENT, flags: NL.NTF_SELF }),
      nla(NL.NDA_LLADDR, macBytes('02:bb:00:00:00:01')),
      nla(NL.NDA_DST, ipBytes('192.168.1.6')),
      nlaU32(NL.NDA_VNI, 7),
    ]);
    expect(msg.decodeFdb(reply)).toEqual({ index: 5, mac: '02:bb:00:00:00:01', dst: '192.168.1.6', permanent: true, self: true, state: NL.NUD_PERMANENT, vni: 7 });
  });

  it('a learned bridge entry names its master and has no dst; other families are skipped', () => {
    const reply = Buffer.concat([
      ndmsg({ family: NL.AF_BRIDGE, index: 8, state: NL.NUD_REACHABLE, flags: NL.NTF_MASTER }),
      nla(NL.NDA_LLADDR, macBytes('0a:58:0a:f4:00:05')),
      nlaU32(NL.NDA_MASTER, 3),
    ]);
    expect(msg.decodeFdb(reply)).toEqual({ index: 8, mac: '0a:58:0a:f4:00:05', permanent: false, self: false, state: NL.NUD_REACHABLE, masterIndex: 3 });
    expect(msg.decodeFdb(Buffer.concat([ndmsg({ family: NL.AF_INET }), nla(NL.NDA_LLADDR, macBytes('02:bb:00:00:00:01'))]))).toBeUndefined();
    expect(msg.decodeFdb(ndmsg({ family: NL.AF_BRIDGE }))).toBeUndefined();
  });
});
