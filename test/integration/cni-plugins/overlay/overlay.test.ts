import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatSubnetEnv } from '../../../../overlayd/subnet-env.js';
import { berthPlugin, runCni } from '../../../../world/cni.js';
import { isRoot, linkExists, trySh, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgePorts, firstIp, leaseFiles } from '../../../../world/pod-network.js';

// berth-overlay, run as a runtime runs it: it reads a subnet file like berth-overlayd writes and
// delegates to berth-bridge + berth-host-local, in real network namespaces.

const overlayPath = berthPlugin('berth-overlay');
const world = new TestWorld();
let dir = '';
let subnetFile = '';
let dataDir = '';
let leaseDir = '';
let bridge = '';
let network = '';

const nodeSubnet = { network: '10.202.0.0/16', subnet: '10.202.7.1/24', mtu: 1400, ipMasq: true };

function writeSubnetFile(text = formatSubnetEnv(nodeSubnet)): void {
  writeFileSync(subnetFile, text);
}

function conf(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: network,
    type: 'berth-overlay',
    subnetFile,
    dataDir,
    delegate: { bridge },
    ipam: { dataDir: leaseDir },
    ...over,
  };
}

function call(command: string, containerId: string, netns?: string) {
  return { command, containerId, ifname: 'eth0', ...(netns ? { netns } : {}) };
}

const saved = (id: string) => join(dataDir, id);
const leases = () => leaseFiles(leaseDir, network);

describe.skipIf(!isRoot)('berth-overlay in real network namespaces', () => {
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-overlay-'));
    subnetFile = join(dir, 'subnet.env');
    dataDir = join(dir, 'saved');
    leaseDir = join(dir, 'leases');
    bridge = world.link(uniqueName('btov'));
    network = uniqueName('ovl-');
  });
  afterEach(async () => {
    // GC with no valid attachment releases whatever a failed test left (it falls back to the
    // saved configs when the subnet file is gone); then namespaces, the bridge and the files.
    await runCni(overlayPath, { command: 'GC' }, { ...conf(), 'cni.dev/valid-attachments': [] }).catch(() => undefined);
    world.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ADD gives the pod an address in the node subnet, the overlay MTU and a route to the cluster network', async () => {
    writeSubnetFile();
    const ns = world.netns();
    const add = await runCni(overlayPath, call('ADD', 'pod-a', ns.path), conf());
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const ip = firstIp(add);
    expect(ip).toMatch(/^10\.202\.7\.\d+$/);
    expect(ip).not.toBe('10.202.7.1');
    expect((add.json?.ips as { gateway: string }[])[0]?.gateway).toBe('10.202.7.1');
    expect(world.inNetns(ns.name, 'ip', ['-o', 'link', 'show', 'eth0']).stdout).toContain('mtu 1400');
    expect(world.inNetns(ns.name, 'ip', ['route', 'show', '10.202.0.0/16']).stdout).toContain('via 10.202.7.1 dev eth0');
    expect(world.inNetns(ns.name, 'ping', ['-c', '1', '-W', '2', '10.202.7.1']).code).toBe(0);
    expect(bridgePorts(bridge)).toHaveLength(1);

    const savedConf = JSON.parse(readFileSync(saved('pod-a'), 'utf8')) as Record<string, unknown>;
    expect(savedConf).toMatchObject({
      name: network,
      type: 'berth-bridge',
      bridge,
      isGateway: true,
      ipMasq: false,
      mtu: 1400,
      ipam: { type: 'berth-host-local', dataDir: leaseDir, ranges: [[{ subnet: '10.202.7.0/24' }]], routes: [{ dst: '10.202.0.0/16' }] },
    });

    const check = await runCni(overlayPath, call('CHECK', 'pod-a', ns.path), { ...conf(), prevResult: add.json });
    expect(check.code, check.stdout).toBe(0);
  });

  it('DEL uses the saved config after the subnet file is gone, and a second DEL succeeds', async () => {
    writeSubnetFile();
    const ns = world.netns();
    const add = await runCni(overlayPath, call('ADD', 'pod-d', ns.path), conf());
    expect(add.code, add.stdout).toBe(0);
    expect(leases()).toHaveLength(1);
    rmSync(subnetFile);

    for (let i = 0; i < 2; i++) {
      const del = await runCni(overlayPath, call('DEL', 'pod-d', ns.path), { ...conf(), prevResult: add.json });
      expect(del.code, del.stdout).toBe(0);
    }
    expect(bridgePorts(bridge)).toEqual([]);
    expect(linkExists('eth0', ns.name)).toBe(false);
    expect(leases()).toEqual([]);
    expect(existsSync(saved('pod-d'))).toBe(false);
  });

  it('DEL of an unknown container with neither a saved config nor a subnet file succeeds', async () => {
    const del = await runCni(overlayPath, call('DEL', 'never-added'), conf());
    expect(del.code, del.stdout).toBe(0);
  });

  it('STATUS is code 50 naming the subnet file until it exists, then ready', async () => {
    const before = await runCni(overlayPath, { command: 'STATUS' }, conf());
    expect(before.code).not.toBe(0);
    expect(before.json).toMatchObject({ code: 50 });
    expect(before.json?.msg).toContain(subnetFile);
    writeSubnetFile();
    const after = await runCni(overlayPath, { command: 'STATUS' }, conf());
    expect(after.code, after.stdout).toBe(0);
  });

  it('ADD before the subnet file exists is "try again later" (11) naming the file, and saves nothing', async () => {
    const ns = world.netns();
    const add = await runCni(overlayPath, call('ADD', 'early', ns.path), conf());
    expect(add.code).not.toBe(0);
    expect(add.json).toMatchObject({ code: 11 });
    expect(add.json?.msg).toContain(subnetFile);
    expect(existsSync(saved('early'))).toBe(false);
  });

  it('a malformed subnet file fails ADD with an error naming the file and the field', async () => {
    writeSubnetFile('BERTH_NETWORK=10.202.0.0/16\nBERTH_SUBNET=10.202.7.1/24\nBERTH_MTU=jumbo\n');
    const ns = world.netns();
    const add = await runCni(overlayPath, call('ADD', 'bad', ns.path), conf());
    expect(add.code).not.toBe(0);
    expect(add.json).toMatchObject({ code: 7 });
    expect(add.json?.msg).toContain(subnetFile);
    expect(add.json?.msg).toContain('BERTH_MTU');
    expect(existsSync(saved('bad'))).toBe(false);
    const status = await runCni(overlayPath, { command: 'STATUS' }, conf());
    expect(status.json).toMatchObject({ code: 50 });
    expect(status.json?.msg).toContain('BERTH_MTU');
  });

  it('an unknown config field is code 2 naming the field', async () => {
    writeSubnetFile();
    const ns = world.netns();
    const add = await runCni(overlayPath, call('ADD', 'unknown', ns.path), conf({ bridge: 'x' }));
    expect(add.json).toMatchObject({ code: 2 });
    expect(add.json?.msg).toMatch(/^bridge: /);
  });

  it('CHECK without a saved config fails naming the container', async () => {
    writeSubnetFile();
    const ns = world.netns();
    const check = await runCni(overlayPath, call('CHECK', 'not-here', ns.path), { ...conf(), prevResult: { cniVersion: '1.1.0' } });
    expect(check.code).not.toBe(0);
    expect(check.json?.msg).toContain('not-here');
  });

  it('GC releases the lease and the saved config of an attachment not in the valid list', async () => {
    writeSubnetFile();
    const keep = world.netns();
    const stale = world.netns();
    expect((await runCni(overlayPath, call('ADD', 'keep', keep.path), conf())).code).toBe(0);
    expect((await runCni(overlayPath, call('ADD', 'stale', stale.path), conf())).code).toBe(0);
    expect(leases()).toHaveLength(2);

    const gc = await runCni(overlayPath, { command: 'GC' }, { ...conf(), 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] });
    expect(gc.code, gc.stdout).toBe(0);
    expect(leases()).toHaveLength(1);
    expect(existsSync(saved('keep'))).toBe(true);
    expect(existsSync(saved('stale'))).toBe(false);
    const kept = readFileSync(join(leaseDir, network, leases()[0]!), 'utf8');
    expect(kept).toContain('keep');
    expect(trySh('ip', ['link', 'show', bridge]).code).toBe(0);
  });
});
