import { describe, expect, it } from 'vitest';
import { compareVersions, convertResult, parseResult } from '../../../../lib/cni/version.js';

describe('result conversion between spec versions', () => {
  it('round-trips a 0.4.0 result through the internal shape', () => {
    const v04 = { cniVersion: '0.4.0', interfaces: [{ name: 'eth0', sandbox: '/run/netns/a' }], ips: [{ version: '4', address: '10.0.0.2/24', interface: 0 }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['10.0.0.10'] } };
    expect(convertResult(parseResult(v04), '0.4.0')).toEqual(v04);
  });

  it('drops 1.1.0 fields for 1.0.0 and keeps them for 1.1.0', () => {
    const r = parseResult({ cniVersion: '1.1.0', interfaces: [{ name: 'eth0', mtu: 9000, socketPath: '/s', pciID: '0000:00:01.0' }], routes: [{ dst: '::/0', table: 100, scope: 0, mtu: 1400, advmss: 1360, priority: 5 }] });
    expect(convertResult(r, '1.0.0')).toEqual({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], routes: [{ dst: '::/0' }], dns: {} });
    expect(convertResult(r, '1.1.0')).toMatchObject({ interfaces: [{ mtu: 9000, socketPath: '/s', pciID: '0000:00:01.0' }], routes: [{ table: 100, advmss: 1360 }] });
  });

  it('rejects a prevResult of an unknown version', () => {
    expect(() => parseResult({ cniVersion: '0.2.0' })).toThrow(/0\.2\.0/);
  });

  it('orders versions numerically', () => {
    expect(compareVersions('0.10.0', '0.4.0')).toBeGreaterThan(0);
    expect(compareVersions('1.0.0', '1.0.0')).toBe(0);
  });
});
