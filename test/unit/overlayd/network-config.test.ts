import { describe, expect, it } from 'vitest';
import { candidateSubnets, formatNetworkConfig, isLeasableSubnet, parseNetworkConfig } from '../../../overlayd/network-config.js';
import { errorOf } from './fixtures.js';

describe('network config (flannel spelling)', () => {
  it('fills the defaults: /24 subnets, VNI 1, port 8472, the first subnet left out', () => {
    const c = parseNetworkConfig('{"Network":"10.244.0.0/16"}', 'net-conf.json');
    expect(c).toMatchObject({ network: '10.244.0.0/16', subnetLen: 24, subnetMin: '10.244.1.0', subnetMax: '10.244.255.0', enableIPv4: true, enableIPv6: false });
    expect(c.backend).toEqual({ type: 'vxlan', vni: 1, port: 8472, mtu: undefined, directRouting: false });
    const all = [...candidateSubnets(c, 4)];
    expect(all).toHaveLength(255);
    expect(all[0]).toBe('10.244.1.0/24');
  });

  it('honours SubnetMin/SubnetMax and checks leasable subnets', () => {
    const c = parseNetworkConfig('{"Network":"10.10.0.0/16","SubnetLen":26,"SubnetMin":"10.10.3.0","SubnetMax":"10.10.3.192"}', 'x');
    expect([...candidateSubnets(c, 4)]).toEqual(['10.10.3.0/26', '10.10.3.64/26', '10.10.3.128/26', '10.10.3.192/26']);
    expect(isLeasableSubnet(c, '10.10.3.64/26')).toBe(true);
    expect(isLeasableSubnet(c, '10.10.3.32/26')).toBe(false);
    expect(isLeasableSubnet(c, '10.10.4.0/26')).toBe(false);
    expect(isLeasableSubnet(c, '10.10.3.64/24')).toBe(false);
  });

  it('round-trips through its stored form', () => {
    const c = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan","VNI":4,"MTU":1400,"DirectRouting":true}}', 'x');
    expect(c.ipv6SubnetMin).toBe('fd00:10:244:1::');
    expect(parseNetworkConfig(formatNetworkConfig(c), 'y')).toEqual(c);
  });

  it('refuses bad configs with the field named', () => {
    expect(errorOf(() => parseNetworkConfig('{', 'net.json'))).toMatch(/^net\.json: not valid JSON/);
    expect(errorOf(() => parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetLen":16}', 'n'))).toMatch(/SubnetLen: 16 must be longer/);
    expect(errorOf(() => parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0"}', 'n'))).toMatch(/SubnetMin: 10.245.0.0 is outside Network/);
    expect(errorOf(() => parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.2.0"}', 'n'))).toMatch(/SubnetMin .* is after SubnetMax/);
    expect(errorOf(() => parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}', 'n'))).toMatch(/Backend\.Type: only "vxlan"/);
    expect(errorOf(() => parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"VNI":0}}', 'n'))).toMatch(/Backend\.VNI/);
    expect(errorOf(() => parseNetworkConfig('{"EnableIPv6":true}', 'n'))).toMatch(/Network: required/);
    expect(errorOf(() => parseNetworkConfig('{"Network":"10.244.0.0/16","Nework":"x"}', 'n'))).toMatch(/Nework/);
  });
});
