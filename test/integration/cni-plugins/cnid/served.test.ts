import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { berthPlugin, runCni, type CniCall } from '../../../../world/cni.js';
import { isRoot, linkExists, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf, bridgePorts, firstIp, leaseFiles } from '../../../../world/pod-network.js';
import { DaemonUnderTest, removeDir, tempDir } from './daemon.js';

// The plugin executables (the shim) with berth-cnid running: the same operations a runtime runs,
// with the same results as standalone, and served by the daemon rather than a Node start each.

const world = new TestWorld();
let dir = '';
let daemon: DaemonUnderTest | undefined;
let bridge = '';
let network = '';

const env = () => ({ BERTH_CNI_SOCKET: join(dir, 'cni.sock') });
const call = (command: string, containerId: string, netns: string | undefined, over: Partial<CniCall> = {}): CniCall => ({
  command, containerId, ifname: 'eth0', ...(netns ? { netns } : {}), env: env(), ...over,
});

function bridgeConf(over: Record<string, unknown> = {}) {
  return bridgeNetconf({ network, bridge, subnet: '10.203.0.0/24', dataDir: join(dir, 'ipam') }, over);
}

const leases = () => leaseFiles(join(dir, 'ipam'), network);
const ipOf = firstIp;
const ports = () => bridgePorts(bridge);
const ping = (ns: string, ip: string) => world.inNetns(ns, 'ping', ['-c', '1', '-W', '2', ip]).code;

describe.skipIf(!isRoot)('berth-cnid serving the plugin executables', () => {
  beforeEach(async () => {
    dir = tempDir('berth-cnid-it-');
    bridge = world.link(uniqueName('btcd'));
    network = uniqueName('cnid-');
    daemon = await DaemonUnderTest.start(join(dir, 'cni.sock'));
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    world.cleanup();
    removeDir(dir);
  });

  it('bridge ADD, CHECK and DEL work in real namespaces, and the daemon ran every call', async () => {
    const a = world.netns('bt-cd-');
    const b = world.netns('bt-cd-');
    const addA = await runCni(berthPlugin('berth-bridge'), call('ADD', 'pod-a', a.path), bridgeConf());
    const addB = await runCni(berthPlugin('berth-bridge'), call('ADD', 'pod-b', b.path), bridgeConf());
    expect(addA.code, addA.stdout + addA.stderr).toBe(0);
    expect(addB.code, addB.stdout + addB.stderr).toBe(0);
    expect(addA.stdout.endsWith('}\n')).toBe(true);
    const [ipA, ipB] = [ipOf(addA), ipOf(addB)];
    expect(ipA).not.toBe(ipB);
    expect(ping(a.name, ipB)).toBe(0);
    expect(ping(b.name, ipA)).toBe(0);
    expect(ping(a.name, '10.203.0.1')).toBe(0);

    const check = await runCni(berthPlugin('berth-bridge'), call('CHECK', 'pod-a', a.path), { ...bridgeConf(), prevResult: addA.json });
    expect(check.code, check.stdout).toBe(0);
    expect(check.stdout).toBe('');
    for (const [id, ns] of [['pod-a', a], ['pod-b', b]] as const) {
      for (let i = 0; i < 2; i++) {
        const del = await runCni(berthPlugin('berth-bridge'), call('DEL', id, ns.path), bridgeConf());
        expect(del.code, del.stdout).toBe(0);
      }
    }
    expect(ports()).toEqual([]);
    expect(leases()).toEqual([]);
    expect(linkExists('eth0', a.name)).toBe(false);
    expect(daemon!.served()).toBe(7);
    expect(daemon!.declined()).toEqual([]);
  });

  it('8 concurrent bridge ADDs on a bridge that does not exist yet all succeed, with distinct addresses', async () => {
    // In one process the calls interleave far more tightly than separate plugin processes do.
    const nses = Array.from({ length: 8 }, () => world.netns('bt-cd-'));
    const adds = await Promise.all(nses.map((ns, i) => runCni(berthPlugin('berth-bridge'), call('ADD', `pod-${i}`, ns.path), bridgeConf())));
    for (const a of adds) expect(a.code, a.stdout + a.stderr).toBe(0);
    expect(new Set(adds.map(ipOf)).size).toBe(8);
    expect(ports()).toHaveLength(8);
    expect(ping(nses[0]!.name, ipOf(adds[7]!))).toBe(0);
    const dels = await Promise.all(nses.map((ns, i) => runCni(berthPlugin('berth-bridge'), call('DEL', `pod-${i}`, ns.path), bridgeConf())));
    for (const d of dels) expect(d.code, d.stdout).toBe(0);
    expect(leases()).toEqual([]);
    expect(ports()).toEqual([]);
    expect(daemon!.served()).toBe(16);
  });

  it('errors come back exactly as the standalone plugin prints them', async () => {
    const ns = world.netns('bt-cd-');
    const viaDaemon = await runCni(berthPlugin('berth-bridge'), call('ADD', 'pod-x', ns.path), { ...bridgeConf(), mtu: 'big' });
    const standalone = await runCni(berthPlugin('berth-bridge'), call('ADD', 'pod-x', ns.path, { env: { BERTH_CNI_SOCKET: join(dir, 'absent.sock') } }), { ...bridgeConf(), mtu: 'big' });
    expect(viaDaemon.code).toBe(1);
    expect(viaDaemon.json?.code).toBe(7);
    expect(viaDaemon).toEqual(standalone);
    expect(daemon!.served()).toBe(1);
  });

  it('berth-loopback brings lo up and down', async () => {
    const ns = world.netns('bt-cd-');
    const conf = { cniVersion: '1.0.0', name: 'lo', type: 'berth-loopback' };
    const add = await runCni(berthPlugin('berth-loopback'), call('ADD', 'ctr', ns.path, { ifname: 'lo' }), conf);
    expect(add.code, add.stdout).toBe(0);
    expect(add.json?.ips).toEqual([{ address: '127.0.0.1/8', interface: 0 }, { address: '::1/128', interface: 0 }]);
    expect(world.inNetns(ns.name, 'ping', ['-c', '1', '-W', '1', '127.0.0.1']).code).toBe(0);
    const del = await runCni(berthPlugin('berth-loopback'), call('DEL', 'ctr', ns.path, { ifname: 'lo' }), conf);
    expect(del.code, del.stdout).toBe(0);
    expect(world.inNetns(ns.name, 'ip', ['-o', 'link', 'show', 'lo']).stdout).not.toContain(',UP');
    expect(daemon!.served()).toBe(2);
  });

  it('24 concurrent berth-host-local ADDs get 24 distinct addresses; DELs release them all', async () => {
    const conf = { cniVersion: '1.1.0', name: network, type: 'bridge', ipam: { type: 'berth-host-local', ranges: [[{ subnet: '10.203.1.0/24' }]], dataDir: join(dir, 'ipam') } };
    const ids = Array.from({ length: 24 }, (_, i) => `ctr-${i}`);
    const adds = await Promise.all(ids.map((id) => runCni(berthPlugin('berth-host-local'), call('ADD', id, '/run/netns/none'), conf)));
    for (const a of adds) expect(a.code, a.stdout + a.stderr).toBe(0);
    expect(new Set(adds.map(ipOf)).size).toBe(24);
    expect(leases()).toHaveLength(24);
    const dels = await Promise.all(ids.map((id) => runCni(berthPlugin('berth-host-local'), call('DEL', id, undefined), conf)));
    for (const d of dels) expect(d.code, d.stdout).toBe(0);
    expect(leases()).toEqual([]);
    expect(daemon!.served()).toBe(48);
  });

  it('VERSION, and a request whose log level differs from the daemon is run standalone', async () => {
    const version = await runCni(berthPlugin('berth-bridge'), { command: 'VERSION', env: env() }, { cniVersion: '0.4.0' });
    expect(version.json).toEqual({ cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    expect(daemon!.served()).toBe(1);
    const conf = { cniVersion: '1.1.0', name: network, type: 'bridge', ipam: { type: 'berth-host-local', subnet: '10.203.2.0/24', dataDir: join(dir, 'ipam') } };
    const add = await runCni(berthPlugin('berth-host-local'), call('ADD', 'dbg', '/run/netns/none', { env: { ...env(), BERTH_LOG_LEVEL: 'debug' } }), conf);
    expect(add.code, add.stdout).toBe(0);
    // The debug log on stderr is the standalone plugin's (its pid is the plugin's, not the daemon's).
    expect(add.stderr).toContain('"msg":"allocated"');
    expect(add.stderr).not.toContain(`"pid":${daemon!.pid}`);
    expect(daemon!.served()).toBe(1);
    expect(daemon!.declined()).toEqual(['BERTH_LOG_LEVEL=debug is not the daemon\'s level']);
  });
});
