import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot } from '../../../world/netns.js';
import { etcdSkipReason } from '../../../world/etcd.js';
import { OverlayWorld, waitFor, type OverlayNode, type Pod } from '../../../world/overlay.js';

// Three "nodes" (network namespaces on a veth underlay) each run berth-overlayd against a real
// etcd, with a pod each added through berth-overlay: the overlay's promises checked end to end.

const skip = !isRoot ? 'needs root (network namespaces)' : etcdSkipReason();
if (skip) console.log(`overlay integration tests skipped: ${skip}`);

function hasRouteTo(node: OverlayNode, subnet: string): boolean {
  return node.routes().some((r) => r.dst === subnet);
}

describe.skipIf(skip !== undefined)('berth-overlayd: three nodes over VXLAN with etcd leases', () => {
  let world: OverlayWorld;
  let nodes: OverlayNode[];
  let pods: Pod[];

  beforeAll(async () => {
    ({ world, nodes, pods } = await OverlayWorld.cluster(3, { overlaydArgs: ['--lease-ttl', '4s'] }));
  }, 90_000);

  afterAll(async () => {
    await world?.stop();
  });

  it('gives each node its own subnet and writes subnet.env with the overlay MTU', () => {
    const subnets = nodes.map((n) => n.subnet());
    expect(new Set(subnets).size).toBe(3);
    for (const n of nodes) {
      const env = n.subnetEnv();
      expect(env.BERTH_NETWORK).toBe('10.244.0.0/16');
      expect(env.BERTH_SUBNET).toMatch(/^10\.244\.\d+\.1\/24$/);
      expect(env.BERTH_MTU).toBe('1450');
      expect(env.BERTH_IPMASQ).toBe('false');
    }
  });

  it('programs a VXLAN device, an onlink route, a neighbour and an FDB entry per peer', () => {
    const [a, b, c] = nodes as [OverlayNode, OverlayNode, OverlayNode];
    const link = JSON.parse(a.exec('ip', ['-d', '-j', 'link', 'show', 'berth.1']).stdout) as { mtu: number; linkinfo: { info_kind: string; info_data: { id: number; port: number; learning: boolean; local: string } } }[];
    expect(link[0]!.linkinfo.info_kind).toBe('vxlan');
    expect(link[0]!.linkinfo.info_data).toMatchObject({ id: 1, port: 8472, learning: false, local: a.address });
    expect(link[0]!.mtu).toBe(1450);
    for (const peer of [b, c]) {
      const route = a.routes().find((r) => r.dst === peer.subnet());
      expect(route, `route to ${peer.subnet()} on node 1`).toMatchObject({ gateway: peer.subnet().split('/')[0], dev: 'berth.1' });
      expect(route!.flags).toContain('onlink');
    }
    const neigh = JSON.parse(a.exec('ip', ['-j', 'neigh', 'show', 'dev', 'berth.1']).stdout) as { dst: string; lladdr: string; state: string[] }[];
    expect(neigh.map((n) => n.dst).sort()).toEqual([b, c].map((p) => p.subnet().split('/')[0]).sort());
    expect(neigh.every((n) => n.state.includes('PERMANENT'))).toBe(true);
    const fdb = JSON.parse(a.exec('bridge', ['-j', 'fdb', 'show', 'dev', 'berth.1']).stdout) as { mac: string; dst?: string }[];
    expect(fdb.filter((f) => f.dst).map((f) => f.dst).sort()).toEqual([b.address, c.address].sort());
  });

  it('lets every pod reach every other pod across nodes, without NAT', async () => {
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue;
        expect(world.ping(from.netns, to.ip), `${from.ip} -> ${to.ip}`).toBe(true);
      }
    }
    // The receiving pod sees the sender's own address.
    expect(await world.sourceSeen(pods[0]!, pods[1]!)).toBe(pods[0]!.ip);
    expect(await world.sourceSeen(pods[2]!, pods[0]!)).toBe(pods[2]!.ip);
  });

  it('carries a packet of exactly the overlay MTU with DF set and refuses one byte more', () => {
    const [p1, p2] = pods as [Pod, Pod];
    // ICMP payload + 8 (ICMP) + 20 (IPv4) = packet size.
    expect(world.ping(p1.netns, p2.ip, { size: 1450 - 28, dontFragment: true })).toBe(true);
    expect(world.ping(p1.netns, p2.ip, { size: 1450 - 27, dontFragment: true })).toBe(false);
  });

  it('repairs a route deleted by hand at the next resync', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    const before = /berth_overlay_resync_repairs_total (\d+)/.exec(a.metrics())![1];
    expect(a.exec('ip', ['route', 'del', b.subnet()]).code).toBe(0);
    expect(hasRouteTo(a, b.subnet())).toBe(false);
    await waitFor('the route to be repaired', () => hasRouteTo(a, b.subnet()), 5000);
    expect(Number(/berth_overlay_resync_repairs_total (\d+)/.exec(a.metrics())![1])).toBeGreaterThan(Number(before));
    expect(world.ping(pods[0]!.netns, pods[1]!.ip)).toBe(true);
  });

  it('ignores invalid leases written straight into etcd: no route, neighbour or FDB entry, each counted once', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    const { Etcd3 } = await import('etcd3');
    const etcd = new Etcd3({ hosts: world.etcd!.endpoints });
    const stranger = world.gateway.replace(/\.1$/, '.99');
    const strangerMac = '0a:58:0a:f4:63:00';
    const value = (publicIP: string) => JSON.stringify({ PublicIP: publicIP, BackendType: 'vxlan', BackendData: { VtepMAC: strangerMac, VNI: 1 } });
    const bad: Record<string, [string, string]> = {
      'subnet-outside-network': ['10.99.0.0-24', value(stranger)],
      // Another key for node 2's subnet (a dual-stack key carries it in an IPv4-only network).
      'subnet-overlap': [`${b.subnet().replace('/', '-')}&fd00:bad::-64`, value(stranger)],
      'subnet-length': ['10.244.200.0-25', value(stranger)],
      'public-ip': ['10.244.201.0-24', value('239.1.2.3')],
    };
    const rejected = (n: OverlayNode, reason: string) => Number(new RegExp(`^berth_overlay_leases_rejected_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(n.metrics())?.[1]);
    const strangerEntries = (n: OverlayNode) => [
      ...n.routes().filter((r) => ['10.99.0.0/24', '10.244.200.0/25', '10.244.201.0/24'].includes(r.dst)).map((r) => `route ${r.dst}`),
      ...n.exec('ip', ['neigh', 'show', 'dev', 'berth.1']).stdout.split('\n').filter((l) => l.includes(strangerMac)),
      ...n.exec('bridge', ['fdb', 'show', 'dev', 'berth.1']).stdout.split('\n').filter((l) => l.includes(strangerMac) || l.includes(stranger) || l.includes('239.1.2.3')),
    ];
    const puts = (n: OverlayNode) => Number(/^berth_overlay_leases_seen_total\{event="put"\} (\d+)$/m.exec(n.metrics())![1]);
    const putsBefore = nodes.map(puts);
    try {
      for (const [key, v] of Object.values(bad)) await etcd.put(`/berth.io/network/subnets/${key}`).value(v);
      await waitFor('every node to receive the four leases', () => nodes.every((n, i) => puts(n) >= putsBefore[i]! + 4), 10_000);
      // Several resyncs (every second here) later: still nothing programmed, nothing counted twice.
      await new Promise((r) => setTimeout(r, 2500));
      for (const n of nodes) {
        expect(strangerEntries(n), `node ${n.index}`).toEqual([]);
        for (const reason of Object.keys(bad)) expect(rejected(n, reason), `node ${n.index} ${reason}`).toBe(1);
        expect(n.log().split('ignoring an invalid peer lease').length - 1, `node ${n.index} log`).toBe(4);
      }
      // Node 2's subnet is still routed to node 2.
      expect(a.routes().find((r) => r.dst === b.subnet())).toMatchObject({ gateway: b.subnet().split('/')[0], dev: 'berth.1' });
      for (const from of pods) for (const to of pods) if (from !== to) expect(world.ping(from.netns, to.ip), `${from.ip} -> ${to.ip}`).toBe(true);
    } finally {
      for (const [key] of Object.values(bad)) await etcd.delete().key(`/berth.io/network/subnets/${key}`);
      etcd.close();
    }
    expect(strangerEntries(a)).toEqual([]);
    expect(world.ping(pods[0]!.netns, pods[1]!.ip)).toBe(true);
  });

  it('gives a restarted node its subnet back, after SIGTERM and after kill -9', async () => {
    const b = nodes[1]!;
    const subnet = b.subnet();
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await b.stop(signal);
      await b.start();
      expect(b.subnet()).toBe(subnet);
      expect(world.ping(pods[0]!.netns, pods[1]!.ip)).toBe(true);
      expect(world.ping(pods[1]!.netns, pods[2]!.ip)).toBe(true);
    }
  });

  it('follows a changed lease: a node back with a new VTEP MAC is reprogrammed on the others', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    const vtep = b.subnet().split('/')[0]!;
    const macOn = (n: OverlayNode): string | undefined =>
      (JSON.parse(n.exec('ip', ['-j', 'neigh', 'show', 'dev', 'berth.1', 'to', vtep]).stdout || '[]') as { lladdr?: string }[])[0]?.lladdr;
    const before = macOn(a);
    await b.stop('SIGKILL');
    // A new device gets a new random MAC, which b publishes in its lease when it starts again.
    expect(b.exec('ip', ['link', 'del', 'berth.1']).code).toBe(0);
    await b.start();
    const after = (JSON.parse(b.exec('ip', ['-j', 'link', 'show', 'berth.1']).stdout) as { address: string }[])[0]!.address;
    expect(after).not.toBe(before);
    await waitFor('node 1 to learn the new VTEP MAC', () => macOn(a) === after, 5000);
    const fdb = JSON.parse(a.exec('bridge', ['-j', 'fdb', 'show', 'dev', 'berth.1']).stdout) as { mac: string; dst?: string }[];
    expect(fdb.filter((f) => f.dst === b.address).map((f) => f.mac)).toEqual([after]);
    expect(world.ping(pods[0]!.netns, pods[1]!.ip)).toBe(true);
    expect(world.ping(pods[1]!.netns, pods[2]!.ip)).toBe(true);
  });

  it('keeps the data plane through an etcd restart and follows leases made after it', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    await world.etcd!.pause();
    // etcd is down: the kernel state stays, pods still talk, and a node started now waits for it.
    expect(world.ping(pods[0]!.netns, pods[2]!.ip)).toBe(true);
    await new Promise((r) => setTimeout(r, 1500));
    expect(world.ping(pods[0]!.netns, pods[2]!.ip)).toBe(true);
    expect(a.readyz()).toBe(200);
    await world.etcd!.resume();
    const d = world.addNode();
    await d.start();
    const pod = await d.addPod();
    await waitFor('nodes 1 and 2 to program the new node', () => hasRouteTo(a, d.subnet()) && hasRouteTo(b, d.subnet()), 15_000);
    expect(world.ping(pods[0]!.netns, pod.ip)).toBe(true);
    expect(world.ping(pod.netns, pods[1]!.ip)).toBe(true);
  });

  it('removes a leaving node from the others: lease released on exit, or expired after kill -9', async () => {
    const [a, b, c] = nodes as [OverlayNode, OverlayNode, OverlayNode];
    const d = world.nodes[3]!;
    // Released: node 3 stops with --remove-on-exit.
    const cSubnet = c.subnet();
    await c.stop();
    await c.start(['--remove-on-exit']);
    await c.stop();
    await waitFor('node 3 routes to go from nodes 1, 2 and 4', () => ![a, b, d].some((n) => hasRouteTo(n, cSubnet)), 10_000);
    // Expired: node 4 killed, its lease (TTL 4 s) runs out.
    const dSubnet = d.subnet();
    await d.stop('SIGKILL');
    expect(hasRouteTo(a, dSubnet)).toBe(true);
    await waitFor('node 4 lease to expire and its routes to go', () => !hasRouteTo(a, dSubnet) && !hasRouteTo(b, dSubnet), 15_000);
    expect(world.ping(pods[0]!.netns, pods[1]!.ip)).toBe(true);
  });

  it('serves /healthz, /readyz and metrics', () => {
    const a = nodes[0]!;
    expect(a.readyz()).toBe(200);
    const m = a.metrics();
    expect(m).toMatch(/^berth_overlay_ready 1$/m);
    expect(m).toMatch(/^berth_overlay_programming_seconds_count \d+$/m);
    expect(Number(/^berth_overlay_leases_seen_total\{event="put"\} (\d+)$/m.exec(m)![1])).toBeGreaterThan(0);
  });
});
