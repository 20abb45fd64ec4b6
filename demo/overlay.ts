import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { errorMessage } from '../lib/errors.js';
import { OverlayWorld, waitFor, type OverlayNode, type Pod } from '../world/overlay.js';

// The overlay demo: a three-node cluster on this machine. etcd (Debian's) holds the leases;
// each "node" is a network namespace on a veth underlay running its own berth-overlayd; a pod
// per node is added through berth-overlay. Pods talk across nodes without NAT; a node that
// leaves disappears from the others' routes; nothing is left behind.

const say = (text: string) => process.stdout.write(`${text}\n`);
const step = (text: string) => say(`\n==> ${text}`);

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(what);
  say(`    ok: ${what}`);
}

function overlayRoutes(n: OverlayNode): string[] {
  return n.routes().filter((r) => r.dev === 'berth.1').map((r) => `${r.dst} via ${r.gateway} dev berth.1 onlink`);
}

export async function runOverlayDemo(): Promise<number> {
  let world: OverlayWorld | undefined;
  let failed = false;
  const netnsBefore = new Set(existsSync('/run/netns') ? readdirSync('/run/netns') : []);
  try {
    step('etcd (Debian etcd-server) and an underlay bridge; three nodes as network namespaces');
    world = await OverlayWorld.start();
    say(`    etcd ${world.etcd!.endpoints[0]} (nodes reach it at ${world.etcdEndpoint}), underlay ${world.gateway}/24 on ${world.bridge}`);
    const nodes = [world.addNode(), world.addNode(), world.addNode()];
    step('berth-overlayd on every node (--lease-store etcd): a subnet each, a VXLAN device, subnet.env');
    for (const n of nodes) {
      await n.start();
      say(`    node${n.index} ${n.address}: subnet ${n.subnet()}, MTU ${n.subnetEnv().BERTH_MTU}, /readyz ${n.readyz()}`);
    }
    say(`    node1's routes to the others:\n      ${overlayRoutes(nodes[0]!).join('\n      ')}`);
    step('a pod per node through berth-overlay (berth-bridge + berth-host-local on the node subnet)');
    const pods: Pod[] = [];
    for (const n of nodes) {
      const p = await n.addPod();
      pods.push(p);
      say(`    pod on node${n.index}: ${p.ip}`);
    }
    step('pod to pod across nodes: ping every pair, and the address the receiver sees (no NAT)');
    for (const [i, from] of pods.entries()) {
      for (const [j, to] of pods.entries()) if (i !== j) check(world.ping(from.netns, to.ip), `pod ${from.ip} (node${i + 1}) -> pod ${to.ip} (node${j + 1})`);
    }
    const seen = await world.sourceSeen(pods[0]!, pods[2]!);
    check(seen === pods[0]!.ip, `pod on node3 sees the connection from ${seen} (the sender's own address)`);
    step('node3 leaves (berth-overlayd --remove-on-exit, then SIGTERM): its lease goes, the others drop its route');
    const gone = nodes[2]!.subnet();
    await nodes[2]!.stop();
    await nodes[2]!.start(['--remove-on-exit']);
    await nodes[2]!.stop();
    await waitFor(`node1 and node2 to drop the route to ${gone}`, () => !nodes[0]!.routes().some((r) => r.dst === gone) && !nodes[1]!.routes().some((r) => r.dst === gone));
    say(`    ok: node1 and node2 no longer route ${gone}`);
    check(world.ping(pods[0]!.netns, pods[1]!.ip), 'node1 and node2 pods still talk');
    const m = /^berth_overlay_programming_seconds_count (\d+)$/m.exec(nodes[0]!.metrics());
    say(`    node1 /metrics: ${m?.[1] ?? '?'} lease events programmed`);
  } catch (err) {
    failed = true;
    say(`\nFAILED: ${errorMessage(err)}`);
  } finally {
    step('tear down: berth-overlayd, pods, nodes, underlay, etcd');
    const bridge = world?.bridge;
    await world?.stop();
    const left = (existsSync('/run/netns') ? readdirSync('/run/netns') : []).filter((n) => !netnsBefore.has(n) && /^bo[pn]-/.test(n));
    const link = bridge ? spawnSync('ip', ['link', 'show', bridge]).status === 0 : false;
    const etcd = spawnSync('pgrep', ['-f', 'berth-etcd-']).status === 0;
    if (left.length || link || etcd) {
      failed = true;
      say(`    LEAKED: ${[...left, ...(link ? [bridge!] : []), ...(etcd ? ['etcd process'] : [])].join(', ')}`);
    } else say('    ok: no namespace, link or etcd left');
  }
  say(failed ? '\noverlay demo: FAILED' : '\noverlay demo: passed');
  return failed ? 1 : 0;
}
