import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ifbName } from '../../../../cni-plugins/bandwidth/plan.js';
import { berthPlugin, runCni, type CniCall } from '../../../../world/cni.js';
import { isRoot, linkExists, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf } from '../../../../world/pod-network.js';
import { DaemonUnderTest, removeDir, tempDir } from './daemon.js';

// berth-bandwidth and berth-tuning are berth-cnid's plugins too: through the shim, the daemon
// answers them, with the same effect as standalone.

const world = new TestWorld();
let dir = '';
let daemon: DaemonUnderTest | undefined;
let bridge = '';
let network = '';

const call = (command: string, containerId: string, netns: string): CniCall => ({ command, containerId, ifname: 'eth0', netns, env: { BERTH_CNI_SOCKET: join(dir, 'cni.sock') } });

describe.skipIf(!isRoot)('berth-cnid serving berth-bandwidth and berth-tuning', () => {
  beforeEach(async () => {
    dir = tempDir('berth-cnid-shape-');
    bridge = world.link(uniqueName('btcs'));
    network = uniqueName('cnsh-');
    daemon = await DaemonUnderTest.start(join(dir, 'cni.sock'));
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    world.cleanup();
    removeDir(dir);
  });

  it('ADD and DEL of both are served by the daemon', async () => {
    const ns = world.netns('bt-cs-');
    const add = await runCni(berthPlugin('berth-bridge'), call('ADD', 'pod-s', ns.path), bridgeNetconf({ network, bridge, subnet: '10.207.0.0/24', dataDir: join(dir, 'ipam') }));
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const base = { cniVersion: '1.1.0', name: network };
    const tuning = { ...base, type: 'berth-tuning', dataDir: join(dir, 'tuning'), mtu: 1400, prevResult: add.json };
    const tuned = await runCni(berthPlugin('berth-tuning'), call('ADD', 'pod-s', ns.path), tuning);
    expect(tuned.code, tuned.stdout + tuned.stderr).toBe(0);
    expect(world.inNetns(ns.name, 'ip', ['link', 'show', 'eth0']).stdout).toMatch(/mtu 1400 /);
    const bandwidth = { ...base, type: 'berth-bandwidth', egressRate: 1_000_000, egressBurst: 524_288, prevResult: tuned.json };
    const shaped = await runCni(berthPlugin('berth-bandwidth'), call('ADD', 'pod-s', ns.path), bandwidth);
    expect(shaped.code, shaped.stdout + shaped.stderr).toBe(0);
    expect(linkExists(ifbName(network, 'pod-s'))).toBe(true);
    for (const [plugin, conf] of [['berth-bandwidth', bandwidth], ['berth-tuning', tuning]] as const) {
      const del = await runCni(berthPlugin(plugin), call('DEL', 'pod-s', ns.path), conf);
      expect(del.code, del.stdout + del.stderr).toBe(0);
    }
    expect(linkExists(ifbName(network, 'pod-s'))).toBe(false);
    expect(world.inNetns(ns.name, 'ip', ['link', 'show', 'eth0']).stdout).toMatch(/mtu 1500 /);
    expect(daemon!.served()).toBe(5);
  });
});
