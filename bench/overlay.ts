import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { median, percentile, rssMiB } from './common.js';
import { sh } from '../world/netns.js';
import { OverlayWorld, type OverlayNode } from '../world/overlay.js';

// bench/overlay: berth's VXLAN overlay on this machine, three measurements.
// 1. Throughput (iperf3, TCP): pod to pod over berth's overlay, against the raw underlay and a
//    flannel-style VXLAN built by hand with `ip` on the same two nodes in the same run (the
//    kernel path berth should match: anything lower means a wrong MTU or offload setting).
// 2. Convergence with BENCH_OVERLAY_NODES (20) nodes: a lease is put in etcd; the time until
//    each other node's kernel has the route, seen by `ip monitor route` in every node.
// 3. Memory: berth-overlayd RSS with 20 peers, now and after BENCH_OVERLAY_SOAK_MINUTES (10).
// Targets (issue 7): berth/hand-built >= 0.95; convergence p99 < 200 ms; RSS reported.

const seconds = Number(process.env.BENCH_OVERLAY_IPERF_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_OVERLAY_ROUNDS ?? 3);
const nodeCount = Number(process.env.BENCH_OVERLAY_NODES ?? 20);
const trials = Number(process.env.BENCH_OVERLAY_LEASES ?? 30);
const soakMinutes = Number(process.env.BENCH_OVERLAY_SOAK_MINUTES ?? 10);

const inNs = (netns: string, cmd: string, args: string[]): string => sh('nsenter', [`--net=${netns}`, cmd, ...args]);

/** iperf3 from one namespace to a server in another; Gbit/s. */
async function iperf(serverNs: string, clientNs: string, serverIp: string): Promise<number> {
  const server = spawn('nsenter', [`--net=${serverNs}`, 'iperf3', '-s', '-1', '-B', serverIp], { stdio: 'ignore' });
  let last = '';
  try {
    for (let i = 0; i < 100; i++) {
      const r = spawnSync('nsenter', [`--net=${clientNs}`, 'iperf3', '-c', serverIp, '-t', String(seconds), '-J'], { encoding: 'utf8' });
      const j = r.stdout ? (JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bits_per_second: number } } }) : {};
      if (r.status === 0 && j.end?.sum_received) return j.end.sum_received.bits_per_second / 1e9;
      last = j.error ?? r.stderr;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`iperf3 to ${serverIp} failed: ${last}`);
  } finally {
    server.kill();
  }
}

/**
 * The same overlay by hand, flannel's recipe with `ip`: on each node a VXLAN device (VNI 99,
 * port 8473, nolearning) with the node's VTEP /32, a bridge with the pod gateway, a pod behind
 * a veth; and the peer's route onlink + permanent neighbour + FDB entry.
 */
function handBuilt(nodes: [OverlayNode, OverlayNode]): { netns: string; ip: string }[] {
  const pods: { netns: string; ip: string }[] = [];
  const macs: string[] = [];
  for (const [i, n] of nodes.entries()) {
    const ns = n.netns;
    inNs(ns, 'ip', ['link', 'add', 'hand.99', 'type', 'vxlan', 'id', '99', 'dev', 'eth0', 'local', n.address, 'dstport', '8473', 'nolearning']);
    inNs(ns, 'ip', ['link', 'set', 'hand.99', 'mtu', '1450', 'up']);
    inNs(ns, 'ip', ['addr', 'add', `10.98.${i + 1}.0/32`, 'dev', 'hand.99']);
    inNs(ns, 'ip', ['link', 'add', 'handbr0', 'mtu', '1450', 'type', 'bridge']);
    inNs(ns, 'ip', ['addr', 'add', `10.98.${i + 1}.1/24`, 'dev', 'handbr0']);
    inNs(ns, 'ip', ['link', 'set', 'handbr0', 'up']);
    const pod = `${n.netnsName}-hp`;
    sh('ip', ['netns', 'add', pod]);
    inNs(ns, 'ip', ['link', 'add', 'handv', 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', '1450', 'netns', pod]);
    inNs(ns, 'ip', ['link', 'set', 'handv', 'master', 'handbr0', 'up']);
    sh('ip', ['-n', pod, 'addr', 'add', `10.98.${i + 1}.2/24`, 'dev', 'eth0']);
    sh('ip', ['-n', pod, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', pod, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', pod, 'route', 'add', 'default', 'via', `10.98.${i + 1}.1`]);
    macs.push((JSON.parse(inNs(ns, 'ip', ['-j', 'link', 'show', 'hand.99'])) as { address: string }[])[0]!.address);
    pods.push({ netns: `/run/netns/${pod}`, ip: `10.98.${i + 1}.2` });
  }
  for (const [i, n] of nodes.entries()) {
    const j = 1 - i;
    const peer = nodes[j]!;
    inNs(n.netns, 'bridge', ['fdb', 'append', macs[j]!, 'dev', 'hand.99', 'dst', peer.address, 'self', 'permanent']);
    inNs(n.netns, 'ip', ['neigh', 'replace', `10.98.${j + 1}.0`, 'lladdr', macs[j]!, 'dev', 'hand.99', 'nud', 'permanent']);
    inNs(n.netns, 'ip', ['route', 'add', `10.98.${j + 1}.0/24`, 'via', `10.98.${j + 1}.0`, 'dev', 'hand.99', 'onlink']);
  }
  return pods;
}

async function throughput(): Promise<void> {
  const world = await OverlayWorld.start();
  try {
    const nodes = [world.addNode(), world.addNode()] as [OverlayNode, OverlayNode];
    for (const n of nodes) await n.start();
    const [p1, p2] = [await nodes[0].addPod(), await nodes[1].addPod()];
    const hand = handBuilt(nodes);
    for (const p of hand) world.remember(() => spawnSync('ip', ['netns', 'del', p.netns.replace('/run/netns/', '')]));
    const results = { underlay: [] as number[], hand: [] as number[], berth: [] as number[] };
    // Interleaved rounds, so a noisy moment of the machine hits all three alike.
    for (let r = 0; r < rounds; r++) {
      results.underlay.push(await iperf(nodes[1].netns, nodes[0].netns, nodes[1].address));
      results.hand.push(await iperf(hand[1]!.netns, hand[0]!.netns, hand[1]!.ip));
      results.berth.push(await iperf(p2.netns, p1.netns, p2.ip));
    }
    const m = { underlay: median(results.underlay), hand: median(results.hand), berth: median(results.berth) };
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
    console.log(`bench/overlay: iperf3 TCP ${seconds} s x ${rounds} rounds (Gbit/s, medians): underlay ${m.underlay.toFixed(2)} [${fmt(results.underlay)}], hand-built VXLAN ${m.hand.toFixed(2)} [${fmt(results.hand)}], berth ${m.berth.toFixed(2)} [${fmt(results.berth)}]`);
    console.log(`bench/overlay: ratios: berth/underlay ${(m.berth / m.underlay).toFixed(2)}, hand-built/underlay ${(m.hand / m.underlay).toFixed(2)}, berth/hand-built ${(m.berth / m.hand).toFixed(2)} (target >= 0.95)`);
  } finally {
    await world.stop();
  }
}

/** `ip monitor route` in a node: calls back with each added route's destination as it arrives. */
function monitorRoutes(node: OverlayNode, onAdd: (dst: string, at: number) => void): ChildProcess {
  const p = spawn('nsenter', [`--net=${node.netns}`, 'ip', '-o', 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let buf = '';
  p.stdout!.on('data', (b: Buffer) => {
    const at = performance.now();
    buf += b.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) if (!l.startsWith('Deleted')) onAdd(l.split(' ')[0]!, at);
  });
  return p;
}

async function convergenceAndMemory(): Promise<void> {
  const world = await OverlayWorld.start({ overlaydArgs: ['--resync-interval', '10s'] });
  const monitors: ChildProcess[] = [];
  try {
    const nodes: OverlayNode[] = [];
    for (let i = 0; i < nodeCount; i++) nodes.push(world.addNode());
    // resync-interval 1s is the world's default for tests; the bench uses the daemon's default.
    for (const n of nodes) await n.start(['--resync-interval', '10s']);
    const { Etcd3 } = await import('etcd3');
    const etcd = new Etcd3({ hosts: world.etcd!.endpoints });
    const seen = new Map<string, number[]>();
    for (const n of nodes) monitors.push(monitorRoutes(n, (dst, at) => seen.get(dst)?.push(at)));
    await new Promise((r) => setTimeout(r, 500));
    const latencies: number[] = [];
    for (let k = 0; k < trials; k++) {
      const subnet = `10.244.${200 + k}.0/24`;
      const arrivals: number[] = [];
      seen.set(subnet, arrivals);
      const value = JSON.stringify({ PublicIP: `${world.gateway.replace(/\.1$/, '')}.${200 + k}`, BackendType: 'vxlan', BackendData: { VtepMAC: `0a:58:00:00:00:${(16 + k).toString(16)}`, VNI: 1 } });
      const t0 = performance.now();
      await etcd.put(`/berth.io/network/subnets/${subnet.replace('/', '-')}`).value(value);
      const deadline = Date.now() + 5000;
      while (arrivals.length < nodes.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      if (arrivals.length < nodes.length) console.log(`bench/overlay: lease ${subnet}: only ${arrivals.length}/${nodes.length} nodes programmed it within 5 s`);
      latencies.push(...arrivals.map((a) => a - t0));
    }
    console.log(
      `bench/overlay: convergence, lease put in etcd -> route in the kernel, ${nodeCount} nodes x ${trials} leases: p50 ${median(latencies).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms (target p99 < 200 ms)`,
    );
    for (let k = 0; k < trials; k++) await etcd.delete().key(`/berth.io/network/subnets/10.244.${200 + k}.0-24`);
    etcd.close();
    // A daemon that dies during the run is a finding, not a crash of the benchmark.
    const rss = () =>
      nodes.flatMap((n) => {
        if (n.proc!.exitCode === null && n.proc!.signalCode === null) return [rssMiB(n.proc!.pid!)];
        console.log(`bench/overlay: berth-overlayd on node ${n.index} exited (${n.proc!.exitCode ?? n.proc!.signalCode}): ${n.log().slice(-3000)}`);
        return [];
      });
    const before = rss();
    console.log(`bench/overlay: berth-overlayd RSS with ${nodeCount - 1} peers: median ${median(before).toFixed(1)} MiB, max ${Math.max(...before).toFixed(1)} MiB`);
    if (soakMinutes > 0) {
      await new Promise((r) => setTimeout(r, soakMinutes * 60_000));
      const after = rss();
      console.log(`bench/overlay: berth-overlayd RSS after ${soakMinutes} min with ${nodeCount - 1} peers: median ${median(after).toFixed(1)} MiB, max ${Math.max(...after).toFixed(1)} MiB`);
    }
  } finally {
    for (const m of monitors) m.kill();
    await world.stop();
  }
}

async function main(): Promise<void> {
  const only = process.argv[2];
  if (!only || only === 'throughput') await throughput();
  if (!only || only === 'convergence') await convergenceAndMemory();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
