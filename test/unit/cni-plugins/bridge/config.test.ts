import { describe, expect, it } from 'vitest';
import { parseBridgeConfig } from '../../../../cni-plugins/bridge/config.js';
import { base, conf } from './fixtures.js';

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
