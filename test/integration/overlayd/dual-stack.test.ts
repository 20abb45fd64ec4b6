import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot } from '../../../world/netns.js';
import { etcdSkipReason } from '../../../world/etcd.js';
import { OverlayWorld, waitFor, type OverlayNode, type Pod } from '../../../world/overlay.js';

// A dual-stack overlay: three nodes on an underlay with IPv4 and IPv6 addresses, etcd leases
// carrying an IPv4 and an IPv6 subnet each, a second VXLAN device (berth-v6.1) tunnelling
// IPv6 pod traffic over the IPv6 underlay, and pods that reach each other in both families.

const skip = !isRoot ? 'needs root (network namespaces)' : etcdSkipReason();
if (skip) console.log(`dual-stack overlay tests skipped: ${skip}`);

const networkConfig = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', IPv6SubnetLen: 64, Backend: { Type: 'vxlan', VNI: 1 } };

/**
 * The overlay MTU on a 1500-byte underlay: one MTU serves both families (pods get one eth0
 * MTU), so it is bounded by the larger overhead, VXLAN over IPv6 (40 + 8 + 8 + 14 = 70 bytes).
 */
const overlayMtu = 1500 - 70;

interface VxlanLink {
  mtu: number;
  linkinfo: { info_kind: string; info_data: { id: number; port: number; learning: boolean; local?: string; local6?: string } };
}

describe.skipIf(skip !== undefined)('berth-overlayd: a dual-stack overlay over an IPv4 + IPv6 underlay', () => {
  let world: OverlayWorld;
  let nodes: OverlayNode[];
  let pods: Pod[];

  beforeAll(async () => {
    ({ world, nodes, pods } = await OverlayWorld.cluster(3, { ipv6Underlay: true, networkConfig }));
  }, 90_000);

  afterAll(async () => {
    await world?.stop();
  });

  it('writes both families to subnet.env, with an MTU that fits VXLAN over IPv6', () => {
    for (const n of nodes) {
      const env = n.subnetEnv();
      expect(env.BERTH_NETWORK).toBe('10.244.0.0/16');
      expect(env.BERTH_SUBNET).toMatch(/^10\.244\.\d+\.1\/24$/);
      expect(env.BERTH_IPV6_NETWORK).toBe('fd00:10:244::/56');
      expect(env.BERTH_IPV6_SUBNET).toMatch(/^fd00:10:244:[0-9a-f]+::1\/64$/);
      expect(env.BERTH_MTU).toBe(String(overlayMtu));
    }
    expect(new Set(nodes.map((n) => n.ipv6Subnet())).size).toBe(3);
  });

  it('gives every pod an IPv4 and an IPv6 address from its node subnets', () => {
    for (const [i, p] of pods.entries()) {
      expect(p.ip).toMatch(/^10\.244\./);
      expect(p.ipv6, `pod on node ${i + 1}`).toMatch(/^fd00:10:244:/);
    }
  });

  it('builds berth-v6.1 on the IPv6 underlay address, holding the node subnet address as /128', () => {
    for (const n of nodes) {
      const [link] = JSON.parse(n.exec('ip', ['-d', '-j', 'link', 'show', 'berth-v6.1']).stdout) as VxlanLink[];
      expect(link!.linkinfo.info_kind).toBe('vxlan');
      expect(link!.linkinfo.info_data).toMatchObject({ id: 1, port: 8472, learning: false, local6: n.addressV6 });
      expect(link!.mtu).toBe(overlayMtu);
      const [v4] = JSON.parse(n.exec('ip', ['-d', '-j', 'link', 'show', 'berth.1']).stdout) as VxlanLink[];
      expect(v4!.linkinfo.info_data.local).toBe(n.address);
      expect(v4!.mtu).toBe(overlayMtu);
      const addrs = JSON.parse(n.exec('ip', ['-6', '-j', 'addr', 'show', 'dev', 'berth-v6.1', 'scope', 'global']).stdout) as { addr_info: { local: string; prefixlen: number; tentative?: boolean; dadfailed?: boolean }[] }[];
      const vtep = n.ipv6Subnet().split('/')[0]!;
      // iproute2 leaves an empty object where the scope filter dropped the link-local address.
      const global = addrs[0]!.addr_info.filter((a) => a.local);
      expect(global.map((a) => `${a.local}/${a.prefixlen}`)).toEqual([`${vtep}/128`]);
      expect(global[0]!.tentative ?? false).toBe(false);
      expect(global[0]!.dadfailed ?? false).toBe(false);
    }
  });

  it('programs an onlink IPv6 route, a neighbour and an FDB entry to the peer IPv6 underlay address per peer', () => {
    for (const n of nodes) {
      const peers = nodes.filter((p) => p !== n);
      for (const peer of peers) {
        const route = n.routes(6).find((r) => r.dst === peer.ipv6Subnet());
        expect(route, `IPv6 route to ${peer.ipv6Subnet()} on node ${n.index}`).toMatchObject({ gateway: peer.ipv6Subnet().split('/')[0], dev: 'berth-v6.1' });
        expect(route!.flags).toContain('onlink');
      }
      const neigh = JSON.parse(n.exec('ip', ['-6', '-j', 'neigh', 'show', 'dev', 'berth-v6.1', 'nud', 'permanent']).stdout) as { dst: string; lladdr: string }[];
      expect(neigh.map((x) => x.dst).sort()).toEqual(peers.map((p) => p.ipv6Subnet().split('/')[0]).sort());
      const fdb = JSON.parse(n.exec('bridge', ['-j', 'fdb', 'show', 'dev', 'berth-v6.1']).stdout) as { mac: string; dst?: string }[];
      expect(fdb.filter((f) => f.dst).map((f) => f.dst).sort()).toEqual(peers.map((p) => p.addressV6).sort());
      // The IPv4 side is untouched: berth.1 tunnels to the peers' IPv4 underlay addresses.
      const fdb4 = JSON.parse(n.exec('bridge', ['-j', 'fdb', 'show', 'dev', 'berth.1']).stdout) as { mac: string; dst?: string }[];
      expect(fdb4.filter((f) => f.dst).map((f) => f.dst).sort()).toEqual(peers.map((p) => p.address).sort());
    }
  });

  it('skips DAD on the pod bridge, so a node can solicit its new pods at once', () => {
    // A bridge's link-local address in DAD (1-2 s after its first port comes up) cannot source
    // a neighbour solicitation: the first IPv6 packet forwarded to a new pod would wait for it.
    for (const n of nodes) {
      expect(n.exec('cat', ['/proc/sys/net/ipv6/conf/cni0/accept_dad']).stdout.trim()).toBe('0');
      expect(n.exec('ip', ['-6', '-o', 'addr', 'show', 'dev', 'cni0']).stdout).not.toMatch(/tentative/);
    }
  });

  it('lets every pod reach every other pod over IPv6 and over IPv4', async () => {
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue;
        // The very first packet too: the receiving node solicits its fresh pod right away.
        expect(world.ping(from.netns, to.ipv6!), `${from.ipv6} -> ${to.ipv6}`).toBe(true);
        expect(world.ping(from.netns, to.ip), `${from.ip} -> ${to.ip}`).toBe(true);
      }
    }
  });

  it('keeps pod addresses end to end in both families (no NAT)', async () => {
    expect(await world.sourceSeen(pods[0]!, { netns: pods[1]!.netns, ip: pods[1]!.ipv6! })).toBe(pods[0]!.ipv6);
    expect(await world.sourceSeen(pods[2]!, pods[0]!)).toBe(pods[2]!.ip);
  });

  it('carries a packet of exactly the overlay MTU with DF set in both families', () => {
    const [p1, p2] = pods as [Pod, Pod];
    // IPv6: payload + 8 (ICMPv6) + 40 (IPv6 header); IPv4: payload + 8 + 20.
    expect(world.ping(p1.netns, p2.ipv6!, { size: overlayMtu - 48, dontFragment: true })).toBe(true);
    expect(world.ping(p1.netns, p2.ip, { size: overlayMtu - 28, dontFragment: true })).toBe(true);
    // One byte more does not fit the pod's interface.
    expect(world.ping(p1.netns, p2.ipv6!, { size: overlayMtu - 47, dontFragment: true })).toBe(false);
  });

  it('repairs a deleted IPv6 route at the next resync, and leaves the kernel alone otherwise', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    const repairs = () => Number(/berth_overlay_resync_repairs_total (\d+)/.exec(a.metrics())![1]);
    // Several resyncs (1 s apart) of a settled data plane find nothing to fix.
    const settled = repairs();
    await new Promise((r) => setTimeout(r, 2500));
    expect(repairs()).toBe(settled);
    expect(a.exec('ip', ['-6', 'route', 'del', b.ipv6Subnet(), 'dev', 'berth-v6.1']).code).toBe(0);
    await waitFor('the IPv6 route to be repaired', () => a.routes(6).some((r) => r.dst === b.ipv6Subnet()), 5000);
    expect(repairs()).toBeGreaterThan(settled);
    expect(world.ping(pods[0]!.netns, pods[1]!.ipv6!)).toBe(true);
  });
});
