import { describe, expect, it } from 'vitest';
import { fnv1a64, shortHash } from '../../../lib/hash.js';
import { bigIntToIp, cidrContains, ipToBigInt, lastAddressOf, networkCidr, nthAddress, parseCidr } from '../../../lib/ip.js';

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

describe('short hashes', () => {
  it('are FNV-1a 64 (published test vectors) and stable', () => {
    expect(fnv1a64('')).toBe(0xcbf29ce484222325n);
    expect(fnv1a64('a')).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv1a64('foobar')).toBe(0x85944171f73967e8n);
    expect(shortHash('foobar', 11)).toBe('85944171f73');
  });
});
