import { describe, expect, it } from 'vitest';
import { parseBandwidthConfig } from '../../../../cni-plugins/bandwidth/config.js';
import { ifbAlias, ifbName, parseIfbAlias, tbfFor } from '../../../../cni-plugins/bandwidth/plan.js';

const parse = (fields: Record<string, unknown>) => parseBandwidthConfig({ cniVersion: '1.1.0', name: 'net', type: 'berth-bandwidth', ...fields }, 'ADD');

describe('berth-bandwidth config', () => {
  it('reads both directions in bits; absent or zero means unshaped', () => {
    expect(parse({ ingressRate: 1000, ingressBurst: 800, egressRate: 0, egressBurst: 0 })).toEqual({ network: 'net', ingress: { rate: 1000, burst: 800 }, egress: undefined, source: '', subnets: undefined });
    expect(parse({})).toMatchObject({ ingress: undefined, egress: undefined });
  });

  it('takes the bandwidth capability when the config has no limits, and the config when it has (as the reference)', () => {
    const runtimeConfig = { bandwidth: { egressRate: 5000, egressBurst: 4000 } };
    expect(parse({ runtimeConfig })).toMatchObject({ ingress: undefined, egress: { rate: 5000, burst: 4000 }, source: 'runtimeConfig.bandwidth.' });
    expect(parse({ ingressRate: 1000, ingressBurst: 800, runtimeConfig })).toMatchObject({ ingress: { rate: 1000 }, egress: undefined, source: '' });
  });

  it('refuses a rate without a burst and the reverse, negative or fractional values, and a 4 GiB bucket, naming the field', () => {
    expect(() => parse({ ingressRate: 1000 })).toThrow(/^ingressBurst: must be set/);
    expect(() => parse({ egressBurst: 1000 })).toThrow(/^egressRate: must be set/);
    expect(() => parse({ egressRate: -5, egressBurst: 1 })).toThrow(/egressRate: expected a non-negative integer/);
    expect(() => parse({ egressRate: 1.5, egressBurst: 1 })).toThrow(/egressRate/);
    expect(() => parse({ ingressRate: 1000, ingressBurst: 8 * 0xffffffff })).toThrow(/ingressBurst: .* 4 GiB/);
    expect(() => parse({ ingressRate: 4, ingressBurst: 1000 })).toThrow(/ingressRate: 4 bits\/s/);
    expect(() => parse({ runtimeConfig: { bandwidth: { ingressRate: 10 } } })).toThrow(/^runtimeConfig\.bandwidth\.ingressBurst/);
  });

  it('reads shapedSubnets or unshapedSubnets as address bytes and prefixes; both, or a bad CIDR, is invalid', () => {
    const limits = { ingressRate: 1000, ingressBurst: 800 };
    expect(parse({ ...limits, unshapedSubnets: ['10.1.0.0/16', 'fd00::/8'] }).subnets).toEqual({
      mode: 'unshaped',
      list: [
        { family: 4, address: Buffer.from([10, 1, 0, 0]), prefixLength: 16, text: '10.1.0.0/16' },
        { family: 6, address: Buffer.from('fd000000000000000000000000000000', 'hex'), prefixLength: 8, text: 'fd00::/8' },
      ],
    });
    expect(parse({ ...limits, runtimeConfig: {}, shapedSubnets: ['192.0.2.0/24'] }).subnets?.mode).toBe('shaped');
    expect(() => parse({ ...limits, shapedSubnets: ['10.0.0.0/8'], unshapedSubnets: ['10.1.0.0/16'] })).toThrow(expect.objectContaining({ cniCode: 7, message: expect.stringMatching(/set one of the two/) }));
    expect(() => parse({ ...limits, shapedSubnets: ['nope'] })).toThrow(expect.objectContaining({ cniCode: 7, message: expect.stringMatching(/^shapedSubnets\[0\]/) }));
    expect(parse({ ...limits, shapedSubnets: [] }).subnets).toBeUndefined();
  });
});

describe('berth-bandwidth plan', () => {
  it('names the ifb bwp + 12 hex digits of network and container, stable and within IFNAMSIZ', () => {
    const name = ifbName('berth', 'abc');
    expect(name).toMatch(/^bwp[0-9a-f]{12}$/);
    expect(ifbName('berth', 'abc')).toBe(name);
    expect(ifbName('other', 'abc')).not.toBe(name);
  });

  it('labels the ifb with its attachment and reads the label back', () => {
    const a = { network: 'berth', containerId: 'c1', ifname: 'eth0' };
    expect(parseIfbAlias(ifbAlias(a))).toEqual(a);
    expect(parseIfbAlias('something else')).toBeUndefined();
    expect(parseIfbAlias(undefined)).toBeUndefined();
  });

  it('turns bits into the bytes a TBF counts, with 25 ms of queue at the rate on top of the bucket', () => {
    expect(tbfFor({ rate: 10_000_000, burst: 2_000_000 })).toEqual({ rate: 1_250_000, burst: 250_000, limit: 31_250 + 250_000 });
  });
});
