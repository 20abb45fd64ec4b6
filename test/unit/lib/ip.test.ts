import { describe, expect, it } from 'vitest';
import {
  bigIntToIp,
  canonicalIp,
  cidrContains,
  formatIp,
  formatSubnet,
  ipToBigInt,
  lastAddress,
  lastAddressOf,
  networkCidr,
  nthAddress,
  parseCidr,
  tryParseCidr,
  parseIp,
  subnetContains,
  subnetOf,
  subnetSize,
} from '../../../lib/ip.js';

function subnet(text: string) {
  const cidr = tryParseCidr(text);
  if (!cidr) throw new Error(`test setup: ${text} is not a CIDR`);
  return subnetOf(cidr);
}

describe('IP math: parsing', () => {
  it('parses IPv4 dotted quads into 32-bit numbers', () => {
    expect(parseIp('0.0.0.0')).toEqual({ family: 4, value: 0n });
    expect(parseIp('10.1.2.3')).toEqual({ family: 4, value: 0x0a010203n });
    expect(parseIp('255.255.255.255')).toEqual({ family: 4, value: 0xffffffffn });
  });

  it('refuses malformed IPv4: wrong part count, out of range, leading zeros, signs, blanks', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', '1.2.3.4 ', ' 1.2.3.4', '1..2.3', 'a.b.c.d', '1.2.3.4/24']) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });

  it('parses IPv6 in full, compressed and IPv4-tail forms', () => {
    expect(parseIp('::')).toEqual({ family: 6, value: 0n });
    expect(parseIp('::1')).toEqual({ family: 6, value: 1n });
    expect(parseIp('1::')).toEqual({ family: 6, value: 1n << 112n });
    expect(parseIp('2001:db8::1')?.value).toBe(0x20010db8000000000000000000000001n);
    expect(parseIp('2001:0DB8:0000:0000:0000:0000:0000:0001')?.value).toBe(0x20010db8000000000000000000000001n);
    expect(parseIp('::ffff:10.1.2.3')?.value).toBe(0xffff0a010203n);
    expect(parseIp('64:ff9b::192.0.2.33')?.value).toBe(0x0064ff9b0000000000000000c0000221n);
    expect(parseIp('1:2:3:4:5:6:1.2.3.4')?.value).toBe(0x00010002000300040005000601020304n);
  });

  it('refuses malformed IPv6: two "::", too many groups, long groups, zones, stray colons', () => {
    for (const bad of ['1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'fe80::1%eth0', ':1::2', '1::2:', ':::', 'g::1', '1:2:3:4:5:6:7::8', '::1.2.3', '1:2:3:4:5:6:7:1.2.3.4']) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });
});

describe('IP math: formatting as Go prints addresses (the reference names lease files that way)', () => {
  it('prints IPv4 as a dotted quad', () => {
    expect(formatIp(0x0a010203n, 4)).toBe('10.1.2.3');
  });

  it('compresses the longest run of zero groups, the first one on a tie, lowercase', () => {
    const cases: Record<string, string> = {
      '2001:DB8:0:0:0:0:0:1': '2001:db8::1',
      '2001:db8:0:0:1:0:0:1': '2001:db8::1:0:0:1',
      '2001:0:0:1:0:0:0:1': '2001:0:0:1::1',
      '0:0:0:0:0:0:0:0': '::',
      '0:0:0:0:0:0:0:1': '::1',
      '1:0:0:0:0:0:0:0': '1::',
      'fd00:9:0:0:0:0:0:2': 'fd00:9::2',
    };
    for (const [input, expected] of Object.entries(cases)) expect(canonicalIp(input), input).toBe(expected);
  });

  it('never compresses a single zero group', () => {
    expect(canonicalIp('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1');
  });

  it('round-trips every format through parse and print', () => {
    for (const text of ['10.0.0.1', '2001:db8::1', 'fe80::1:2', '::ffff:a01:203', '1:2:3:4:5:6:7:8']) {
      const parsed = parseIp(text);
      expect(parsed && formatIp(parsed.value, parsed.family)).toBe(text);
    }
  });
});

describe('IP math: subnets', () => {
  it('parses CIDRs, keeping the written address and clearing host bits in the subnet', () => {
    expect(tryParseCidr('10.1.2.3/24')).toEqual({ address: { family: 4, value: 0x0a010203n }, prefixLength: 24 });
    expect(formatSubnet(subnet('10.1.2.3/24'))).toBe('10.1.2.0/24');
    expect(formatSubnet(subnet('2001:db8::1/64'))).toBe('2001:db8::/64');
  });

  it('refuses CIDRs without a prefix, with a prefix too long, or with junk', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/08', '::/129', 'x/24', '10.0.0.0/24/1']) {
      expect(tryParseCidr(bad), bad).toBeUndefined();
    }
  });

  it('knows the last address and size of IPv4 and IPv6 subnets', () => {
    expect(formatIp(lastAddress(subnet('10.1.2.0/24')), 4)).toBe('10.1.2.255');
    expect(subnetSize(subnet('10.1.2.0/24'))).toBe(256n);
    expect(subnetSize(subnet('0.0.0.0/0'))).toBe(1n << 32n);
    expect(formatIp(lastAddress(subnet('fd00::/120')), 6)).toBe('fd00::ff');
    expect(subnetSize(subnet('fd00::/64'))).toBe(1n << 64n);
  });

  it('tests membership by family and prefix', () => {
    const s = subnet('10.1.2.0/24');
    expect(subnetContains(s, parseIp('10.1.2.200')!)).toBe(true);
    expect(subnetContains(s, parseIp('10.1.3.0')!)).toBe(false);
    expect(subnetContains(s, parseIp('::a01:205')!)).toBe(false);
    expect(subnetContains(subnet('fd00::/64'), parseIp('fd00::ffff:1')!)).toBe(true);
  });
});

describe('IP arithmetic', () => {
  it('round-trips IPv4 and IPv6 through BigInt', () => {
    for (const [a, f] of [['10.1.2.3', 4], ['0.0.0.0', 4], ['255.255.255.255', 4], ['fd00::1', 6], ['2001:db8:0:1::', 6], ['::', 6], ['1:2:3:4:5:6:7:8', 6]] as const) {
      expect(bigIntToIp(ipToBigInt(a), f)).toBe(a);
    }
    expect(bigIntToIp(ipToBigInt('::ffff:10.0.0.1'), 6)).toBe('::ffff:a00:1');
  });

  it('computes networks, nth and last addresses', () => {
    const c = parseCidr('10.1.2.77/24');
    expect(networkCidr(c)).toBe('10.1.2.0/24');
    expect(nthAddress(c, 1n)).toBe('10.1.2.1');
    expect(bigIntToIp(lastAddressOf(c), 4)).toBe('10.1.2.255');
    const v6 = parseCidr('fd00:10::abcd/64');
    expect(networkCidr(v6)).toBe('fd00:10::/64');
    expect(nthAddress(v6, 1n)).toBe('fd00:10::1');
    expect(cidrContains(v6, 'fd00:10::ffff')).toBe(true);
    expect(cidrContains(v6, '10.1.2.3')).toBe(false);
  });

  it('rejects what is not a CIDR, naming the field', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', 'x/24', 'fd00::/129', '10.0.0.0/2a']) {
      expect(() => parseCidr(bad, 'ipam.subnet')).toThrow(/ipam\.subnet/);
    }
  });
});
