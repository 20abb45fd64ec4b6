import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { berthPlugin, runCni } from '../../../../world/cni.js';
import { isRoot, trySh, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf } from '../../../../world/pod-network.js';

// berth-tuning chained after berth-bridge: sysctls and link settings seen from inside the pod's
// namespace, DEL putting the link back, and the keys it refuses.

const bridgePath = berthPlugin('berth-bridge');
const tuningPath = berthPlugin('berth-tuning');
const world = new TestWorld();
let dataDir = '';
let tuningDir = '';
let bridge = '';
let network = '';

function tuningConf(fields: Record<string, unknown>, prevResult?: unknown) {
  return { cniVersion: '1.1.0', name: network, type: 'berth-tuning', dataDir: tuningDir, ...fields, ...(prevResult ? { prevResult } : {}) };
}

async function pod(id: string) {
  const ns = world.netns();
  const add = await runCni(bridgePath, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0' }, bridgeNetconf({ network, bridge, subnet: '10.206.0.0/24', dataDir }));
  expect(add.code, add.stdout).toBe(0);
  return { id, ns, result: add.json! };
}

const inPod = (ns: string, cmd: string, args: string[]) => world.inNetns(ns, cmd, args).stdout.trim();
const link = (ns: string) => inPod(ns, 'ip', ['-d', 'link', 'show', 'eth0']);
const sysctl = (ns: string, key: string) => inPod(ns, 'cat', [`/proc/sys/${key.replace(/\./g, '/')}`]);

describe.skipIf(!isRoot)('berth-tuning in a real pod namespace', () => {
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'berth-tuning-ipam-'));
    tuningDir = mkdtempSync(join(tmpdir(), 'berth-tuning-'));
    bridge = world.link(uniqueName('bttu'));
    network = uniqueName('tu-');
  });
  afterEach(() => {
    world.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(tuningDir, { recursive: true, force: true });
  });

  it('ADD sets sysctls, mac, mtu, promisc, allmulticast and txqueuelen inside the namespace; CHECK passes; DEL puts the link back', async () => {
    const a = await pod('tu-a');
    const before = link(a.ns.name);
    const hostSomaxconn = readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim();
    const fields = {
      sysctl: { 'net.ipv4.conf.IFNAME.arp_filter': '1', 'net.core.somaxconn': '512', 'net/ipv4/ping_group_range': '0 1000' },
      mac: 'c2:11:22:33:44:55',
      mtu: 1400,
      promisc: true,
      allmulti: true,
      txQLen: 2000,
    };
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    const add = await runCni(tuningPath, call, tuningConf(fields, a.result));
    expect(add.code, add.stdout).toBe(0);
    // The result tells the runtime the interface's new MAC.
    expect((add.json!.interfaces as { name: string; mac: string; sandbox?: string }[]).find((i) => i.sandbox)!.mac).toBe('c2:11:22:33:44:55');

    expect(sysctl(a.ns.name, 'net.ipv4.conf.eth0.arp_filter')).toBe('1');
    expect(sysctl(a.ns.name, 'net.core.somaxconn')).toBe('512');
    expect(sysctl(a.ns.name, 'net.ipv4.ping_group_range')).toMatch(/^0\s+1000$/);
    const after = link(a.ns.name);
    expect(after).toContain('link/ether c2:11:22:33:44:55');
    expect(after).toMatch(/mtu 1400 /);
    expect(after).toMatch(/PROMISC/);
    expect(after).toMatch(/ALLMULTI/);
    expect(after).toMatch(/qlen 2000/);
    // The host keeps its own value: the sysctl was the pod's namespace's.
    expect(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim()).toBe(hostSomaxconn);

    const check = await runCni(tuningPath, { ...call, command: 'CHECK' }, tuningConf(fields, add.json));
    expect(check.code, check.stdout).toBe(0);

    for (let i = 0; i < 2; i++) {
      const del = await runCni(tuningPath, { ...call, command: 'DEL' }, tuningConf(fields));
      expect(del.code, del.stdout).toBe(0);
    }
    const restored = link(a.ns.name);
    expect(restored.match(/link\/ether \S+/)?.[0]).toBe(before.match(/link\/ether \S+/)?.[0]);
    expect(restored).toMatch(/mtu 1500 /);
    expect(restored).not.toMatch(/PROMISC|ALLMULTI/);
    expect(existsSync(join(tuningDir, `${a.id}-eth0.json`))).toBe(false);
  });

  it('the runtime mac capability wins over the config mac; CHECK notices a change behind its back', async () => {
    const a = await pod('tu-m');
    const fields = { mac: 'c2:00:00:00:00:01', runtimeConfig: { mac: 'c2:00:00:00:00:02' } };
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    const add = await runCni(tuningPath, call, tuningConf(fields, a.result));
    expect(add.code, add.stdout).toBe(0);
    expect(link(a.ns.name)).toContain('link/ether c2:00:00:00:00:02');
    world.inNetns(a.ns.name, 'ip', ['link', 'set', 'eth0', 'address', 'c2:00:00:00:00:03']);
    const check = await runCni(tuningPath, { ...call, command: 'CHECK' }, tuningConf(fields, add.json));
    expect(check.code).toBe(1);
    expect(check.json?.msg).toContain('c2:00:00:00:00:02');
  });

  it('DEL succeeds without the namespace and forgets the saved settings', async () => {
    const a = await pod('tu-d');
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    expect((await runCni(tuningPath, call, tuningConf({ mtu: 1300 }, a.result))).code).toBe(0);
    expect(existsSync(join(tuningDir, `${a.id}-eth0.json`))).toBe(true);
    trySh('ip', ['netns', 'del', a.ns.name]);
    const del = await runCni(tuningPath, { command: 'DEL', containerId: a.id, ifname: 'eth0' }, tuningConf({ mtu: 1300 }));
    expect(del.code, del.stdout).toBe(0);
    expect(existsSync(join(tuningDir, `${a.id}-eth0.json`))).toBe(false);
  });

  const refused: [string, Record<string, string>, string][] = [
    ['outside net.*', { 'kernel.hostname': 'x' }, 'only network sysctls'],
    ['climbing out with ..', { 'net/../kernel/hostname': 'x' }, "'..'"],
    ['host-wide (absent from a pod namespace)', { 'net.core.netdev_max_backlog': '4242' }, 'no such per-namespace network sysctl'],
  ];
  for (const [what, sysctls, msg] of refused) {
    it(`a sysctl ${what} is refused with the spec's error 7 and changes nothing`, async () => {
      const a = await pod(uniqueName('tu-e'));
      const hostBefore = readFileSync('/proc/sys/net/core/netdev_max_backlog', 'utf8');
      const add = await runCni(tuningPath, { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' }, tuningConf({ sysctl: sysctls }, a.result));
      expect(add.code).toBe(1);
      expect(add.json).toMatchObject({ code: 7 });
      expect(add.json!.msg).toContain(msg);
      expect(readFileSync('/proc/sys/net/core/netdev_max_backlog', 'utf8')).toBe(hostBefore);
    });
  }
});
