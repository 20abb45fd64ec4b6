import { describe, expect, it } from 'vitest';
import { parseAttrs, readString } from '../../../../lib/netlink/codec.js';
import { TC, decodeRedirectTarget, decodeTbf, decodeTcObject, newIfb, newIngressQdisc, newRedirectAllFilter, newTbfQdisc, tbfBufferTicks } from '../../../../lib/netlink/tc-messages.js';

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

  it('an ifb link names its kind and refuses names the kernel would', () => {
    const b = body(newIfb({ name: 'bwp0123456789ab', mtu: 1500, txQLen: 1000 }).body);
    const info = parseAttrs(parseAttrs(b, 16).get(18)!);
    expect(readString(info.get(1)!)).toBe('ifb');
    expect(() => newIfb({ name: 'much-too-long-name' })).toThrow(/ifb name/);
  });
});
