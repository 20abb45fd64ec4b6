import { describe, expect, it } from 'vitest';
import { delegateConfig, gcDelegateConfigs, savedConfigPath, staleSavedConfigs, subnetNetwork } from '../../../../cni-plugins/overlay/plan.js';
import type { SubnetEnv } from '../../../../overlayd/subnet-env.js';
import { conf } from './fixtures.js';

const v4: SubnetEnv = { network: '10.244.0.0/16', subnet: '10.244.3.1/24', mtu: 1450, ipMasq: true };
const dual: SubnetEnv = { ...v4, ipv6Network: 'fd00:244::/48', ipv6Subnet: 'fd00:244:3::1/64' };

describe('the generated delegate config', () => {
  it('is a berth-bridge + berth-host-local config for the node subnet (IPv4)', () => {
    expect(delegateConfig(conf(), v4)).toEqual({
      cniVersion: '1.1.0',
      name: 'overlay',
      type: 'berth-bridge',
      bridge: 'cni0',
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: false,
      mtu: 1450,
      hairpinMode: true,
      ipam: { type: 'berth-host-local', ranges: [[{ subnet: '10.244.3.0/24' }]], routes: [{ dst: '10.244.0.0/16' }] },
    });
  });

  it('never masquerades in the bridge: overlayd does, with --ip-masq', () => {
    expect(delegateConfig(conf(), { ...v4, ipMasq: true }).ipMasq).toBe(false);
    // Not even without overlayd's masquerade: the bridge's would NAT pod-to-pod traffic across nodes.
    expect(delegateConfig(conf(), { ...v4, ipMasq: false }).ipMasq).toBe(false);
  });

  it('adds an IPv6 range and route on a dual-stack node', () => {
    expect(delegateConfig(conf(), dual).ipam).toEqual({
      type: 'berth-host-local',
      ranges: [[{ subnet: '10.244.3.0/24' }], [{ subnet: 'fd00:244:3::/64' }]],
      routes: [{ dst: '10.244.0.0/16' }, { dst: 'fd00:244::/48' }],
    });
  });

  it('has only the IPv6 range on an IPv6-only node', () => {
    const v6only: SubnetEnv = { ipv6Network: 'fd00:244::/48', ipv6Subnet: 'fd00:244:3::1/64', mtu: 1430, ipMasq: false };
    const d = delegateConfig(conf(), v6only);
    expect(d.ipam).toMatchObject({ ranges: [[{ subnet: 'fd00:244:3::/64' }]], routes: [{ dst: 'fd00:244::/48' }] });
    expect(d.mtu).toBe(1430);
  });

  it('lets delegate fields override the generated ones, but not name, cniVersion or ipam', () => {
    const d = delegateConfig(conf({ delegate: { bridge: 'br-pods', isDefaultGateway: false, hairpinMode: false, mtu: 1400, ipMasq: true } }), v4);
    expect(d).toMatchObject({ type: 'berth-bridge', bridge: 'br-pods', isDefaultGateway: false, isGateway: true, hairpinMode: false, mtu: 1400, ipMasq: true, name: 'overlay', cniVersion: '1.1.0' });
  });

  it('keeps the bridge defaults out of a delegate of another type', () => {
    const d = delegateConfig(conf({ delegate: { type: 'ipvlan', master: 'eth0' } }), v4);
    expect(d).toEqual({ cniVersion: '1.1.0', name: 'overlay', type: 'ipvlan', master: 'eth0', ipMasq: false, mtu: 1450, ipam: expect.any(Object) });
  });

  it('merges ipam options and appends the cluster routes to configured ones', () => {
    const d = delegateConfig(conf({ ipam: { dataDir: '/tmp/leases', routes: [{ dst: '192.168.0.0/16' }] } }), v4);
    expect(d.ipam).toEqual({
      type: 'berth-host-local',
      dataDir: '/tmp/leases',
      ranges: [[{ subnet: '10.244.3.0/24' }]],
      routes: [{ dst: '192.168.0.0/16' }, { dst: '10.244.0.0/16' }],
    });
  });

  it('passes runtimeConfig, capabilities and args through', () => {
    const d = delegateConfig(conf({ runtimeConfig: { mac: '0a:58:0a:f4:03:09' }, capabilities: { mac: true }, args: { cni: { x: 1 } } }), v4);
    expect(d).toMatchObject({ runtimeConfig: { mac: '0a:58:0a:f4:03:09' }, capabilities: { mac: true }, args: { cni: { x: 1 } } });
  });

  it('turns the gateway address overlayd writes into the subnet', () => {
    expect(subnetNetwork('10.244.3.1/24', 'BERTH_SUBNET')).toBe('10.244.3.0/24');
    expect(subnetNetwork('fd00:244:3::1/64', 'BERTH_IPV6_SUBNET')).toBe('fd00:244:3::/64');
  });
});

describe('saved configs', () => {
  it('are one file per container ID under dataDir', () => {
    expect(savedConfigPath('/var/lib/cni/berth-overlay', 'abc123')).toBe('/var/lib/cni/berth-overlay/abc123');
  });

  it('GC drops the ones of containers not in the valid list, and never temp files', () => {
    const names = ['keep', 'gone', '.gone.123.tmp', 'other'];
    expect(staleSavedConfigs(names, [{ containerID: 'keep', ifname: 'eth0' }, { containerID: 'other', ifname: 'net1' }])).toEqual(['gone']);
    expect(staleSavedConfigs(names, [])).toEqual(['keep', 'gone', 'other']);
  });

  it('GC is forwarded once per distinct delegate config, at the GC version, without per-pod fields', () => {
    const a = { ...delegateConfig(conf({ cniVersion: '1.0.0' }), v4), runtimeConfig: { mac: 'x' } };
    const b = delegateConfig(conf({ cniVersion: '1.0.0' }), v4);
    const c = delegateConfig(conf(), { ...v4, subnet: '10.244.9.1/24' });
    const out = gcDelegateConfigs([a, b, c], '1.1.0');
    expect(out).toHaveLength(2);
    expect(out.every((d) => d.cniVersion === '1.1.0' && d.runtimeConfig === undefined)).toBe(true);
  });
});
