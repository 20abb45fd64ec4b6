import { describe, expect, it } from 'vitest';
import { parseAttrs, readString } from '../../../../lib/netlink/codec.js';
import { TC, decodeFilterClass, decodeHtbRate, decodeRedirectTarget, decodeTbf, decodeTcObject, newHtbClass, newHtbQdisc, newIfb, newIngressQdisc, newRedirectAllFilter, newSubnetFilter, newTbfQdisc, tbfBufferTicks } from '../../../../lib/netlink/tc-messages.js';

const body = (b: Buffer[]) => Buffer.concat(b);

describe('tc messages', () => {
  it('a root TBF: tcmsg on the link, kind tbf, parms with the rate and the buffer in 64 ns ticks, and the bucket in bytes', () => {
    const req = newTbfQdisc(7, { rate: 1_250_000, burst: 250_000, limit: 281_250 });
    expect(req.type).toBe(TC.RTM_NEWQDISC);
    const b = body(req.body);
    expect(b.readInt32LE(4)).toBe(7);
    expect(b.readUInt32LE(12)).toBe(TC.TC_H_ROOT);
    const obj = decodeTcObject(b);
    expect(obj.kind).toBe('tbf');
    expect(decodeTbf(obj.options)).toEqual({ rate: 1_250_000, limit: 281_250 });
    const parms = parseAttrs(obj.options!).get(TC.TCA_TBF_PARMS)!;
    // 250 000 bytes at 1.25 MB/s is 200 ms: 3 125 000 ticks of 64 ns.
    expect(parms.readUInt32LE(28)).toBe(3_125_000);
    expect(tbfBufferTicks(1_250_000, 250_000)).toBe(3_125_000);
    expect(parseAttrs(obj.options!).get(TC.TCA_TBF_BURST)!.readUInt32LE(0)).toBe(250_000);
  });

  it('rates beyond 32 bits carry TCA_TBF_RATE64', () => {
    const obj = decodeTcObject(body(newTbfQdisc(1, { rate: 2 ** 33, burst: 1e6, limit: 2e6 }).body));
    expect(decodeTbf(obj.options)?.rate).toBe(2 ** 33);
  });

  it('the ingress qdisc sits at ffff:fff1 with handle ffff:', () => {
    const obj = decodeTcObject(body(newIngressQdisc(3).body));
    expect(obj).toMatchObject({ index: 3, parent: TC.TC_H_INGRESS, handle: TC.INGRESS_HANDLE, kind: 'ingress' });
  });

  it('the redirect filter is a u32 matching everything (protocol all) with a mirred egress redirect to the ifb', () => {
    const obj = decodeTcObject(body(newRedirectAllFilter(3, TC.INGRESS_HANDLE, 9).body));
    expect(obj.kind).toBe('u32');
    expect(obj.parent).toBe(TC.INGRESS_HANDLE);
    expect(obj.info).toBe((1 << 16) | 0x0300);
    expect(decodeRedirectTarget(obj.options)).toBe(9);
    const sel = parseAttrs(obj.options!).get(TC.TCA_U32_SEL)!;
    expect(sel[0]).toBe(TC.TC_U32_TERMINAL);
    expect(sel[2]).toBe(1);
  });

  it('an HTB root names its default class; its classes carry rate = ceil, the bucket in ticks, and RATE64 past 32 bits', () => {
    const q = decodeTcObject(body(newHtbQdisc(3, 2).body));
    expect([q.kind, q.parent, q.handle]).toEqual(['htb', TC.TC_H_ROOT, TC.HTB_HANDLE]);
    const glob = parseAttrs(q.options!).get(TC.TCA_HTB_INIT)!;
    expect([glob.readUInt32LE(0), glob.readUInt32LE(4), glob.readUInt32LE(8)]).toEqual([3, 10, 2]);
    const c = decodeTcObject(body(newHtbClass(3, 1, { rate: 1_250_000, burst: 250_000 }).body));
    expect([c.parent, c.handle]).toEqual([TC.HTB_HANDLE, TC.HTB_HANDLE | 1]);
    expect(decodeHtbRate(c.options)).toBe(1_250_000);
    const parms = parseAttrs(c.options!).get(TC.TCA_HTB_PARMS)!;
    expect(parms.readUInt32LE(20)).toBe(parms.readUInt32LE(8)); // ceil = rate
    expect(parms.readUInt32LE(24)).toBe(tbfBufferTicks(1_250_000, 250_000));
    expect(decodeHtbRate(decodeTcObject(body(newHtbClass(3, 2, { rate: 12_500_000_000, burst: 1 << 20 }).body)).options)).toBe(12_500_000_000);
  });

  it('a subnet filter compares the address words the prefix covers, at the far end\'s offset, and names its class', () => {
    const v4 = decodeTcObject(body(newSubnetFilter(3, { family: 4, address: Buffer.from([10, 204, 0, 7]), prefixLength: 24, text: '10.204.0.0/24' }, 'src', 2, 1).body));
    expect(v4.info).toBe((1 << 16) | 0x0008); // htons(ETH_P_IP)
    expect(decodeFilterClass(v4.options)).toBe(TC.HTB_HANDLE | 2);
    const sel = parseAttrs(v4.options!).get(TC.TCA_U32_SEL)!;
    expect(sel[2]).toBe(1);
    // mask ffffff00, value 10.204.0.0 (the host bits dropped), at byte 12 (IPv4 source).
    expect([sel.readUInt32BE(16), sel.readUInt32BE(20), sel.readInt32LE(24)]).toEqual([0xffffff00, 0x0acc0000, 12]);
    const v6 = decodeTcObject(body(newSubnetFilter(3, { family: 6, address: Buffer.from('fd000001000000000000000000000000', 'hex'), prefixLength: 40, text: 'fd00:1::/40' }, 'dst', 1, 2).body));
    expect(v6.info).toBe((2 << 16) | 0xdd86);
    const sel6 = parseAttrs(v6.options!).get(TC.TCA_U32_SEL)!;
    expect(sel6[2]).toBe(2);
    expect([sel6.readUInt32BE(16), sel6.readUInt32BE(20), sel6.readInt32LE(24)]).toEqual([0xffffffff, 0xfd000001, 24]);
    expect([sel6.readUInt32BE(32), sel6.readUInt32BE(36), sel6.readInt32LE(40)]).toEqual([0xff000000, 0, 28]);
  });

  it('an ifb link names its kind and refuses names the kernel would', () => {
    const b = body(newIfb({ name: 'bwp0123456789ab', mtu: 1500, txQLen: 1000 }).body);
    const info = parseAttrs(parseAttrs(b, 16).get(18)!);
    expect(readString(info.get(1)!)).toBe('ifb');
    expect(() => newIfb({ name: 'much-too-long-name' })).toThrow(/ifb name/);
  });
});
