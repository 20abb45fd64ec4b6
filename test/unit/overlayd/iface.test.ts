import { describe, expect, it } from 'vitest';
import { publicIPv6Of } from '../../../overlayd/iface.js';
import type { AddressInfo } from '../../../lib/netlink/rtnl.js';

describe('the IPv6 address a node publishes', () => {
  const addr = (address: string, o: Partial<AddressInfo> = {}): AddressInfo => ({ index: 2, family: 6, address, prefixLength: 64, cidr: `${address}/64`, scope: 0, flags: 0, ...o });

  it('is a global address of the underlay interface, never link-local nor another interface', () => {
    expect(publicIPv6Of([addr('fe80::1', { scope: 253 }), addr('fd13::9', { index: 3 }), addr('fd13::11')], 2)).toBe('fd13::11');
    expect(publicIPv6Of([addr('fe80::1', { scope: 253 })], 2)).toBeUndefined();
  });

  it('skips tentative, DAD-failed, deprecated and temporary addresses', () => {
    const bad = [addr('fd13::1', { flags: 0x40 }), addr('fd13::2', { flags: 0x08 }), addr('fd13::3', { flags: 0x20 }), addr('fd13::4', { flags: 0x01 })];
    expect(publicIPv6Of(bad, 2)).toBeUndefined();
    expect(publicIPv6Of([...bad, addr('fd13::5', { flags: 0x80 /* permanent */ })], 2)).toBe('fd13::5');
  });
});
