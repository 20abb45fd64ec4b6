import { describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import {
  NL, attrList, errorReplyErrno, ifaddrmsg, ifinfomsg, ipBytes, ipFromBytes, macBytes, macFromBytes, nla, nlaNest, nlaString,
  nlaU16, nlaU32, nlaU8, parseAttrs, readString, rtmsg,
} from '../../../../lib/netlink/codec.js';

describe('netlink attributes', () => {
  it('a string attribute carries its NUL and is padded to 4 bytes', () => {
    const a = nlaString(NL.IFLA_IFNAME, 'eth0');
    expect(a.length).toBe(12);
    expect(a.readUInt16LE(0)).toBe(9); // header + "eth0\0", padding not counted
    expect(a.readUInt16LE(2)).toBe(NL.IFLA_IFNAME);
    expect(a.subarray(4, 9).toString('latin1')).toBe('eth0\0');
    expect([...a.subarray(9)]).toEqual([0, 0, 0]);
  });

  it('integer attributes are host (little-endian) byte order', () => {
    expect([...nlaU8(1, 7)]).toEqual([5, 0, 1, 0, 7, 0, 0, 0]);
    expect([...nlaU16(2, 0x1234)]).toEqual([6, 0, 2, 0, 0x34, 0x12, 0, 0]);
    expect(nlaU32(4, 1500).readUInt32LE(4)).toBe(1500);
    expect(nlaU32(4, 0xffffffff).readUInt32LE(4)).toBe(0xffffffff);
  });

  it('a nested attribute holds its children and sets NLA_F_NESTED only when asked', () => {
    const inner = [nlaU8(4, 1), nlaU32(1, 9)];
    const plain = nlaNest(12, inner);
    const flagged = nlaNest(12, inner, true);
    expect(plain.readUInt16LE(2)).toBe(12);
    expect(flagged.readUInt16LE(2)).toBe(12 | 0x8000);
    expect(plain.readUInt16LE(0)).toBe(4 + 8 + 8);
    const children = parseAttrs(flagged.subarray(4));
    expect(children.get(4)?.[0]).toBe(1);
    expect(children.get(1)?.readUInt32LE(0)).toBe(9);
  });

  it('parsing masks the flag bits, skips padding and keeps the last of a repeated type', () => {
    const buf = Buffer.concat([Buffer.alloc(16), nlaString(3, 'a'), nlaNest(18, [nlaString(1, 'veth')], true), nlaU32(4, 1), nlaU32(4, 2)]);
    const attrs = parseAttrs(buf, 16);
    expect(readString(attrs.get(3) as Buffer)).toBe('a');
    expect(attrs.has(18)).toBe(true);
    expect(attrs.get(4)?.readUInt32LE(0)).toBe(2);
    expect(attrList(buf, 16).map(([t]) => t)).toEqual([3, 18, 4, 4]);
  });

  it('parsing stops at a truncated attribute instead of reading past the buffer', () => {
    const good = nlaU32(4, 1);
    const bad = Buffer.from([200, 0, 5, 0, 1, 2]);
    expect(attrList(Buffer.concat([good, bad]))).toHaveLength(1);
  });

  it('readString stops at the NUL and accepts strings without one', () => {
    expect(readString(Buffer.from('br0\0\0'))).toBe('br0');
    expect(readString(Buffer.from('br0'))).toBe('br0');
  });
});

describe('netlink fixed headers', () => {
  it('ifinfomsg is 16 bytes: family, type, index, flags, change', () => {
    const b = ifinfomsg({ family: NL.AF_BRIDGE, index: 42, flags: NL.IFF_UP, change: NL.IFF_UP });
    expect(b.length).toBe(16);
    expect(b[0]).toBe(7);
    expect(b.readInt32LE(4)).toBe(42);
    expect(b.readUInt32LE(8)).toBe(1);
    expect(b.readUInt32LE(12)).toBe(1);
    expect(ifinfomsg().equals(Buffer.alloc(16))).toBe(true);
  });

  it('ifaddrmsg is 8 bytes: family, prefix length, flags, scope, index', () => {
    expect([...ifaddrmsg({ family: NL.AF_INET6, prefixLength: 64, flags: NL.IFA_F_NODAD, scope: 0, index: 3 })]).toEqual([10, 64, 2, 0, 3, 0, 0, 0]);
  });

  it('rtmsg is 12 bytes: family, dst_len, src_len, tos, table, protocol, scope, type, flags', () => {
    const b = rtmsg({ family: NL.AF_INET, dstLen: 24, table: 254, protocol: 3, scope: 253, type: 1, flags: NL.RTNH_F_ONLINK });
    expect([...b.subarray(0, 8)]).toEqual([2, 24, 0, 0, 254, 3, 253, 1]);
    expect(b.readUInt32LE(8)).toBe(4);
  });

  it('an error reply carries a negative errno; 0 is an ACK', () => {
    const body = Buffer.alloc(20);
    body.writeInt32LE(-17, 0);
    expect(errorReplyErrno(body)).toBe(17);
    expect(errorReplyErrno(Buffer.alloc(20))).toBe(0);
    expect(() => errorReplyErrno(Buffer.alloc(2))).toThrow(BerthError);
  });
});

describe('addresses on the wire', () => {
  it.each([
    ['10.1.2.3', [10, 1, 2, 3]],
    ['255.255.255.255', [255, 255, 255, 255]],
    ['::1', [...Array<number>(15).fill(0), 1]],
    ['fd00:1::ab', [0xfd, 0, 0, 1, ...Array<number>(10).fill(0), 0, 0xab]],
  ])('%s is %j in network byte order and reads back the same', (ip, bytes) => {
    expect([...ipBytes(ip)]).toEqual(bytes);
    expect(ipFromBytes(Buffer.from(bytes))).toBe(ip);
  });

  it('an IPv4-mapped IPv6 address becomes 16 bytes', () => {
    expect(ipBytes('::ffff:10.0.0.1')).toHaveLength(16);
  });

  it('a non-address is a BerthError naming it', () => {
    expect(() => ipBytes('10.0.0')).toThrow(/"10\.0\.0" is not an IP address/);
  });

  it('MAC addresses convert both ways, case-insensitively', () => {
    expect([...macBytes('0A:58:0a:f4:00:01')]).toEqual([0x0a, 0x58, 0x0a, 0xf4, 0, 1]);
    expect(macFromBytes(Buffer.from([0x0a, 0x58, 0x0a, 0xf4, 0, 1]))).toBe('0a:58:0a:f4:00:01');
  });

  it.each(['0a:58:0a:f4:00', 'zz:58:0a:f4:00:01', '0a580af40001'])('rejects the MAC %s', (mac) => {
    expect(() => macBytes(mac)).toThrow(/is not a MAC address/);
  });

  it('an attribute of raw bytes keeps them as given', () => {
    const a = nla(NL.IFLA_ADDRESS, macBytes('02:00:00:00:00:01'));
    expect(a.readUInt16LE(0)).toBe(10);
    expect(a.length).toBe(12);
  });
});
