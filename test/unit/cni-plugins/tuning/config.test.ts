import { describe, expect, it } from 'vitest';
import { defaultDataDir, macOf, parseTuningConfig, sysctlKeyPath } from '../../../../cni-plugins/tuning/config.js';

const parse = (fields: Record<string, unknown>) => parseTuningConfig({ cniVersion: '1.1.0', name: 'net', type: 'berth-tuning', ...fields }, 'ADD');

describe('berth-tuning config', () => {
  it('reads the reference fields with berth defaults', () => {
    expect(parse({ mtu: 1400, promisc: true, allmulti: false, txQLen: 500, sysctl: { 'net.core.somaxconn': '512' } })).toEqual({
      network: 'net', sysctl: [{ key: 'net.core.somaxconn', value: '512' }], mac: undefined, runtimeMac: undefined,
      mtu: 1400, promisc: true, allmulti: false, txQLen: 500, dataDir: defaultDataDir,
    });
  });

  it('maps dotted and slashed keys to /proc/sys paths and puts the interface in for IFNAME', () => {
    expect(sysctlKeyPath('net.ipv4.conf.IFNAME.rp_filter', 'eth0')).toBe('net/ipv4/conf/eth0/rp_filter');
    expect(sysctlKeyPath('net/ipv4/conf/eth0.100/rp_filter', 'eth0')).toBe('net/ipv4/conf/eth0.100/rp_filter');
  });

  it('refuses keys outside net.*, climbing out of it, or empty segments, naming the key', () => {
    expect(() => parse({ sysctl: { 'kernel.hostname': 'x' } })).toThrow(/sysctl\["kernel.hostname"\]: only network sysctls/);
    expect(() => parse({ sysctl: { 'net/../kernel/hostname': 'x' } })).toThrow(/'\.\.'/);
    expect(() => parse({ sysctl: { 'net..core': 'x' } })).toThrow(/not a valid sysctl name/);
    expect(() => parse({ sysctl: { net: 'x' } })).toThrow(/only network sysctls/);
    expect(() => parse({ sysctl: { 'net.core.somaxconn': 5 } })).toThrow(/expected a string value/);
  });

  it('picks the MAC as the reference: runtimeConfig.mac, then CNI_ARGS MAC, then args.cni.mac or mac', () => {
    const none = new Map<string, string>();
    const arg = new Map([['MAC', 'c2:00:00:00:00:03']]);
    expect(macOf(parse({ mac: 'C2:00:00:00:00:01' }), none)).toBe('c2:00:00:00:00:01');
    expect(macOf(parse({ mac: 'c2:00:00:00:00:01' }), arg)).toBe('c2:00:00:00:00:03');
    expect(macOf(parse({ mac: 'c2:00:00:00:00:01', runtimeConfig: { mac: 'c2:00:00:00:00:02' } }), arg)).toBe('c2:00:00:00:00:02');
    expect(macOf(parse({ mac: 'c2:00:00:00:00:01', args: { cni: { mac: 'c2:00:00:00:00:04' } } }), none)).toBe('c2:00:00:00:00:04');
    expect(() => parse({ mac: 'nope' })).toThrow(/^mac: "nope" is not a MAC/);
    expect(() => parse({ runtimeConfig: { mac: '01:00:5e:00:00:01' } })).toThrow(/runtimeConfig.mac: .* multicast/);
    expect(() => parse({ mtu: 20 })).toThrow(/mtu/);
  });
});
