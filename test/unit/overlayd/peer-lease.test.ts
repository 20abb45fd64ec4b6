import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../../overlayd/network-config.js';
import { checkPeerLease, notUnicast, PeerLeaseFilter, PeerLeases, type LeaseRejectReason, type PeerLeaseContext } from '../../../overlayd/peer-lease.js';
import { leaseKey, type Lease, type LeaseAttrs } from '../../../overlayd/types.js';

const v4 = parseNetworkConfig('{"Network": "10.244.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1}}', 'test');
const dual = parseNetworkConfig(
  '{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan", "VNI": 1}}',
  'test',
);

const attrs = (over: Partial<LeaseAttrs> = {}): LeaseAttrs => ({ publicIP: '192.168.1.12', backendType: 'vxlan', backendData: { vtepMAC: '0a:58:0a:f4:03:00', vni: 1 }, ...over });
const lease = (subnet: string, over: Partial<LeaseAttrs> = {}): Lease => ({ subnet, attrs: attrs(over) });
const dualLease = (subnet: string, ipv6Subnet: string, over: Partial<LeaseAttrs> = {}): Lease => ({
  subnet,
  ipv6Subnet,
  attrs: attrs({ publicIPv6: 'fd13:213::12', backendV6Data: { vtepMAC: '0a:58:0a:f4:03:01', vni: 1 }, ...over }),
});

const peersOf = (...leases: Lease[]): PeerLeases => {
  const peers = new PeerLeases();
  for (const l of leases) peers.set(leaseKey(l), l);
  return peers;
};

const peerB = lease('10.244.3.0/24', { publicIP: '192.168.1.13' });
const ctx = (over: Partial<PeerLeaseContext> = {}): PeerLeaseContext => ({
  network: v4,
  own: { subnet: '10.244.1.0/24' },
  peers: peersOf(peerB),
  underlayCidr: '192.168.1.11/24',
  ...over,
});

describe('checkPeerLease', () => {
  it('accepts a well-formed peer lease, and a new version of an accepted one', () => {
    expect(checkPeerLease(lease('10.244.2.0/24'), ctx())).toBeUndefined();
    expect(checkPeerLease(lease('10.244.3.0/24', { publicIP: '192.168.1.99' }), ctx())).toBeUndefined();
  });

  const cases: [string, Lease, LeaseRejectReason, string][] = [
    ['another backend', lease('10.244.2.0/24', { backendType: 'host-gw' as 'vxlan' }), 'backend', 'BackendType "host-gw" is not "vxlan"'],
    ['another VNI', lease('10.244.2.0/24', { backendData: { vtepMAC: '0a:58:0a:f4:03:00', vni: 2 } }), 'backend', "BackendData.VNI 2 is not the network's 1"],
    ['a subnet outside the Network', lease('10.99.0.0/24'), 'subnet-outside-network', 'subnet 10.99.0.0/24 is not inside Network 10.244.0.0/16'],
    ['a subnet wider than the Network', lease('10.0.0.0/8'), 'subnet-outside-network', 'subnet 10.0.0.0/8 is not inside Network 10.244.0.0/16'],
    ['a subnet of the other family', lease('fd00::/64'), 'subnet-outside-network', 'subnet fd00::/64 is not inside Network 10.244.0.0/16'],
    ['a subnet of the wrong length', lease('10.244.200.0/25'), 'subnet-length', 'subnet 10.244.200.0/25 is not a /24 (SubnetLen)'],
    ['a subnet with host bits', lease('10.244.7.9/24'), 'subnet-host-bits', 'subnet 10.244.7.9/24 is not a network address (10.244.7.0/24)'],
    ['a subnet over this node\'s', { ...lease('10.244.1.0/24'), ipv6Subnet: 'fd00::/64' }, 'subnet-overlap', "subnet 10.244.1.0/24 overlaps this node's 10.244.1.0/24"],
    ['a subnet over another live lease', { ...lease('10.244.3.0/24'), ipv6Subnet: 'fd00::/64' }, 'subnet-overlap', 'subnet 10.244.3.0/24 overlaps the lease 10.244.3.0-24'],
    ['PublicIP 0.0.0.0', lease('10.244.2.0/24', { publicIP: '0.0.0.0' }), 'public-ip', 'PublicIP "0.0.0.0" is unspecified ("this network", 0.0.0.0/8)'],
    ['a loopback PublicIP', lease('10.244.2.0/24', { publicIP: '127.0.0.1' }), 'public-ip', 'PublicIP "127.0.0.1" is a loopback address'],
    ['a multicast PublicIP', lease('10.244.2.0/24', { publicIP: '239.1.2.3' }), 'public-ip', 'PublicIP "239.1.2.3" is a multicast address'],
    ['the broadcast PublicIP', lease('10.244.2.0/24', { publicIP: '255.255.255.255' }), 'public-ip', 'PublicIP "255.255.255.255" is the broadcast address'],
    ['a reserved PublicIP', lease('10.244.2.0/24', { publicIP: '240.0.0.1' }), 'public-ip', 'PublicIP "240.0.0.1" is a reserved address (240.0.0.0/4)'],
    ['the underlay broadcast as PublicIP', lease('10.244.2.0/24', { publicIP: '192.168.1.255' }), 'public-ip', 'PublicIP "192.168.1.255" is the broadcast address of the underlay 192.168.1.11/24'],
    ['an IPv6 PublicIP', lease('10.244.2.0/24', { publicIP: 'fd00::1' }), 'public-ip', 'PublicIP "fd00::1" is not an IPv4 address'],
    ['a PublicIP that is no address', lease('10.244.2.0/24', { publicIP: 'node-b' }), 'public-ip', 'PublicIP "node-b" is not an IP address'],
    ['a multicast VTEP MAC', lease('10.244.2.0/24', { backendData: { vtepMAC: '01:00:5e:00:00:01', vni: 1 } }), 'vtep-mac', 'BackendData.VtepMAC "01:00:5e:00:00:01" is not a unicast MAC address'],
    ['a zero VTEP MAC', lease('10.244.2.0/24', { backendData: { vtepMAC: '00:00:00:00:00:00', vni: 1 } }), 'vtep-mac', 'BackendData.VtepMAC "00:00:00:00:00:00" is not a unicast MAC address'],
    ['a VTEP MAC that is no MAC', lease('10.244.2.0/24', { backendData: { vtepMAC: 'nonsense', vni: 1 } }), 'vtep-mac', 'BackendData.VtepMAC "nonsense" is not a unicast MAC address'],
  ];
  it.each(cases)('refuses %s', (_what, l, reason, detail) => {
    expect(checkPeerLease(l, ctx())).toEqual({ reason, detail });
  });

  it('leaves the subnets of a family the network does not enable to the data plane (nothing programs them)', () => {
    expect(checkPeerLease({ ...lease('10.244.2.0/24'), ipv6Subnet: 'ff00::/8' }, ctx())).toBeUndefined();
  });

  describe('dual-stack: the same for the IPv6 fields', () => {
    const peerC = dualLease('10.244.3.0/24', 'fd00:10:244:3::/64');
    const dctx = (over: Partial<PeerLeaseContext> = {}) => ctx({ network: dual, own: { subnet: '10.244.1.0/24', ipv6Subnet: 'fd00:10:244:1::/64' }, peers: peersOf(peerC), ...over });

    it('accepts a well-formed dual-stack lease', () => {
      expect(checkPeerLease(dualLease('10.244.2.0/24', 'fd00:10:244:2::/64'), dctx())).toBeUndefined();
    });

    const v6cases: [string, Lease, LeaseRejectReason, string][] = [
      ['an IPv6 subnet outside IPv6Network', dualLease('10.244.2.0/24', 'fd00:99::/64'), 'subnet-outside-network', 'subnet fd00:99::/64 is not inside IPv6Network fd00:10:244::/56'],
      ['an IPv6 subnet of the wrong length', dualLease('10.244.2.0/24', 'fd00:10:244:2::/80'), 'subnet-length', 'subnet fd00:10:244:2::/80 is not a /64 (IPv6SubnetLen)'],
      ['an IPv6 subnet with host bits', dualLease('10.244.2.0/24', 'fd00:10:244:2::1/64'), 'subnet-host-bits', 'subnet fd00:10:244:2::1/64 is not a network address (fd00:10:244:2::/64)'],
      ['an IPv6 subnet over this node\'s', dualLease('10.244.2.0/24', 'fd00:10:244:1::/64'), 'subnet-overlap', "subnet fd00:10:244:1::/64 overlaps this node's fd00:10:244:1::/64"],
      ['an IPv6 subnet over another lease', dualLease('10.244.2.0/24', 'fd00:10:244:3::/64'), 'subnet-overlap', 'subnet fd00:10:244:3::/64 overlaps the lease 10.244.3.0-24&fd00:10:244:3::-64'],
      ['PublicIPv6 ::', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { publicIPv6: '::' }), 'public-ip', 'PublicIPv6 "::" is unspecified (::)'],
      ['PublicIPv6 ::1', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { publicIPv6: '::1' }), 'public-ip', 'PublicIPv6 "::1" is the loopback address'],
      ['a multicast PublicIPv6', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { publicIPv6: 'ff02::1' }), 'public-ip', 'PublicIPv6 "ff02::1" is a multicast address'],
      ['a link-local PublicIPv6', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { publicIPv6: 'fe80::1' }), 'public-ip', 'PublicIPv6 "fe80::1" is a link-local address'],
      ['an IPv4-mapped PublicIPv6', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { publicIPv6: '::ffff:192.168.1.12' }), 'public-ip', 'PublicIPv6 "::ffff:192.168.1.12" is an IPv4-mapped address'],
      ['an IPv4 PublicIPv6', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { publicIPv6: '192.168.1.12' }), 'public-ip', 'PublicIPv6 "192.168.1.12" is not an IPv6 address'],
      ['another VNI in BackendV6Data', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { backendV6Data: { vtepMAC: '0a:58:0a:f4:03:01', vni: 7 } }), 'backend', "BackendV6Data.VNI 7 is not the network's 1"],
      ['a multicast VTEP MAC in BackendV6Data', dualLease('10.244.2.0/24', 'fd00:10:244:2::/64', { backendV6Data: { vtepMAC: '33:33:00:00:00:01', vni: 1 } }), 'vtep-mac', 'BackendV6Data.VtepMAC "33:33:00:00:00:01" is not a unicast MAC address'],
    ];
    it.each(v6cases)('refuses %s', (_what, l, reason, detail) => {
      expect(checkPeerLease(l, dctx())).toEqual({ reason, detail });
    });
  });

  it('knows unicast addresses when it sees them', () => {
    for (const ip of ['10.0.0.1', '192.168.1.254', '169.254.0.5', '100.64.0.1']) expect(notUnicast(ip, 4, '192.168.1.11/24')).toBeUndefined();
    for (const ip of ['fd13:213::11', '2001:db8::1']) expect(notUnicast(ip, 6)).toBeUndefined();
    // A /31 or /32 underlay has no broadcast address.
    expect(notUnicast('10.1.1.1', 4, '10.1.1.0/31')).toBeUndefined();
  });
});

describe('PeerLeases', () => {
  it('knows which lease holds a subnet, through updates and deletes', () => {
    const peers = peersOf(peerB, dualLease('10.244.4.0/24', 'fd00:10:244:4::/64'));
    expect(peers.holder('10.244.3.0/24')).toBe('10.244.3.0-24');
    expect(peers.holder('fd00:10:244:4::/64')).toBe('10.244.4.0-24&fd00:10:244:4::-64');
    peers.set(leaseKey(peerB), { ...peerB, attrs: attrs({ publicIP: '192.168.1.99' }) });
    expect(peers.holder('10.244.3.0/24')).toBe('10.244.3.0-24');
    peers.delete(leaseKey(peerB));
    expect(peers.holder('10.244.3.0/24')).toBeUndefined();
    peers.clear();
    expect(peers.holder('fd00:10:244:4::/64')).toBeUndefined();
  });

  it('checks a whole cluster in linear time: 20 000 leases, each against all taken before it', () => {
    const big = parseNetworkConfig('{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1}}', 'test');
    const peers = new PeerLeases();
    const started = performance.now();
    for (let i = 1; i <= 20_000; i++) {
      const l = lease(`10.${i >> 8}.${i & 255}.0/24`);
      expect(checkPeerLease(l, { network: big, peers })).toBeUndefined();
      peers.set(leaseKey(l), l);
    }
    // Quadratic, this is 2e8 comparisons: minutes. Linear, well under a second even here.
    expect(performance.now() - started).toBeLessThan(5000);
    expect(checkPeerLease({ ...lease('10.1.1.0/24'), ipv6Subnet: 'fd00::/64' }, { network: big, peers })?.reason).toBe('subnet-overlap');
  });
});

describe('PeerLeaseFilter', () => {
  const logged: unknown[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
  const make = () => {
    logged.length = 0;
    const counted: LeaseRejectReason[] = [];
    return { filter: new PeerLeaseFilter(log, (r) => counted.push(r)), counted };
  };

  it('logs and counts a rejected lease once per revision, however often it is seen', () => {
    const { filter, counted } = make();
    const bad = lease('10.99.0.0/24');
    for (let i = 0; i < 5; i++) expect(filter.admit(bad, ctx())).toBe(false);
    expect(counted).toEqual(['subnet-outside-network']);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ lease: '10.99.0.0-24', reason: 'subnet-outside-network', detail: 'subnet 10.99.0.0/24 is not inside Network 10.244.0.0/16' });
    // A new revision of the same lease (another PublicIP) is reported again.
    expect(filter.admit(lease('10.99.0.0/24', { publicIP: '192.168.1.50' }), ctx())).toBe(false);
    expect(counted).toEqual(['subnet-outside-network', 'subnet-outside-network']);
    expect(logged).toHaveLength(2);
  });

  it('forgets a lease that left the store or became valid, and reports it again when it comes back bad', () => {
    const { filter, counted } = make();
    const bad = lease('10.244.2.0/24', { publicIP: '224.0.0.1' });
    filter.admit(bad, ctx());
    filter.forget(leaseKey(bad));
    filter.admit(bad, ctx());
    expect(filter.admit(lease('10.244.2.0/24'), ctx())).toBe(true);
    expect(filter.pending).toEqual([]);
    filter.admit(bad, ctx());
    expect(counted).toEqual(['public-ip', 'public-ip', 'public-ip']);
  });

  it('keeps the rejected leases still in the store, to try again when the accepted ones change', () => {
    const { filter } = make();
    const overlapping = { ...lease('10.244.3.0/24'), ipv6Subnet: 'fd00::/64' };
    const outside = lease('10.99.0.0/24');
    filter.admit(overlapping, ctx());
    filter.admit(outside, ctx());
    expect(filter.pending).toEqual([overlapping, outside]);
    filter.retain(new Set([leaseKey(overlapping)]));
    expect(filter.pending).toEqual([overlapping]);
    // The lease it overlapped is gone: now it is valid.
    expect(filter.admit(overlapping, ctx({ peers: peersOf() }))).toBe(true);
    expect(filter.pending).toEqual([]);
  });
});
