import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostVethName } from '../../../../cni-plugins/bridge/plan.js';
import { berthCniDir, berthPlugin, repoRoot, runCni, type CniCall } from '../../../../world/cni.js';
import { isRoot, linkExists, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf, bridgePorts, firstIp, leaseFiles } from '../../../../world/pod-network.js';
import { daemonBuildId, daemonBundle, DaemonUnderTest, holdingIpam, removeDir, tempDir, waitFor } from './daemon.js';

// When the daemon cannot serve a call - absent, another build, killed mid-request, stopping -
// the plugin executable still behaves exactly like the standalone plugin, or reports code 11.

const world = new TestWorld();
let dir = '';
let daemon: DaemonUnderTest | undefined;
let bridge = '';
let network = '';
let release = '';

const socket = () => join(dir, 'cni.sock');
const call = (command: string, containerId: string, netns: string | undefined, over: Partial<CniCall> = {}): CniCall => ({
  command, containerId, ifname: 'eth0', ...(netns ? { netns } : {}), env: { BERTH_CNI_SOCKET: socket() }, ...over,
});

function bridgeConf(ipamType = 'berth-host-local') {
  return bridgeNetconf({ network, bridge, subnet: '10.203.8.0/24', dataDir: join(dir, 'ipam') }, {}, { type: ipamType });
}

const leases = () => leaseFiles(join(dir, 'ipam'), network);
const ipOf = firstIp;
const ports = () => bridgePorts(bridge);

/** ADD two pods, ping between them, DEL both: the whole life of a pod network. */
async function podLifecycle(plugin: string, over: Partial<CniCall> = {}): Promise<void> {
  const a = world.netns('bt-fb-');
  const b = world.netns('bt-fb-');
  const addA = await runCni(plugin, call('ADD', 'pod-a', a.path, over), bridgeConf());
  const addB = await runCni(plugin, call('ADD', 'pod-b', b.path, over), bridgeConf());
  expect(addA.code, addA.stdout + addA.stderr).toBe(0);
  expect(addB.code, addB.stdout + addB.stderr).toBe(0);
  expect(world.inNetns(a.name, 'ping', ['-c', '1', '-W', '2', ipOf(addB)]).code).toBe(0);
  for (const [id, ns] of [['pod-a', a], ['pod-b', b]] as const) {
    const del = await runCni(plugin, call('DEL', id, ns.path, over), bridgeConf());
    expect(del.code, del.stdout).toBe(0);
  }
  expect(ports()).toEqual([]);
  expect(leases()).toEqual([]);
}

describe.skipIf(!isRoot)('the plugin executables without a daemon that can serve them', () => {
  beforeEach(() => {
    dir = tempDir('berth-cnid-fb-');
    bridge = world.link(uniqueName('btfb'));
    network = uniqueName('cnidfb-');
  });
  afterEach(async () => {
    if (release) writeFileSync(release, '');
    release = '';
    await daemon?.stop();
    daemon = undefined;
    world.cleanup();
    removeDir(dir);
  });

  it('with no daemon listening, the plugin runs standalone', async () => {
    await podLifecycle(berthPlugin('berth-bridge'));
  });

  it('with a stale socket file and no daemon, the plugin runs standalone', async () => {
    daemon = await DaemonUnderTest.start(socket());
    await daemon.kill(); // SIGKILL leaves the socket file behind
    expect(existsSync(socket())).toBe(true);
    await podLifecycle(berthPlugin('berth-bridge'));
  });

  it('a daemon of another build answers "mismatch" and the plugin runs standalone', async () => {
    // The same daemon with another build id, next to a symlink to dist/native.
    mkdirSync(join(dir, 'other/cnid'), { recursive: true });
    symlinkSync(join(repoRoot, 'dist/native'), join(dir, 'other/native'));
    const code = readFileSync(daemonBundle, 'utf8');
    const id = daemonBuildId();
    writeFileSync(join(dir, 'other/cnid/berth-cnid'), code.replaceAll(id, '0000000000000000'));
    writeFileSync(join(dir, 'other/cnid/package.json'), '{"type":"commonjs"}\n');
    daemon = await DaemonUnderTest.start(socket(), join(dir, 'other/cnid/berth-cnid'));
    await podLifecycle(berthPlugin('berth-bridge'));
    expect(daemon.served()).toBe(0);
    expect(daemon.declined()).toEqual([`caller build ${id} differs from the daemon's 0000000000000000`]);
  });

  it('a relocated copy of dist/cni, dist/cni-js and dist/native works, with and without the daemon', async () => {
    for (const d of ['cni', 'cni-js', 'native']) cpSync(join(repoRoot, 'dist', d), join(dir, 'opt', d), { recursive: true });
    const plugin = join(dir, 'opt/cni/berth-bridge');
    await podLifecycle(plugin, { path: join(dir, 'opt/cni') });
    daemon = await DaemonUnderTest.start(socket());
    await podLifecycle(plugin, { path: join(dir, 'opt/cni') });
    expect(daemon.served()).toBe(4);
  });

  it('a daemon killed mid-ADD yields code 11; a DEL through the standalone path then leaves nothing', async () => {
    daemon = await DaemonUnderTest.start(socket());
    const held = holdingIpam(dir);
    release = held.release;
    const ns = world.netns('bt-fb-');
    const path = `${dir}:${berthCniDir}`;
    const adding = runCni(berthPlugin('berth-bridge'), call('ADD', 'pod-k', ns.path, { path }), bridgeConf(held.type));
    await waitFor('the held IPAM ADD', () => existsSync(held.started));
    expect(linkExists(hostVethName('pod-k', 'eth0'))).toBe(true);
    expect(leases()).toHaveLength(1);
    await daemon.kill();
    const add = await adding;
    expect(add.code).toBe(1);
    expect(add.json).toMatchObject({ code: 11, msg: expect.stringContaining('try again') });

    const del = await runCni(berthPlugin('berth-bridge'), call('DEL', 'pod-k', ns.path, { path }), bridgeConf(held.type));
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(linkExists(hostVethName('pod-k', 'eth0'))).toBe(false);
    expect(linkExists('eth0', ns.name)).toBe(false);
    expect(ports()).toEqual([]);
    expect(leases()).toEqual([]);
  });

  it('SIGTERM lets a request under way finish, then the daemon exits 0 and later calls run standalone', async () => {
    daemon = await DaemonUnderTest.start(socket());
    const held = holdingIpam(dir);
    release = held.release;
    const ns = world.netns('bt-fb-');
    const path = `${dir}:${berthCniDir}`;
    const adding = runCni(berthPlugin('berth-bridge'), call('ADD', 'pod-t', ns.path, { path }), bridgeConf(held.type));
    await waitFor('the held IPAM ADD', () => existsSync(held.started));
    const stopping = daemon.stop();
    await waitFor('the socket to be removed', () => !existsSync(socket()));
    writeFileSync(held.release, '');
    const add = await adding;
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expect(ipOf(add)).toBe('10.203.8.2');
    expect(await stopping).toBe(0);
    const del = await runCni(berthPlugin('berth-bridge'), call('DEL', 'pod-t', ns.path, { path }), bridgeConf(held.type));
    expect(del.code, del.stdout).toBe(0);
    expect(leases()).toEqual([]);
    expect(ports()).toEqual([]);
  });

  it('a plugin name the daemon does not serve runs standalone (and fails cleanly without a bundle)', async () => {
    daemon = await DaemonUnderTest.start(socket());
    mkdirSync(join(dir, 'cni'));
    cpSync(berthPlugin('berth-bridge'), join(dir, 'cni/berth-unknown'));
    const out = await runCni(join(dir, 'cni/berth-unknown'), call('ADD', 'x', '/run/netns/none'), bridgeConf());
    expect(out.code).toBe(1);
    expect(out.json).toMatchObject({ cniVersion: '1.1.0', code: 999, msg: expect.stringContaining('cni-js/berth-unknown.cjs') });
    expect(daemon.declined()).toEqual(['unknown plugin "berth-unknown"']);
  });
});
