import { describe, expect, it } from 'vitest';
import { addressFamilies } from '../../../../lib/cni/result.js';

describe('address families of a result', () => {
  it('are the families of its IPs, or both when unknown', () => {
    expect(addressFamilies({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }] })).toEqual([4]);
    expect(addressFamilies({ cniVersion: '1.1.0', ips: [{ address: 'fd00::2/64' }, { address: '10.0.0.2/24' }] })).toEqual([4, 6]);
    expect(addressFamilies(undefined)).toEqual([4, 6]);
    expect(addressFamilies({ cniVersion: '1.1.0', ips: [] })).toEqual([4, 6]);
  });
});
