import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ifbName } from '../../../../cni-plugins/bandwidth/plan.js';
import { berthPlugin, runCni } from '../../../../world/cni.js';
import { isRoot, linkExists, trySh, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf, firstIp } from '../../../../world/pod-network.js';

// berth-bandwidth chained after berth-bridge, as a runtime runs them: the qdiscs and the ifb it
// makes, what DEL and GC leave, its errors, and the rate iperf3 measures through it between the
// host and a pod behind the bridge.

const bridgePath = berthPlugin('berth-bridge');
const bandwidthPath = berthPlugin('berth-bandwidth');
const iperf3 = '/usr/bin/iperf3';
const haveIperf = existsSync(iperf3);
if (isRoot && !haveIperf) console.log(`skipping the iperf3 measurements: ${iperf3} is not installed (bootstrap installs it)`);

const world = new TestWorld();
const children: ChildProcess[] = [];
let dataDir = '';
let bridge = '';
let network = '';

/** 10 Mbit/s each way, with a bucket of 2 Mbit (a fifth of a second at the rate). */
const rate = 10_000_000;
const burst = 2_000_000;

function bandwidthConf(limits: Record<string, unknown>, prevResult?: unknown, extra: Record<string, unknown> = {}) {
  return { cniVersion: '1.1.0', name: network, type: 'berth-bandwidth', ...limits, ...(prevResult ? { prevResult } : {}), ...extra };
}

const both = { ingressRate: rate, ingressBurst: burst, egressRate: rate, egressBurst: burst };

async function pod(id: string) {
  const ns = world.netns();
  const add = await runCni(bridgePath, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0' }, bridgeNetconf({ network, bridge, subnet: '10.204.0.0/24', dataDir }));
  expect(add.code, add.stdout).toBe(0);
  const hostVeth = (add.json!.interfaces as { name: string; sandbox?: string }[]).find((i) => !i.sandbox && i.name !== bridge)!.name;
  return { id, ns, result: add.json!, ip: firstIp(add), hostVeth };
}

function qdiscs(dev: string): string {
  return trySh('tc', ['qdisc', 'show', 'dev', dev]).stdout;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code, signal) => resolve({ code: code ?? 128, stdout, stderr: stderr + (signal ? ` (killed by ${signal})` : '') }));
  });
}

/** Start `iperf3 -s` for one test inside the pod's namespace, once it listens. */
async function iperfServer(nsPath: string, port: number): Promise<void> {
  const server = spawn('nsenter', [`--net=${nsPath}`, iperf3, '-s', '-1', '--forceflush', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(server);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('Server listening')) resolve();
    });
    server.once('exit', (code) => reject(new Error(`iperf3 -s exited with ${code}: ${out}`)));
  });
}

/**
 * Bits per second the receiver counted over a 4 s TCP run from the host (reverse: from the pod),
 * after a first second left out (-O 1): TCP's slow start and the full bucket it empties are not
 * the steady rate the limit is about.
 */
async function measure(nsPath: string, ip: string, port: number, reverse: boolean): Promise<number> {
  await iperfServer(nsPath, port);
  // Asynchronous, so the server's output is read meanwhile; bounded, so a stuck run fails the test.
  const r = await run(iperf3, ['-c', ip, '-p', String(port), '-t', '4', '-O', '1', '-J', ...(reverse ? ['-R'] : [])], 20_000);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  // iperf3 -J reports some failures (a refused connection, a busy server) as {"error": ...}.
  const report = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bits_per_second: number } } };
  const bps = report.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error(`iperf3 to ${ip}:${port} measured nothing: ${report.error ?? r.stdout.slice(0, 500)}`);
  return bps;
}

describe.skipIf(!isRoot)('berth-bandwidth with real veths and qdiscs', () => {
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'berth-bw-'));
    bridge = world.link(uniqueName('btbw'));
    network = uniqueName('bw-');
  });
  afterEach(async () => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    // GC with nothing valid removes every ifb of this test's network, whatever a failed test left.
    await runCni(bandwidthPath, { command: 'GC' }, { ...bandwidthConf({}), 'cni.dev/valid-attachments': [] }).catch(() => undefined);
    world.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('ADD puts a TBF on the host veth and an ifb behind its ingress qdisc; CHECK passes; DEL removes them, twice', async () => {
    const a = await pod('bw-a');
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    const add = await runCni(bandwidthPath, call, bandwidthConf(both, a.result));
    expect(add.code, add.stdout).toBe(0);
    const ifb = ifbName(network, a.id);
    expect(ifb).toMatch(/^bwp[0-9a-f]{12}$/);
    // The previous result plus the ifb, as the reference reports it.
    const names = (add.json!.interfaces as { name: string }[]).map((i) => i.name);
    expect(names).toEqual([...(a.result.interfaces as { name: string }[]).map((i) => i.name), ifb]);
    expect(add.json!.ips).toEqual(a.result.ips);

    expect(qdiscs(a.hostVeth)).toMatch(/qdisc tbf 1: root .*rate 10Mbit burst 250000b/);
    expect(qdiscs(a.hostVeth)).toMatch(/qdisc ingress ffff:/);
    expect(trySh('tc', ['filter', 'show', 'dev', a.hostVeth, 'ingress']).stdout).toContain(`Egress Redirect to device ${ifb}`);
    expect(qdiscs(ifb)).toMatch(/qdisc tbf 1: root .*rate 10Mbit burst 250000b/);
    expect(trySh('ip', ['-d', 'link', 'show', ifb]).stdout).toContain(`alias berth-bandwidth net=${network} id=${a.id} if=eth0`);

    const check = await runCni(bandwidthPath, { ...call, command: 'CHECK' }, bandwidthConf(both, add.json));
    expect(check.code, check.stdout).toBe(0);

    for (let i = 0; i < 2; i++) {
      const del = await runCni(bandwidthPath, { ...call, command: 'DEL' }, bandwidthConf(both));
      expect(del.code, del.stdout).toBe(0);
    }
    expect(linkExists(ifb)).toBe(false);
    expect(qdiscs(a.hostVeth)).not.toMatch(/tbf|ingress/);
  });

  it('CHECK fails once the ifb is gone behind its back', async () => {
    const a = await pod('bw-c');
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    const add = await runCni(bandwidthPath, call, bandwidthConf(both, a.result));
    expect(add.code, add.stdout).toBe(0);
    trySh('ip', ['link', 'del', ifbName(network, a.id)]);
    const check = await runCni(bandwidthPath, { ...call, command: 'CHECK' }, bandwidthConf(both, add.json));
    expect(check.code).not.toBe(0);
    expect(check.json?.msg).toContain(ifbName(network, a.id));
  });

  it('DEL succeeds without the namespace and removes the ifb', async () => {
    const a = await pod('bw-d');
    const add = await runCni(bandwidthPath, { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' }, bandwidthConf(both, a.result));
    expect(add.code, add.stdout).toBe(0);
    trySh('ip', ['netns', 'del', a.ns.name]);
    for (const netns of [a.ns.path, undefined]) {
      const del = await runCni(bandwidthPath, { command: 'DEL', containerId: a.id, ifname: 'eth0', ...(netns ? { netns } : {}) }, bandwidthConf(both));
      expect(del.code, del.stdout).toBe(0);
    }
    expect(linkExists(ifbName(network, a.id))).toBe(false);
  });

  it('the bandwidth capability shapes when the config has no limits of its own; none at all passes the result through', async () => {
    const a = await pod('bw-r');
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    const none = await runCni(bandwidthPath, call, bandwidthConf({}, a.result));
    expect(none.code, none.stdout).toBe(0);
    expect(none.json!.interfaces).toEqual(a.result.interfaces);
    expect(qdiscs(a.hostVeth)).not.toContain('tbf');
    const add = await runCni(bandwidthPath, call, bandwidthConf({}, a.result, { runtimeConfig: { bandwidth: { ingressRate: 2_000_000, ingressBurst: 400_000 } } }));
    expect(add.code, add.stdout).toBe(0);
    expect(qdiscs(a.hostVeth)).toMatch(/tbf .*rate 2Mbit burst 50000b/);
    // Only ingress was asked for: no ifb.
    expect(linkExists(ifbName(network, a.id))).toBe(false);
  });

  it('GC removes the ifbs of attachments not in the valid list and keeps the others', async () => {
    const keep = await pod('bw-keep');
    const drop = await pod('bw-drop');
    for (const p of [keep, drop]) {
      expect((await runCni(bandwidthPath, { command: 'ADD', containerId: p.id, netns: p.ns.path, ifname: 'eth0' }, bandwidthConf(both, p.result))).code).toBe(0);
    }
    const gc = await runCni(bandwidthPath, { command: 'GC' }, { ...bandwidthConf({}), 'cni.dev/valid-attachments': [{ containerID: keep.id, ifname: 'eth0' }] });
    expect(gc.code, gc.stdout).toBe(0);
    expect(linkExists(ifbName(network, keep.id))).toBe(true);
    expect(linkExists(ifbName(network, drop.id))).toBe(false);
  });

  const badConfigs: [string, Record<string, unknown>, number, string][] = [
    ['a rate without a burst', { ingressRate: rate }, 7, 'ingressBurst: must be set'],
    ['a burst without a rate', { egressBurst: burst }, 7, 'egressRate: must be set'],
    ['a negative rate', { egressRate: -1, egressBurst: burst }, 7, 'egressRate: expected a non-negative integer'],
    ['a bucket of 4 GiB', { ingressRate: rate, ingressBurst: 8 * 0xffffffff }, 7, 'more than the 4 GiB'],
    ['a bad capability', { runtimeConfig: { bandwidth: { ingressRate: 'fast', ingressBurst: 1 } } }, 7, 'runtimeConfig.bandwidth.ingressRate'],
    ['both shapedSubnets and unshapedSubnets', { ...both, shapedSubnets: ['10.0.0.0/8'], unshapedSubnets: ['10.1.0.0/16'] }, 7, 'set one of the two'],
    ['a bad subnet', { ...both, unshapedSubnets: ['10.0.0.0/33'] }, 7, 'unshapedSubnets[0]'],
  ];
  for (const [what, conf, code, msg] of badConfigs) {
    it(`ADD with ${what} is the spec's error ${code} naming the field, and changes nothing`, async () => {
      const a = await pod(uniqueName('bw-e'));
      const add = await runCni(bandwidthPath, { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' }, bandwidthConf(conf, a.result));
      expect(add.code).toBe(1);
      expect(add.json).toMatchObject({ cniVersion: '1.1.0', code });
      expect(add.json!.msg).toContain(msg);
      expect(qdiscs(a.hostVeth)).not.toMatch(/tbf|ingress/);
    });
  }

  it('with subnets: an HTB root whose class 1:1 holds the limit, a u32 filter per subnet on the far end; CHECK passes; DEL removes all', async () => {
    const a = await pod('bw-sub');
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    const limits = { ...both, unshapedSubnets: ['10.204.0.0/24', 'fd00:1::/64'] };
    const add = await runCni(bandwidthPath, call, bandwidthConf(limits, a.result));
    expect(add.code, add.stdout).toBe(0);
    const ifb = ifbName(network, a.id);
    for (const dev of [a.hostVeth, ifb]) {
      // unshapedSubnets: what no filter picks is shaped (default class 1:1).
      expect(qdiscs(dev)).toMatch(/qdisc htb 1: root .*default 0x1\b/);
      expect(trySh('tc', ['class', 'show', 'dev', dev]).stdout).toMatch(/class htb 1:1 root .*rate 10Mbit ceil 10Mbit burst 250000b/);
    }
    // Traffic to the pod is matched on its source (the far end), traffic from it on its destination.
    const vethFilters = trySh('tc', ['filter', 'show', 'dev', a.hostVeth, 'parent', '1:']).stdout;
    expect(vethFilters).toMatch(/flowid 1:2/);
    expect(vethFilters).toContain('match 0acc0000/ffffff00 at 12');
    expect(trySh('tc', ['filter', 'show', 'dev', ifb, 'parent', '1:']).stdout).toContain('match 0acc0000/ffffff00 at 16');
    const check = await runCni(bandwidthPath, { ...call, command: 'CHECK' }, bandwidthConf(limits, add.json));
    expect(check.code, check.stdout).toBe(0);
    // CHECK without the subnets wants a TBF root, and says what it found.
    const plain = await runCni(bandwidthPath, { ...call, command: 'CHECK' }, bandwidthConf(both, add.json));
    expect(plain.code).not.toBe(0);
    expect(plain.json?.msg).toContain('a htb root qdisc, want tbf');
    const del = await runCni(bandwidthPath, { ...call, command: 'DEL' }, bandwidthConf(limits));
    expect(del.code, del.stdout).toBe(0);
    expect(linkExists(ifb)).toBe(false);
    expect(qdiscs(a.hostVeth)).not.toMatch(/htb|tbf|ingress/);
  });

  it.skipIf(!haveIperf)('iperf3: traffic with the host is shaped when its subnet is in shapedSubnets, and not when it is in unshapedSubnets or outside shapedSubnets', async () => {
    // The host reaches the pod from the bridge's address, 10.204.0.1.
    const cases: [string, Record<string, unknown>, boolean][] = [
      ['shapedSubnets holds the host', { shapedSubnets: ['10.204.0.0/24'] }, true],
      ['unshapedSubnets holds the host', { unshapedSubnets: ['10.204.0.0/24'] }, false],
      ['shapedSubnets without the host', { shapedSubnets: ['192.0.2.0/24'] }, false],
    ];
    let port = 15210;
    for (const [what, subnets, shaped] of cases) {
      const a = await pod(uniqueName('bw-s'));
      const add = await runCni(bandwidthPath, { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' }, bandwidthConf({ ...both, ...subnets }, a.result));
      expect(add.code, add.stdout).toBe(0);
      const toPod = await measure(a.ns.path, a.ip, port++, false);
      const fromPod = await measure(a.ns.path, a.ip, port++, true);
      console.log(`iperf3, ${what}: to the pod ${(toPod / 1e6).toFixed(2)} Mbit/s, from it ${(fromPod / 1e6).toFixed(2)} Mbit/s`);
      for (const measured of [toPod, fromPod]) {
        if (shaped) expect(Math.abs(measured - rate) / rate, what).toBeLessThan(0.1);
        else expect(measured, what).toBeGreaterThan(3 * rate);
      }
    }
  }, 90_000);

  it.skipIf(!haveIperf)('iperf3 measures 10 Mbit/s within 10% to the pod and from it', async () => {
    const a = await pod('bw-perf');
    const add = await runCni(bandwidthPath, { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' }, bandwidthConf(both, a.result));
    expect(add.code, add.stdout).toBe(0);
    const toPod = await measure(a.ns.path, a.ip, 15201, false);
    const fromPod = await measure(a.ns.path, a.ip, 15202, true);
    console.log(`iperf3 through berth-bandwidth at ${rate / 1e6} Mbit/s: to the pod ${(toPod / 1e6).toFixed(2)} Mbit/s, from it ${(fromPod / 1e6).toFixed(2)} Mbit/s`);
    expect(Math.abs(toPod - rate) / rate).toBeLessThan(0.1);
    expect(Math.abs(fromPod - rate) / rate).toBeLessThan(0.1);
  }, 30_000);
});
