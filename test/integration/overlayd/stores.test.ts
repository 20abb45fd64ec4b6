import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot } from '../../../world/cni.js';
import { isRoot, trySh } from '../../../world/netns.js';
import { OverlayWorld, waitFor, type OverlayNode } from '../../../world/overlay.js';

// berth-overlayd beyond the three-node etcd test: DirectRouting, the single-node file store, the kube store end to end (against
// the fake API of world/fake-kube-api.ts: no real API server can run on these machines),
// masquerade with iptables and with nftables, and a bad network config.

const skip = isRoot ? undefined : 'needs root (network namespaces)';
if (skip) console.log(`overlayd store tests skipped: ${skip}`);

const hasRouteTo = (node: OverlayNode, subnet: string): boolean => node.routes().some((r) => r.dst === subnet);

describe.skipIf(skip !== undefined)('berth-overlayd lease stores and masquerade', () => {
  let world: OverlayWorld | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('file store: one node leases a subnet, serves pods, and keeps the subnet across restarts', async () => {
    world = await OverlayWorld.start({ store: 'file' });
    const n = world.addNode();
    await n.start();
    expect(n.subnet()).toBe('10.244.1.0/24');
    const pod = await n.addPod();
    expect(pod.ip).toMatch(/^10\.244\.1\.\d+$/);
    expect(world.ping(pod.netns, '10.244.1.1')).toBe(true);
    await n.stop('SIGKILL');
    await n.start();
    expect(n.subnet()).toBe('10.244.1.0/24');
    expect(world.ping(pod.netns, '10.244.1.1')).toBe(true);
  });

  it('kube store: subnets from podCIDR, lease published as annotations, a deleted node is removed', async () => {
    console.log('kube store: run against a fake Kubernetes API (world/fake-kube-api.ts): no real API server can run here');
    // SubnetLen is for the stores that allocate: here the controller-manager sized the podCIDRs
    // (/24), and peers are checked against that, not against this SubnetLen.
    world = await OverlayWorld.start({ store: 'kube', networkConfig: { Network: '10.244.0.0/16', SubnetLen: 26, Backend: { Type: 'vxlan', VNI: 1 } } });
    const [a, b] = [world.addNode(), world.addNode()];
    for (const n of [a, b]) await n.start();
    expect(a.subnet()).toBe('10.244.101.0/24');
    expect(b.subnet()).toBe('10.244.102.0/24');
    const annotations = world.kube!.node('node2')!.metadata.annotations as Record<string, string>;
    expect(annotations['berth.io/public-ip']).toBe(b.address);
    expect(annotations['berth.io/backend-type']).toBe('vxlan');
    expect(JSON.parse(annotations['berth.io/backend-data']!)).toMatchObject({ VNI: 1 });
    await waitFor('node 1 to program node 2', () => hasRouteTo(a, b.subnet()));
    const [p1, p2] = [await a.addPod(), await b.addPod()];
    expect(world.ping(p1.netns, p2.ip)).toBe(true);
    expect(await world.sourceSeen(p1, p2)).toBe(p1.ip);
    world.kube!.deleteNode('node2');
    await waitFor('node 2 routes to go from node 1', () => !hasRouteTo(a, '10.244.102.0/24'));
  });

  it('DirectRouting: peers on the same underlay subnet get a plain route, no tunnel', async () => {
    world = await OverlayWorld.start({ networkConfig: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan', DirectRouting: true } } });
    const [a, b] = [world.addNode(), world.addNode()];
    for (const n of [a, b]) await n.start();
    await waitFor('node 1 to route node 2', () => hasRouteTo(a, b.subnet()));
    expect(a.routes().find((r) => r.dst === b.subnet())).toMatchObject({ gateway: b.address, dev: 'eth0' });
    expect(JSON.parse(a.exec('bridge', ['-j', 'fdb', 'show', 'dev', 'berth.1']).stdout).filter((f: { dst?: string }) => f.dst)).toEqual([]);
    const [p1, p2] = [await a.addPod(), await b.addPod()];
    expect(world.ping(p1.netns, p2.ip)).toBe(true);
    expect(await world.sourceSeen(p2, p1)).toBe(p2.ip);
  });

  it('a node whose subnet went to another node while etcd was out of reach exits, and comes back on its new subnet', async () => {
    world = await OverlayWorld.start({ overlaydArgs: ['--lease-ttl', '2s'] });
    const n = world.addNode();
    await n.start();
    expect(n.subnet()).toBe('10.244.1.0/24');
    const { Etcd3 } = await import('etcd3');
    const etcd = new Etcd3({ hosts: world.etcd!.endpoints });
    try {
      const key = '/berth.io/network/subnets/10.244.1.0-24';
      const kv = (await etcd.get(key).exec()).kvs[0]!;
      await etcd.put(key).value(JSON.stringify({ PublicIP: '10.9.9.9', BackendType: 'vxlan', BackendData: { VtepMAC: '02:00:00:00:09:09', VNI: 1 } }));
      await etcd.leaseClient.leaseRevoke({ ID: kv.lease });
    } finally {
      etcd.close();
    }
    await waitFor('berth-overlayd to exit', () => n.proc!.exitCode !== null, 10_000);
    expect(n.proc!.exitCode).toBe(1);
    expect(n.log()).toMatch(/this node was given a different subnet/);
    await n.start();
    expect(n.subnet()).toBe('10.244.2.0/24');
    expect(n.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', 'berth.1']).stdout).toMatch(/inet 10\.244\.2\.0\/32/);
  });

  for (const backend of ['iptables', 'nftables'] as const) {
    it(`--ip-masq (${backend}): pods reach outside the cluster network from the node's address; rules go on SIGTERM`, async () => {
      world = await OverlayWorld.start({ store: 'file' });
      const n = world.addNode();
      await n.start(['--ip-masq', '--masq-backend', backend]);
      expect(n.subnetEnv().BERTH_IPMASQ).toBe('true');
      const rules = (): string => (backend === 'iptables' ? n.exec('iptables-save', ['-t', 'nat']).stdout : n.exec('nft', ['list', 'ruleset']).stdout);
      expect(rules()).toMatch(backend === 'iptables' ? /-A BERTH-OVERLAY-MASQ -s 10\.244\.0\.0\/16 ! -d 224\.0\.0\.0\/4 -j MASQUERADE --random-fully/ : /table inet berth-overlay/);
      const pod = await n.addPod();
      // The underlay gateway (the root namespace) has no route to pods: only a masqueraded
      // connection gets its answer back.
      expect(await world.sourceSeen(pod, { netns: `/proc/${process.pid}/ns/net`, ip: world.gateway })).toBe(n.address);
      // Removed rules come back at the next resync (1 s in tests).
      if (backend === 'iptables') n.exec('iptables', ['-t', 'nat', '-F', 'BERTH-OVERLAY-MASQ']);
      else n.exec('nft', ['delete', 'table', 'inet', 'berth-overlay']);
      await waitFor('the masquerade rules to be repaired', () => (backend === 'iptables' ? /-A BERTH-OVERLAY-MASQ/.test(rules()) : /table inet berth-overlay/.test(rules())), 5000);
      await n.stop();
      expect(rules()).not.toMatch(/BERTH-OVERLAY-MASQ|berth-overlay/);
    });
  }

  it('--ip-masq on a dual-stack node masquerades IPv6 too (ip6tables)', async () => {
    world = await OverlayWorld.start({
      store: 'file',
      ipv6Underlay: true,
      networkConfig: { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', IPv6SubnetLen: 64, Backend: { Type: 'vxlan' } },
    });
    const n = world.addNode();
    await n.start(['--ip-masq', '--masq-backend', 'iptables']);
    expect(n.exec('ip6tables-save', ['-t', 'nat']).stdout).toMatch(/-A BERTH-OVERLAY-MASQ -s fd00:10:244::\/56 ! -d ff00::\/8 -j MASQUERADE --random-fully/);
    const pod = await n.addPod();
    const here = { netns: `/proc/${process.pid}/ns/net` };
    // The root namespace has no route back to pods in either family: only masquerading answers.
    expect(await world.sourceSeen(pod, { ...here, ip: world.gatewayV6 })).toBe(n.addressV6);
    expect(await world.sourceSeen(pod, { ...here, ip: world.gateway })).toBe(n.address);
    await n.stop();
    expect(n.exec('ip6tables-save', ['-t', 'nat']).stdout).not.toMatch(/BERTH-OVERLAY-MASQ/);
  });

  it('refuses a bad network config with the field named, and leaves nothing behind', async () => {
    world = await OverlayWorld.start({ store: 'file' });
    const n = world.addNode();
    const conf = join(world.dir, 'bad.json');
    writeFileSync(conf, JSON.stringify({ Network: '10.244.0.0/16', SubnetLen: 12 }));
    const r = spawnSync('nsenter', [`--net=${n.netns}`, process.execPath, join(repoRoot, 'dist/bin/berth-overlayd'), '--lease-store', 'file', '--network-config', conf, '--healthz-addr', '', '--subnet-file', n.subnetFile], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/bad\.json: SubnetLen: 12 must be longer than the prefix of Network/);
    expect(trySh('nsenter', [`--net=${n.netns}`, 'ip', 'link', 'show', 'berth.1']).code).not.toBe(0);
    const flag = spawnSync(process.execPath, [join(repoRoot, 'dist/bin/berth-overlayd'), '--lease-store', 'zookeeper'], { encoding: 'utf8' });
    expect(flag.status).not.toBe(0);
    expect(flag.stderr).toMatch(/leaseStore/);
  });
});
