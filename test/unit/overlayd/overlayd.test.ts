import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseArgs } from '../../../overlayd/config.js';
import { overlayMtu, VxlanDataPlane, vtepAddress } from '../../../overlayd/dataplane.js';
import { publicIPv6Of } from '../../../overlayd/iface.js';
import { FileLeaseStore } from '../../../overlayd/lease/file.js';
import { iptablesMasqPresent, iptablesMasqRemove, iptablesMasqSetup, masqRules, nftMasqSetup } from '../../../overlayd/masq.js';
import { candidateSubnets, formatNetworkConfig, isLeasableSubnet, parseNetworkConfig } from '../../../overlayd/network-config.js';
import { formatSubnetEnv, parseSubnetEnv } from '../../../overlayd/subnet-env.js';
import { leaseKey, type Lease } from '../../../overlayd/types.js';
import type { AddressInfo, RtnlSession } from '../../../lib/netlink/rtnl.js';

const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected an error');
};

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

describe('subnet.env', () => {
  it('round-trips and names the bad key', () => {
    const env = { network: '10.244.0.0/16', subnet: '10.244.3.1/24', mtu: 1450, ipMasq: true };
    const text = formatSubnetEnv(env);
    expect(text).toBe('BERTH_NETWORK=10.244.0.0/16\nBERTH_SUBNET=10.244.3.1/24\nBERTH_MTU=1450\nBERTH_IPMASQ=true\n');
    expect(parseSubnetEnv(text, 'f')).toEqual(env);
    expect(errorOf(() => parseSubnetEnv('BERTH_NETWORK=10.244.0.0/16\nBERTH_SUBNET=10.244.3.1/24\nBERTH_MTU=big\n', '/run/x'))).toMatch(/^\/run\/x: BERTH_MTU/);
    expect(errorOf(() => parseSubnetEnv('BERTH_MTU=1450\n', '/run/x'))).toMatch(/neither BERTH_SUBNET/);
  });
});

describe('berth-overlayd flags', () => {
  it('reads flags over environment over the YAML file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'overlayd-args-'));
    try {
      const file = join(dir, 'c.yaml');
      writeFileSync(file, 'leaseStore: etcd\netcdPrefix: /from/file\nresyncInterval: 30s\n');
      const c = parseArgs(['--config', file, '--etcd-endpoints', 'http://10.0.0.1:2379,http://10.0.0.2:2379', '--ip-masq', '--iface', 'eth1', '--iface', 'eth2'], { BERTH_OVERLAY_ETCD_PREFIX: '/from/env', BERTH_OVERLAY_LEASE_TTL: '90s' });
      expect(c).toMatchObject({ leaseStore: 'etcd', etcdPrefix: '/from/env', etcdEndpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], ipMasq: true, iface: ['eth1', 'eth2'], resyncInterval: 30_000, leaseTtl: 90_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says what is wrong', () => {
    expect(errorOf(() => parseArgs(['--lease-store', 'consul'], {}))).toMatch(/leaseStore/);
    expect(errorOf(() => parseArgs(['--bogus', 'x'], {}))).toMatch(/unknown flag --bogus/);
    expect(errorOf(() => parseArgs(['--lease-store', 'file'], {}))).toMatch(/networkConfig: required with the file lease store/);
    expect(errorOf(() => parseArgs(['--lease-store', 'kube', '--network-config', '/x'], {}))).toMatch(/nodeName: required/);
    expect(errorOf(() => parseArgs(['--resync-interval', 'soon'], {}))).toMatch(/resyncInterval: expected a duration/);
    expect(errorOf(() => parseArgs(['--iface-regex', '(', '--network-config', '/x'], {}))).toMatch(/ifaceRegex/);
    expect(parseArgs(['--help'], {})).toBe('help');
    expect(parseArgs(['--lease-store', 'kube', '--network-config', '/x'], { NODE_NAME: 'n1' })).toMatchObject({ nodeName: 'n1' });
  });
});

describe('masquerade rules', () => {
  const scope = { family: 4 as const, network: '10.244.0.0/16', subnet: '10.244.3.0/24' };

  it('keeps pod-to-pod and inbound-to-local traffic, masquerades the rest', () => {
    expect(masqRules(scope).map((r) => r.join(' '))).toEqual([
      '-s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN',
      '! -s 10.244.0.0/16 -d 10.244.3.0/24 -j RETURN',
      '-s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully',
      '! -s 10.244.0.0/16 -d 10.244.0.0/16 -j MASQUERADE --random-fully',
    ]);
    expect(iptablesMasqSetup(scope, true)).toContain('-I POSTROUTING 1 -m comment');
    expect(iptablesMasqSetup(scope, false)).not.toContain('POSTROUTING');
    expect(nftMasqSetup([scope])).toMatch(/delete table inet berth-overlay\ntable inet berth-overlay \{/);
  });

  it('finds and removes its chain in iptables-save output', () => {
    const saved = ['*nat', ':POSTROUTING ACCEPT [0:0]', ':BERTH-OVERLAY-MASQ - [0:0]', '-A POSTROUTING -m comment --comment "x" -j BERTH-OVERLAY-MASQ', ...masqRules(scope).map((r) => `-A BERTH-OVERLAY-MASQ ${r.join(' ')}`), 'COMMIT'].join('\n');
    expect(iptablesMasqPresent(saved, scope)).toEqual({ jump: true, chain: true });
    expect(iptablesMasqPresent(saved.replace(/-A BERTH-OVERLAY-MASQ -s.*RETURN\n/, ''), scope).chain).toBe(false);
    expect(iptablesMasqRemove(saved)).toBe('*nat\n-D POSTROUTING -m comment --comment "x" -j BERTH-OVERLAY-MASQ\n-F BERTH-OVERLAY-MASQ\n-X BERTH-OVERLAY-MASQ\nCOMMIT\n');
    expect(iptablesMasqRemove('*nat\nCOMMIT\n')).toBeUndefined();
  });
});

describe('data plane entries per peer', () => {
  const log = pino({ level: 'silent' });
  const underlay = { index: 2, name: 'eth0', mtu: 1500, address: '192.168.1.10', cidr: '192.168.1.10/24', publicIP: '192.168.1.10' };
  const peer = (publicIP: string, subnet: string): Lease => ({ subnet, attrs: { publicIP, backendType: 'vxlan', backendData: { vtepMAC: '0a:00:00:00:00:01', vni: 1 } } });

  it('routes via the VTEP address onlink, with neighbour and FDB entries', () => {
    const dp = new VxlanDataPlane({} as RtnlSession, { family: 4, vni: 1, port: 8472, mtu: 1450, directRouting: false, underlay, log });
    expect(vtepAddress('10.244.7.0/24')).toBe('10.244.7.0');
    expect(dp.entriesFor(peer('192.168.1.11', '10.244.7.0/24'))).toEqual({
      route: { dst: '10.244.7.0/24', gw: '10.244.7.0', index: 0, onlink: true },
      neighbor: { ip: '10.244.7.0', mac: '0a:00:00:00:00:01' },
      fdb: { mac: '0a:00:00:00:00:01', dst: '192.168.1.11' },
    });
  });

  it('with DirectRouting, routes straight to peers on our L2 subnet only', () => {
    const dp = new VxlanDataPlane({} as RtnlSession, { family: 4, vni: 1, port: 8472, mtu: 1450, directRouting: true, underlay, log });
    expect(dp.entriesFor(peer('192.168.1.11', '10.244.7.0/24'))).toEqual({ route: { dst: '10.244.7.0/24', gw: '192.168.1.11', index: 2 } });
    expect(dp.entriesFor(peer('192.168.9.11', '10.244.8.0/24'))?.fdb).toEqual({ mac: '0a:00:00:00:00:01', dst: '192.168.9.11' });
    expect(leaseKey({ subnet: '10.244.7.0/24', ipv6Subnet: 'fd00::/64' })).toBe('10.244.7.0-24&fd00::-64');
  });
});

describe('the file lease store (one node)', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('leases the first subnet, keeps it across restarts, and gives it back on release', async () => {
    dir = mkdtempSync(join(tmpdir(), 'overlay-file-'));
    const conf = join(dir, 'net.json');
    writeFileSync(conf, '{"Network":"10.50.0.0/16","SubnetMin":"10.50.9.0"}');
    const attrs = { publicIP: '192.168.1.10', backendType: 'vxlan' as const, backendData: { vtepMAC: '0a:00:00:00:00:01', vni: 1 } };
    const opts = { networkConfigFile: conf, leaseFile: join(dir, 'state', 'lease.json') };
    const s1 = new FileLeaseStore(opts);
    const config = await s1.getNetworkConfig();
    expect((await s1.acquire(attrs, config)).subnet).toBe('10.50.9.0/24');
    const s2 = new FileLeaseStore(opts);
    expect((await s2.acquire(attrs, config, { subnet: '10.50.20.0/24' })).subnet).toBe('10.50.9.0/24');
    expect(await s2.list()).toHaveLength(1);
    await s2.release();
    const s3 = new FileLeaseStore(opts);
    expect((await s3.acquire(attrs, config, { subnet: '10.50.20.0/24' })).subnet).toBe('10.50.20.0/24');
    writeFileSync(conf, '{"Network":"10.50.0.0/16","SubnetLen":40}');
    await expect(new FileLeaseStore(opts).getNetworkConfig()).rejects.toThrow(/net\.json: SubnetLen/);
  });
});

describe('the overlay MTU', () => {
  it('is the underlay MTU less 50 for IPv4 only and less 70 when IPv6 is on', () => {
    expect(overlayMtu(1500, [4])).toBe(1450);
    expect(overlayMtu(1500, [6])).toBe(1430);
    // Dual-stack: one MTU for both devices and the pods, bounded by VXLAN over IPv6.
    expect(overlayMtu(1500, [4, 6])).toBe(1430);
    expect(overlayMtu(9000, [4, 6])).toBe(8930);
  });

  it('is the configured Backend.MTU when set', () => {
    expect(overlayMtu(1500, [4, 6], 1400)).toBe(1400);
  });
});

describe('the IPv6 address a node publishes', () => {
  const addr = (address: string, o: Partial<AddressInfo> = {}): AddressInfo => ({ index: 2, family: 6, address, prefixLength: 64, cidr: `${address}/64`, scope: 0, flags: 0, ...o });

  it('is a global address of the underlay interface, never link-local nor another interface', () => {
    expect(publicIPv6Of([addr('fe80::1', { scope: 253 }), addr('fd13::9', { index: 3 }), addr('fd13::11')], 2)).toBe('fd13::11');
    expect(publicIPv6Of([addr('fe80::1', { scope: 253 })], 2)).toBeUndefined();
  });

  it('skips tentative, DAD-failed, deprecated and temporary addresses', () => {
    const bad = [addr('fd13::1', { flags: 0x40 }), addr('fd13::2', { flags: 0x08 }), addr('fd13::3', { flags: 0x20 }), addr('fd13::4', { flags: 0x01 })];
    expect(publicIPv6Of(bad, 2)).toBeUndefined();
    expect(publicIPv6Of([...bad, addr('fd13::5', { flags: 0x80 /* permanent */ })], 2)).toBe('fd13::5');
  });
});

describe('IPv6 data plane entries per peer', () => {
  const log = pino({ level: 'silent' });
  const underlay = { index: 2, name: 'eth0', mtu: 1500, address: '192.168.1.10', cidr: '192.168.1.10/24', publicIP: '192.168.1.10', publicIPv6: 'fd13::10' };
  const lease: Lease = {
    subnet: '10.244.7.0/24',
    ipv6Subnet: 'fd00:10:244:7::/64',
    attrs: { publicIP: '192.168.1.11', publicIPv6: 'fd13::11', backendType: 'vxlan', backendData: { vtepMAC: '0a:00:00:00:00:01', vni: 1 }, backendV6Data: { vtepMAC: '0a:00:00:00:00:06', vni: 1 } },
  };

  it('routes the IPv6 subnet onlink via its network address, tunnelled to the peer IPv6 address with the v6 VTEP MAC', () => {
    const dp = new VxlanDataPlane({} as RtnlSession, { family: 6, vni: 1, port: 8472, mtu: 1430, directRouting: false, underlay, log });
    expect(dp.name).toBe('berth-v6.1');
    expect(dp.entriesFor(lease)).toEqual({
      route: { dst: 'fd00:10:244:7::/64', gw: 'fd00:10:244:7::', index: 0, onlink: true },
      neighbor: { ip: 'fd00:10:244:7::', mac: '0a:00:00:00:00:06' },
      fdb: { mac: '0a:00:00:00:00:06', dst: 'fd13::11' },
    });
  });

  it('has nothing for a peer without an IPv6 subnet or public IPv6 address', () => {
    const dp = new VxlanDataPlane({} as RtnlSession, { family: 6, vni: 1, port: 8472, mtu: 1430, directRouting: false, underlay, log });
    expect(dp.entriesFor({ ...lease, ipv6Subnet: undefined })).toBeUndefined();
    expect(dp.entriesFor({ ...lease, attrs: { ...lease.attrs, publicIPv6: undefined } })).toBeUndefined();
  });
});
