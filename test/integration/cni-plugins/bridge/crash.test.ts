import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostVethName } from '../../../../cni-plugins/bridge/plan.js';
import { berthCniDir, repoRoot, runCni } from '../../../../world/cni.js';
import { isRoot, linkExists, trySh, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf, bridgePorts, leaseFiles } from '../../../../world/pod-network.js';

// A plugin killed with SIGKILL in the middle of an ADD, followed by the DEL a runtime sends
// after a failed ADD, must leave no veth, lease or masquerade rule behind, wherever the kill
// landed. The bundle is run directly (not through berth-cnid), so the kill hits the plugin.

const bundle = join(repoRoot, 'dist/cni-js/berth-bridge.cjs');
const world = new TestWorld();
let dataDir = '';
let bridge = '';
let network = '';

function conf() {
  return bridgeNetconf({ network, bridge, subnet: '10.204.0.0/24', dataDir }, { ipMasq: true });
}

/** Start an ADD and SIGKILL it after `ms`; resolves when it is gone. */
function killedAdd(containerId: string, netns: string, ms: number): Promise<void> {
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin', CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: berthCniDir };
  const child = spawn(process.execPath, [bundle], { env, stdio: ['pipe', 'ignore', 'ignore'] });
  child.stdin.end(JSON.stringify(conf()));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  return new Promise((resolve) => child.on('exit', () => {
    clearTimeout(timer);
    resolve();
  }));
}

const natRules = () => trySh('iptables-save', ['-t', 'nat']).stdout.split('\n').filter((l) => l.includes(`net=${network} `));

describe.skipIf(!isRoot)('berth-bridge after a crash', () => {
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'berth-crash-'));
    bridge = world.link(uniqueName('btcr'));
    network = uniqueName('crash-');
  });
  afterEach(async () => {
    await runCni(join(berthCniDir, 'berth-bridge'), { command: 'GC' }, { ...conf(), 'cni.dev/valid-attachments': [] }).catch(() => undefined);
    world.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('SIGKILL at any point of an ADD, then DEL, leaves no veth, lease or rule', async () => {
    // Kill points from "before the config is read" to "after the result": the plugin takes
    // roughly 40-120 ms here, so these cover every stage.
    const delays = [5, 25, 40, 55, 70, 85, 100, 130, 200];
    for (const [i, ms] of delays.entries()) {
      const ns = world.netns();
      const id = `crash-${i}`;
      await killedAdd(id, ns.path, ms);
      const del = await runCni(join(berthCniDir, 'berth-bridge'), { command: 'DEL', containerId: id, netns: ns.path, ifname: 'eth0' }, conf());
      expect(del.code, `DEL after a kill at ${ms} ms: ${del.stdout}`).toBe(0);
      expect(linkExists('eth0', ns.name), `container veth after a kill at ${ms} ms`).toBe(false);
      expect(linkExists(hostVethName(id, 'eth0')), `host veth after a kill at ${ms} ms`).toBe(false);
    }
    expect(leaseFiles(dataDir, network)).toEqual([]);
    expect(bridgePorts(bridge)).toEqual([]);
    expect(natRules()).toEqual([]);
  });

  it('a new ADD of the same attachment after a killed one succeeds (the leftover veth is replaced)', async () => {
    const ns = world.netns();
    await killedAdd('again', ns.path, 60);
    // The runtime's DEL never came (e.g. it crashed too); the namespace was recreated.
    trySh('ip', ['-n', ns.name, 'link', 'del', 'eth0']);
    const add = await runCni(join(berthCniDir, 'berth-bridge'), { command: 'ADD', containerId: 'again', netns: ns.path, ifname: 'eth0' }, conf());
    expect(add.code, add.stdout).toBe(0);
    expect(leaseFiles(dataDir, network)).toHaveLength(1);
    expect(bridgePorts(bridge)).toHaveLength(1);
  });
});

describe.skipIf(!isRoot)('berth-bridge bad input, as the spec words it', () => {
  const plugin = join(berthCniDir, 'berth-bridge');
  const ok = { command: 'ADD', containerId: 'bad', netns: '/proc/self/ns/net', ifname: 'eth9' };
  const good = { cniVersion: '1.1.0', name: 'badnet', type: 'berth-bridge', bridge: 'btbad0', ipam: {} };
  const cases: [string, Parameters<typeof runCni>[1], string | object, number, RegExp][] = [
    ['malformed JSON', ok, '{"cniVersion":', 6, /not valid JSON/],
    ['a missing CNI_NETNS', { ...ok, netns: undefined, env: { CNI_NETNS: undefined } }, good, 4, /CNI_NETNS/],
    ['an unknown cniVersion', ok, { ...good, cniVersion: '9.9.9' }, 1, /9\.9\.9/],
    ['an unknown CNI_COMMAND', { ...ok, command: 'SPIN' }, good, 4, /SPIN/],
    ['an unsupported field value', ok, { ...good, vlanTrunk: [{ id: 3 }] }, 2, /vlanTrunk/],
    ['an invalid field', ok, { ...good, mtu: 'big' }, 7, /^mtu: /],
  ];
  for (const [what, call, stdin, code, msg] of cases) {
    it(`${what} gives error code ${code} on stdout and a non-zero exit`, async () => {
      const out = await runCni(plugin, call, stdin);
      expect(out.code).not.toBe(0);
      expect(out.json).toMatchObject({ code, msg: expect.stringMatching(msg) });
      expect(linkExists('btbad0')).toBe(false);
    });
  }
});
