import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { overlayMtu, VxlanDataPlane, vtepAddress } from '../../../overlayd/dataplane.js';
import { leaseKey, type Lease } from '../../../overlayd/types.js';
import type { RtnlSession } from '../../../lib/netlink/rtnl.js';

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
