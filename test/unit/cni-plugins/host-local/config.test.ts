import { describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import type { CniCommand } from '../../../../lib/cni/types.js';
import { defaultDataDir, parseHostLocalConfig, requestedFromCniArgs, uniqueRequests } from '../../../../cni-plugins/host-local/config.js';
import { formatAddress, formatIp, formatSubnet } from '../../../../lib/ip.js';

function netconf(ipam: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.0.0', name: 'podnet', type: 'berth-bridge', ...(ipam === undefined ? {} : { ipam: { type: 'berth-host-local', ...ipam } }), ...extra };
}

function parse(ipam: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}, command: CniCommand = 'ADD') {
  return parseHostLocalConfig(netconf(ipam, extra), command);
}

/** The config is refused with code 7 and a message that starts with the offending field path. */
function expectRefused(fn: () => unknown, field: string, detail?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected an error naming ${field}`).toBeInstanceOf(BerthError);
  const err = caught as BerthError;
  expect(err.cniCode).toBe(7);
  expect(err.message.startsWith(`${field}: `), err.message).toBe(true);
  if (detail) expect(err.message).toMatch(detail);
}

function rangeText(conf: ReturnType<typeof parse>, set: number, index: number) {
  const r = conf.ranges[set]?.[index];
  if (!r) throw new Error('no such range');
  return {
    subnet: formatSubnet(r.subnet),
    rangeStart: formatIp(r.rangeStart, r.family),
    rangeEnd: formatIp(r.rangeEnd, r.family),
    gateway: formatIp(r.gateway, r.family),
    field: r.field,
  };
}

describe('host-local config: ranges and defaults', () => {
  it('defaults an IPv4 range to start .1 (the gateway .1 is skipped later), end .254, gateway .1', () => {
    const conf = parse({ ranges: [[{ subnet: '10.22.0.0/24' }]] });
    expect(rangeText(conf, 0, 0)).toEqual({ subnet: '10.22.0.0/24', rangeStart: '10.22.0.1', rangeEnd: '10.22.0.254', gateway: '10.22.0.1', field: 'ipam.ranges[0][0]' });
  });

  it('defaults an IPv6 range to end at the last address of the subnet', () => {
    const conf = parse({ ranges: [[{ subnet: 'fd00:22::/64' }]] });
    expect(rangeText(conf, 0, 0)).toMatchObject({ rangeStart: 'fd00:22::1', rangeEnd: 'fd00:22::ffff:ffff:ffff:ffff', gateway: 'fd00:22::1' });
  });

  it('keeps explicit rangeStart, rangeEnd and gateway', () => {
    const conf = parse({ ranges: [[{ subnet: '10.10.0.0/16', rangeStart: '10.10.1.20', rangeEnd: '10.10.3.50', gateway: '10.10.0.254' }]] });
    expect(rangeText(conf, 0, 0)).toMatchObject({ rangeStart: '10.10.1.20', rangeEnd: '10.10.3.50', gateway: '10.10.0.254' });
  });

  it('reads several range sets (dual stack: one address per set) and several ranges per set', () => {
    const conf = parse({ ranges: [[{ subnet: '10.10.0.0/16' }, { subnet: '172.16.5.0/24' }], [{ subnet: '3ffe:ffff:0:01ff::/64' }]] });
    expect(conf.ranges.map((s) => s.length)).toEqual([2, 1]);
    expect(rangeText(conf, 1, 0).subnet).toBe('3ffe:ffff:0:1ff::/64');
  });

  it('prepends the legacy top-level subnet/rangeStart/rangeEnd/gateway as its own range set', () => {
    const conf = parse({ subnet: '10.1.0.0/24', rangeStart: '10.1.0.10', rangeEnd: '10.1.0.20', gateway: '10.1.0.254', ranges: [[{ subnet: 'fd00::/64' }]] });
    expect(conf.ranges).toHaveLength(2);
    expect(rangeText(conf, 0, 0)).toEqual({ subnet: '10.1.0.0/24', rangeStart: '10.1.0.10', rangeEnd: '10.1.0.20', gateway: '10.1.0.254', field: 'ipam' });
  });

  it('puts runtimeConfig.ipRanges (capability "ipRanges") in front of the configured ranges, as the reference does', () => {
    const conf = parse({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { runtimeConfig: { ipRanges: [[{ subnet: '10.99.0.0/24' }]] } });
    expect(conf.ranges).toHaveLength(2);
    expect(rangeText(conf, 0, 0)).toMatchObject({ subnet: '10.99.0.0/24', field: 'runtimeConfig.ipRanges[0][0]' });
    expect(rangeText(conf, 1, 0)).toMatchObject({ subnet: '10.1.0.0/24', field: 'ipam.ranges[0][0]' });
  });

  it('takes runtimeConfig.ipRanges alone when the config has no ranges', () => {
    const conf = parse({}, { runtimeConfig: { ipRanges: [[{ subnet: '10.99.0.0/24' }]] } });
    expect(conf.ranges).toHaveLength(1);
  });

  it('defaults dataDir to /var/lib/cni/networks and takes the network name from the config', () => {
    const conf = parse({ ranges: [[{ subnet: '10.1.0.0/24' }]] });
    expect(conf.dataDir).toBe(defaultDataDir);
    expect(defaultDataDir).toBe('/var/lib/cni/networks');
    expect(conf.network).toBe('podnet');
    expect(parse({ ranges: [[{ subnet: '10.1.0.0/24' }]], dataDir: '/run/ipam', resolvConf: '/etc/resolv.conf' })).toMatchObject({ dataDir: '/run/ipam', resolvConf: '/etc/resolv.conf' });
  });
});

describe('host-local config: every refusal names the field', () => {
  const ok = [[{ subnet: '10.1.0.0/24' }]];

  it('refuses a missing or unsafe network name', () => {
    expectRefused(() => parseHostLocalConfig({ cniVersion: '1.0.0', type: 'x', ipam: { ranges: ok } }, 'ADD'), 'name');
    expectRefused(() => parse({ ranges: ok }, { name: '../etc' }), 'name', /not a valid network name/);
  });

  it('refuses a missing or non-object ipam', () => {
    expectRefused(() => parse(undefined), 'ipam', /required/);
    expectRefused(() => parseHostLocalConfig({ ...netconf(undefined), ipam: 'host-local' }, 'ADD'), 'ipam', /object/);
  });

  it('refuses a config without any range', () => {
    expectRefused(() => parse({}), 'ipam.ranges', /no IP ranges/);
    expectRefused(() => parse({ ranges: [] }), 'ipam.ranges', /no IP ranges/);
  });

  it('refuses malformed range sets and ranges', () => {
    expectRefused(() => parse({ ranges: { subnet: '10.0.0.0/8' } }), 'ipam.ranges', /array/);
    expectRefused(() => parse({ ranges: [{ subnet: '10.0.0.0/8' }] }), 'ipam.ranges[0]', /array of ranges/);
    expectRefused(() => parse({ ranges: [[]] }), 'ipam.ranges[0]', /at least one range/);
    expectRefused(() => parse({ ranges: [['10.0.0.0/8']] }), 'ipam.ranges[0][0]', /range object/);
  });

  it('refuses a missing, malformed or host-bits subnet', () => {
    expectRefused(() => parse({ ranges: [[{}]] }), 'ipam.ranges[0][0].subnet', /required/);
    expectRefused(() => parse({ ranges: [[{ subnet: 42 }]] }), 'ipam.ranges[0][0].subnet', /string/);
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.0' }]] }), 'ipam.ranges[0][0].subnet', /CIDR/);
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.0/24' }, { subnet: '10.300.0.0/24' }]] }), 'ipam.ranges[0][1].subnet', /CIDR/);
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.5/24' }]] }), 'ipam.ranges[0][0].subnet', /host bits.*10\.1\.0\.0\/24/);
  });

  it('refuses /31, /32, /127 and /128 as too small to allocate from', () => {
    for (const subnet of ['10.1.0.0/31', '10.1.0.1/32', 'fd00::/127', 'fd00::1/128']) {
      expectRefused(() => parse({ ranges: [[{ subnet }]] }), 'ipam.ranges[0][0].subnet', /too small to allocate from/);
    }
    expect(parse({ ranges: [[{ subnet: '10.1.0.0/30' }]] }).ranges).toHaveLength(1);
  });

  it('refuses rangeStart, rangeEnd and gateway that are malformed or outside the subnet', () => {
    for (const key of ['rangeStart', 'rangeEnd', 'gateway']) {
      const field = `ipam.ranges[1][0].${key}`;
      const set = (value: string) => [[{ subnet: 'fd00::/64' }], [{ subnet: '10.1.0.0/24', [key]: value }]];
      expectRefused(() => parse({ ranges: set('10.1.0') }), field, /IP address/);
      expectRefused(() => parse({ ranges: set('10.2.0.9') }), field, /10\.2\.0\.9 is not in subnet 10\.1\.0\.0\/24/);
      expectRefused(() => parse({ ranges: set('fd00::9') }), field, /IPv6, not in subnet/);
    }
  });

  it('refuses a rangeEnd before the rangeStart', () => {
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.0/24', rangeStart: '10.1.0.50', rangeEnd: '10.1.0.40' }]] }), 'ipam.ranges[0][0].rangeEnd', /before rangeStart/);
  });

  it('refuses mixing address families inside one range set', () => {
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.0/24' }, { subnet: 'fd00::/64' }]] }), 'ipam.ranges[0][1].subnet', /one address family/);
  });

  it('refuses overlapping ranges within a set and between sets', () => {
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.0/16' }, { subnet: '10.1.2.0/24' }]] }), 'ipam.ranges[0][1]', /overlaps ipam\.ranges\[0\]\[0\]/);
    expectRefused(() => parse({ ranges: [[{ subnet: '10.2.0.0/24' }], [{ subnet: '10.1.0.0/24' }], [{ subnet: '10.1.0.0/25' }]] }), 'ipam.ranges[2]', /overlaps range set ipam\.ranges\[1\]/);
    expectRefused(() => parse({ subnet: '10.1.0.0/24', ranges: [[{ subnet: '10.1.0.128/25' }]] }), 'ipam.ranges[0]', /overlaps range set ipam$/);
    // Disjoint allocation ranges inside one subnet do not overlap.
    expect(parse({ ranges: [[{ subnet: '10.1.0.0/24', rangeEnd: '10.1.0.99' }], [{ subnet: '10.1.0.0/24', rangeStart: '10.1.0.100' }]] }).ranges).toHaveLength(2);
  });

  it('refuses legacy range fields without the legacy subnet', () => {
    expectRefused(() => parse({ rangeStart: '10.1.0.5', ranges: ok }), 'ipam.rangeStart', /ipam\.subnet/);
  });

  it('names runtimeConfig.ipRanges when the runtime-supplied ranges are bad', () => {
    expectRefused(() => parse({ ranges: ok }, { runtimeConfig: { ipRanges: [[{ subnet: '10.9.0.0/32' }]] } }), 'runtimeConfig.ipRanges[0][0].subnet', /too small/);
    expectRefused(() => parse({ ranges: ok }, { runtimeConfig: { ipRanges: 'x' } }), 'runtimeConfig.ipRanges', /array/);
  });
});

describe('host-local config: routes, requested addresses', () => {
  it('reads routes and prints them canonically, host bits kept like the reference', () => {
    const conf = parse({
      ranges: [[{ subnet: '10.1.0.0/24' }]],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.10.5.1' }, { dst: '3ffe:ffff:0:01ff::1/64' }, { dst: '10.9.0.0/16', priority: 5, table: 100 }],
    });
    expect(conf.routes).toEqual([
      { dst: '0.0.0.0/0' },
      { dst: '192.168.0.0/16', gw: '10.10.5.1' },
      { dst: '3ffe:ffff:0:1ff::1/64' },
      { dst: '10.9.0.0/16', priority: 5, table: 100 },
    ]);
  });

  it('refuses malformed routes naming the route and key', () => {
    const r = (routes: unknown) => () => parse({ ranges: [[{ subnet: '10.1.0.0/24' }]], routes });
    expectRefused(r({ dst: '0.0.0.0/0' }), 'ipam.routes', /array/);
    expectRefused(r(['0.0.0.0/0']), 'ipam.routes[0]', /dst/);
    expectRefused(r([{ gw: '10.1.0.1' }]), 'ipam.routes[0].dst', /required/);
    expectRefused(r([{ dst: '0.0.0.0/0' }, { dst: 'default' }]), 'ipam.routes[1].dst', /CIDR/);
    expectRefused(r([{ dst: '0.0.0.0/0', gw: 'router' }]), 'ipam.routes[0].gw', /IP address/);
    expectRefused(r([{ dst: '::/0', gw: '10.1.0.1' }]), 'ipam.routes[0].gw', /family/);
    expectRefused(r([{ dst: '::/0', mtu: -1 }]), 'ipam.routes[0].mtu', /integer/);
  });

  it('collects requested addresses from args.cni.ips and runtimeConfig.ips, plain or with a prefix', () => {
    const conf = parse({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { args: { cni: { ips: ['10.1.0.7'] } }, runtimeConfig: { ips: ['10.1.0.8/24', 'fd00::8'] } });
    expect(conf.requestedIps.map((r) => [formatAddress(r.address), r.field])).toEqual([
      ['10.1.0.7', 'args.cni.ips[0]'],
      ['10.1.0.8', 'runtimeConfig.ips[0]'],
      ['fd00::8', 'runtimeConfig.ips[1]'],
    ]);
  });

  it('refuses a malformed requested address naming where it came from', () => {
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { runtimeConfig: { ips: ['10.1.0.7', 'ten'] } }), 'runtimeConfig.ips[1]', /IP address/);
    expectRefused(() => parse({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { args: { cni: { ips: [7] } } }), 'args.cni.ips[0]', /IP address/);
  });

  it('ignores requested addresses for DEL, so a bad request cannot block a release', () => {
    const conf = parse({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { runtimeConfig: { ips: ['ten'] } }, 'DEL');
    expect(conf.requestedIps).toEqual([]);
  });

  it('reads CNI_ARGS IP= with one or several comma-separated addresses, refusing junk with code 4', () => {
    expect(requestedFromCniArgs(undefined)).toEqual([]);
    expect(requestedFromCniArgs('10.1.0.9,fd00::9').map((r) => formatAddress(r.address))).toEqual(['10.1.0.9', 'fd00::9']);
    try {
      requestedFromCniArgs('10.1.0.9,nine');
      expect.unreachable('junk in CNI_ARGS IP must be refused');
    } catch (err) {
      expect((err as BerthError).cniCode).toBe(4);
      expect((err as BerthError).message).toMatch(/^CNI_ARGS IP: .*"nine"/);
    }
  });

  it('drops repeated requests for one address, keeping the first', () => {
    const reqs = uniqueRequests([...requestedFromCniArgs('10.1.0.9'), ...requestedFromCniArgs('10.1.0.9,10.1.0.10')]);
    expect(reqs.map((r) => formatAddress(r.address))).toEqual(['10.1.0.9', '10.1.0.10']);
  });
});
