import { describe, expect, it } from 'vitest';
import { parseBridgeConfig } from '../../../../cni-plugins/bridge/config.js';
import { buildResult, conflictingBridgeAddresses, hostVethName, planAttachment } from '../../../../cni-plugins/bridge/plan.js';

const base = { cniVersion: '1.0.0', name: 'net', type: 'berth-bridge', ipam: { type: 'berth-host-local' } };
const conf = (over: Record<string, unknown> = {}) => parseBridgeConfig({ ...base, ...over }, 'ADD');

describe('bridge config', () => {
  it('has the reference defaults', () => {
    expect(conf()).toMatchObject({ bridge: 'cni0', isGateway: false, ipMasq: false, hairpinMode: false, vlan: 0, enableDad: false, macSpoofCheck: false, ipamType: 'berth-host-local' });
  });

  it('isDefaultGateway implies isGateway', () => {
    expect(conf({ isDefaultGateway: true }).isGateway).toBe(true);
  });

  it('accepts "ipam": {} as a layer-2 network', () => {
    expect(conf({ ipam: {} }).ipamType).toBeUndefined();
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['missing ipam', { ipam: undefined }, /^ipam: required/],
    ['bridge name too long', { bridge: 'a-very-long-bridge-name' }, /^bridge: /],
    ['mtu out of range', { mtu: 20 }, /^mtu: expected an integer from 68 to 65535, got 20/],
    ['vlan out of range', { vlan: 5000 }, /^vlan: .*5000/],
    ['ipMasq not a boolean', { ipMasq: 'yes' }, /^ipMasq: expected true or false, got "yes"/],
    ['unknown masquerade backend', { ipMasqBackend: 'pf' }, /^ipMasqBackend: expected one of iptables, nftables, got "pf"/],
    ['ipam type with a path', { ipam: { type: '../x' } }, /^ipam\.type: /],
    ['bad MAC', { runtimeConfig: { mac: 'zz' } }, /^runtimeConfig\.mac: /],
    ['dns nameservers not a list', { dns: { nameservers: '1.1.1.1' } }, /^dns\.nameservers: /],
    ['vlanTrunk', { vlanTrunk: [{ id: 5 }] }, /^vlanTrunk: .* not supported/],
  ];
  for (const [name, over, msg] of bad) {
    it(`rejects ${name} with a message naming the field`, () => {
      const raw: Record<string, unknown> = { ...base, ...over };
      if ('ipam' in over && over.ipam === undefined) delete raw.ipam;
      expect(() => parseBridgeConfig(raw, 'ADD')).toThrow(msg);
    });
  }
});

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
