import { describe, expect, it } from 'vitest';
import { buildResult, conflictingBridgeAddresses, hostVethName, planAttachment } from '../../../../cni-plugins/bridge/plan.js';
import { conf } from './fixtures.js';

describe('bridge attachment plan', () => {
  const ipam = { ips: [{ address: '10.22.0.5/24', gateway: '10.22.0.1' }, { address: 'fd22::5/64' }], routes: [{ dst: '10.99.0.0/16' }] };

  it('derives a stable host veth name from the attachment', () => {
    expect(hostVethName('abc', 'eth0')).toBe(hostVethName('abc', 'eth0'));
    expect(hostVethName('abc', 'eth0')).not.toBe(hostVethName('abc', 'eth1'));
    expect(hostVethName('abc', 'eth0')).toMatch(/^veth[0-9a-f]{11}$/);
  });

  it('a gateway bridge gets the gateways, a default route per family and forwarding', () => {
    const plan = planAttachment(conf({ isDefaultGateway: true }), 'c1', 'eth0', ipam);
    expect(plan.addresses).toEqual([
      { cidr: '10.22.0.5/24', family: 4, gateway: '10.22.0.1' },
      { cidr: 'fd22::5/64', family: 6, gateway: 'fd22::1' },
    ]);
    expect(plan.bridgeAddresses).toEqual(['10.22.0.1/24', 'fd22::1/64']);
    expect(plan.forwarding).toEqual([4, 6]);
    expect(plan.routes).toEqual([
      { dst: '10.99.0.0/16', gw: '10.22.0.1' },
      { dst: '0.0.0.0/0', gw: '10.22.0.1' },
      { dst: '::/0', gw: 'fd22::1' },
    ]);
    expect(plan.subnets).toEqual(['10.22.0.0/24', 'fd22::/64']);
  });

  it('a plain bridge adds no gateway address and no default route', () => {
    const plan = planAttachment(conf(), 'c1', 'eth0', { ips: [{ address: '10.22.0.5/24' }], routes: [] });
    expect(plan.bridgeAddresses).toEqual([]);
    expect(plan.routes).toEqual([]);
    expect(plan.addresses[0]?.gateway).toBeUndefined();
  });

  it('refuses a container address equal to its gateway', () => {
    expect(() => planAttachment(conf({ isGateway: true }), 'c', 'eth0', { ips: [{ address: '10.22.0.1/24' }], routes: [] })).toThrow(/gateway address/);
  });

  it('an existing different bridge address in the subnet conflicts unless forceAddress', () => {
    expect(() => conflictingBridgeAddresses(['10.22.0.9/24'], '10.22.0.1/24', false, 'cni0')).toThrow(/forceAddress/);
    expect(conflictingBridgeAddresses(['10.22.0.9/24', '10.23.0.1/24'], '10.22.0.1/24', true, 'cni0')).toEqual(['10.22.0.9/24']);
    expect(conflictingBridgeAddresses(['10.22.0.1/24'], '10.22.0.1/24', false, 'cni0')).toEqual([]);
  });

  it('the result appends to a previous result and points IPs at the container interface', () => {
    const plan = planAttachment(conf({ isGateway: true }), 'c1', 'eth0', ipam);
    const prev = { cniVersion: '1.1.0', interfaces: [{ name: 'lo', sandbox: '/run/netns/x' }] };
    const links = { bridge: { name: 'cni0', mac: 'aa:aa:aa:aa:aa:aa' }, host: { name: plan.hostVeth, mac: 'bb:bb:bb:bb:bb:bb' }, container: { name: 'eth0', mac: 'cc:cc:cc:cc:cc:cc' } };
    const r = buildResult(prev, links, plan, ipam, '/run/netns/x', undefined);
    expect(r.interfaces?.map((i) => i.name)).toEqual(['lo', 'cni0', plan.hostVeth, 'eth0']);
    expect(r.interfaces?.[3]?.sandbox).toBe('/run/netns/x');
    expect(r.ips?.every((i) => i.interface === 3)).toBe(true);
    expect(buildResult(undefined, links, plan, { ...ipam, dns: { nameservers: ['10.0.0.10'] } }, '/x', { search: ['svc'] }).dns).toEqual({ search: ['svc'] });
  });
});
