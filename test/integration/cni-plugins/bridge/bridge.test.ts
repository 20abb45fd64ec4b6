import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { berthPlugin, referenceCniDir, runCni, berthCniDir } from '../../../../world/cni.js';
import { isRoot, linkExists, sh, trySh, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf, bridgePorts, firstIp, leaseFiles } from '../../../../world/pod-network.js';

// berth-bridge, run exactly as a runtime runs it, against real namespaces, veths and bridges.

const bridgePath = berthPlugin('berth-bridge');
const world = new TestWorld();
let dataDir = '';
let bridge = '';
let network = '';

function conf(over: Record<string, unknown> = {}, ipamOver: Record<string, unknown> = {}) {
  return bridgeNetconf({ network, bridge, subnet: '10.201.0.0/24', dataDir }, { ipMasq: true, ...over }, ipamOver);
}

function call(command: string, containerId: string, netns: string | undefined, extra: Partial<Parameters<typeof runCni>[1]> = {}) {
  return { command, containerId, ifname: 'eth0', ...(netns ? { netns } : {}), ...extra };
}

const leases = () => leaseFiles(dataDir, network);
const ports = () => bridgePorts(bridge);

function natRulesFor(name: string): string[] {
  const out = trySh('iptables-save', ['-t', 'nat']).stdout;
  return out.split('\n').filter((l) => l.includes(`"${name}"`) || l.includes(name));
}

const ipOf = firstIp;

const ping = (ns: string, ip: string) => world.inNetns(ns, 'ping', ['-c', '1', '-W', '2', ip]).code;

describe.skipIf(!isRoot)('berth-bridge in real network namespaces', () => {
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'berth-bridge-'));
    bridge = world.link(uniqueName('btbr'));
    network = uniqueName('net-');
  });
  afterEach(async () => {
    // A failing test may leave masquerade state behind: GC with no valid attachment removes it
    // for both backends; then the namespaces (their veths go with them) and the bridge.
    for (const backend of ['iptables', 'nftables']) {
      await runCni(bridgePath, { command: 'GC' }, { ...conf({ ipMasqBackend: backend }), 'cni.dev/valid-attachments': [] }).catch(() => undefined);
    }
    world.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('ADD connects two pods that can ping each other and the gateway; DEL twice leaves nothing', async () => {
    const a = world.netns();
    const b = world.netns();
    const addA = await runCni(bridgePath, call('ADD', 'pod-a', a.path), conf());
    const addB = await runCni(bridgePath, call('ADD', 'pod-b', b.path), conf());
    expect(addA.code, addA.stdout).toBe(0);
    expect(addB.code, addB.stdout).toBe(0);
    const [ipA, ipB] = [ipOf(addA), ipOf(addB)];
    expect(ipA).not.toBe(ipB);
    const r = addA.json as { interfaces: { name: string; sandbox?: string }[]; ips: { gateway: string; interface: number }[] };
    expect(r.interfaces.map((i) => i.name)).toEqual([bridge, expect.stringMatching(/^veth/), 'eth0']);
    expect(r.interfaces[2]?.sandbox).toBe(a.path);
    expect(r.ips[0]).toMatchObject({ gateway: '10.201.0.1', interface: 2 });
    expect(ping(a.name, ipB)).toBe(0);
    expect(ping(b.name, ipA)).toBe(0);
    expect(ping(a.name, '10.201.0.1')).toBe(0);
    expect(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim()).toBe('1');
    expect(natRulesFor(network).length).toBeGreaterThan(0);

    for (const [id, ns, add] of [['pod-a', a, addA], ['pod-b', b, addB]] as const) {
      const check = await runCni(bridgePath, call('CHECK', id, ns.path), { ...conf(), prevResult: add.json });
      expect(check.code, check.stdout).toBe(0);
      for (let i = 0; i < 2; i++) {
        const del = await runCni(bridgePath, call('DEL', id, ns.path), { ...conf(), prevResult: add.json });
        expect(del.code, del.stdout).toBe(0);
      }
    }
    expect(ports()).toEqual([]);
    expect(leases()).toEqual([]);
    expect(natRulesFor(network)).toEqual([]);
    expect(linkExists('eth0', a.name)).toBe(false);
  });

  it('dual-stack ranges give each pod an IPv4 and an IPv6 address that reach each other', async () => {
    const dual = { ranges: [[{ subnet: '10.201.0.0/24' }], [{ subnet: 'fd00:201::/64' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] };
    const a = world.netns();
    const b = world.netns();
    const addA = await runCni(bridgePath, call('ADD', 'ds-a', a.path), conf({}, dual));
    const addB = await runCni(bridgePath, call('ADD', 'ds-b', b.path), conf({}, dual));
    expect(addA.code, addA.stdout).toBe(0);
    expect(addB.code, addB.stdout).toBe(0);
    const ips = (out: typeof addA) => (out.json?.ips as { address: string; gateway?: string }[]);
    expect(ips(addA).map((i) => i.gateway)).toEqual(['10.201.0.1', 'fd00:201::1']);
    const v6B = ips(addB)[1]!.address.split('/')[0]!;
    expect(world.inNetns(a.name, 'ping', ['-6', '-c', '1', '-W', '2', v6B]).code).toBe(0);
    expect(world.inNetns(a.name, 'ping', ['-6', '-c', '1', '-W', '2', 'fd00:201::1']).code).toBe(0);
    expect(trySh('ip6tables-save', ['-t', 'nat']).stdout).toContain('id=ds-a');
    expect((await runCni(bridgePath, call('CHECK', 'ds-a', a.path), { ...conf({}, dual), prevResult: addA.json })).code).toBe(0);
    for (const [id, ns] of [['ds-a', a], ['ds-b', b]] as const) {
      expect((await runCni(bridgePath, call('DEL', id, ns.path), conf({}, dual))).code).toBe(0);
    }
    expect(leases()).toEqual([]);
    expect(trySh('ip6tables-save', ['-t', 'nat']).stdout).not.toContain(`net=${network} `);
  });

  it('8 concurrent ADDs get 8 distinct addresses and 8 DELs release them all', async () => {
    const nses = Array.from({ length: 8 }, () => world.netns());
    const adds = await Promise.all(nses.map((ns, i) => runCni(bridgePath, call('ADD', `pod-${i}`, ns.path), conf())));
    for (const a of adds) expect(a.code, a.stdout).toBe(0);
    expect(new Set(adds.map(ipOf)).size).toBe(8);
    expect(leases()).toHaveLength(8);
    expect(ports()).toHaveLength(8);
    const dels = await Promise.all(nses.map((ns, i) => runCni(bridgePath, call('DEL', `pod-${i}`, ns.path), conf())));
    for (const d of dels) expect(d.code, d.stdout).toBe(0);
    expect(leases()).toEqual([]);
    expect(ports()).toEqual([]);
    expect(natRulesFor(network)).toEqual([]);
  });

  it('the result follows every requested spec version', async () => {
    for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      const ns = world.netns();
      const out = await runCni(bridgePath, call('ADD', `v-${v}`, ns.path), { ...conf(), cniVersion: v });
      expect(out.code, out.stdout).toBe(0);
      expect(out.json?.cniVersion).toBe(v);
      const ip = (out.json?.ips as Record<string, unknown>[])[0]!;
      if (v.startsWith('0.')) expect(ip.version).toBe('4');
      else expect(ip).not.toHaveProperty('version');
      expect((await runCni(bridgePath, call('DEL', `v-${v}`, ns.path), { ...conf(), cniVersion: v })).code).toBe(0);
    }
    expect(leases()).toEqual([]);
  });

  it('DEL succeeds when the namespace is gone, and when CNI_NETNS is unset, releasing the lease', async () => {
    const a = world.netns();
    const b = world.netns();
    expect((await runCni(bridgePath, call('ADD', 'gone', a.path), conf())).code).toBe(0);
    expect((await runCni(bridgePath, call('ADD', 'unset', b.path), conf())).code).toBe(0);
    sh('ip', ['netns', 'del', a.name]);
    const delGone = await runCni(bridgePath, call('DEL', 'gone', a.path), conf());
    expect(delGone.code, delGone.stdout).toBe(0);
    const delUnset = await runCni(bridgePath, call('DEL', 'unset', undefined), conf());
    expect(delUnset.code, delUnset.stdout).toBe(0);
    expect(leases()).toEqual([]);
    expect(natRulesFor(network)).toEqual([]);
    // The veth of the still-existing namespace was found by its derived host name and removed.
    expect(ports()).toEqual([]);
  });

  it('DEL of an unknown container succeeds and changes nothing', async () => {
    const a = world.netns();
    const add = await runCni(bridgePath, call('ADD', 'known', a.path), conf());
    expect(add.code).toBe(0);
    const before = { leases: leases(), ports: ports().length, nat: natRulesFor(network).length };
    const del = await runCni(bridgePath, call('DEL', 'unknown', undefined), conf());
    expect(del.code, del.stdout).toBe(0);
    expect({ leases: leases(), ports: ports().length, nat: natRulesFor(network).length }).toEqual(before);
    expect(ping(a.name, '10.201.0.1')).toBe(0);
  });

  it('ADD into a namespace that already has the interface fails and leaks nothing', async () => {
    const a = world.netns();
    sh('ip', ['-n', a.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other']);
    const out = await runCni(bridgePath, call('ADD', 'dup', a.path), conf());
    expect(out.code).not.toBe(0);
    expect(out.json?.msg).toMatch(/CNI_IFNAME: interface eth0 already exists/);
    expect(leases()).toEqual([]);
    expect(ports()).toEqual([]);
  });

  it('an exhausted range fails the ADD cleanly: no veth, no lease, no rule left behind', async () => {
    const single = { ranges: [[{ subnet: '10.201.0.0/24', rangeStart: '10.201.0.9', rangeEnd: '10.201.0.9' }]] };
    const a = world.netns();
    const b = world.netns();
    expect((await runCni(bridgePath, call('ADD', 'first', a.path), conf({}, single))).code).toBe(0);
    const second = await runCni(bridgePath, call('ADD', 'second', b.path), conf({}, single));
    expect(second.code).not.toBe(0);
    expect(second.json?.msg).toMatch(/no (free|available)|exhausted/i);
    expect(leases()).toEqual(['10.201.0.9']);
    expect(ports()).toHaveLength(1);
    expect(linkExists('eth0', b.name)).toBe(false);
    expect(natRulesFor(network).filter((l) => l.includes('second'))).toEqual([]);
  });

  it('CHECK fails when an address or the interface was removed', async () => {
    const a = world.netns();
    const add = await runCni(bridgePath, call('ADD', 'chk', a.path), conf());
    const ip = ipOf(add);
    sh('ip', ['-n', a.name, 'addr', 'del', `${ip}/24`, 'dev', 'eth0']);
    const noAddr = await runCni(bridgePath, call('CHECK', 'chk', a.path), { ...conf(), prevResult: add.json });
    expect(noAddr.code).not.toBe(0);
    expect(noAddr.json?.msg).toContain(ip);
    sh('ip', ['-n', a.name, 'link', 'del', 'eth0']);
    const noLink = await runCni(bridgePath, call('CHECK', 'chk', a.path), { ...conf(), prevResult: add.json });
    expect(noLink.json?.msg).toMatch(/eth0 is missing/);
  });

  it('GC releases the leases and rules of attachments not in the valid list', async () => {
    const a = world.netns();
    const b = world.netns();
    const keep = await runCni(bridgePath, call('ADD', 'keep', a.path), conf());
    expect((await runCni(bridgePath, call('ADD', 'drop', b.path), conf())).code).toBe(0);
    expect(leases()).toHaveLength(2);
    const gc = await runCni(bridgePath, { command: 'GC' }, { ...conf(), 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] });
    expect(gc.code, gc.stdout).toBe(0);
    expect(leases()).toEqual([ipOf(keep)]);
    const nat = natRulesFor(network).join('\n');
    expect(nat).toContain('keep');
    expect(nat).not.toContain('drop');
  });

  it('STATUS is ready with its IPAM present and code 50 when the IPAM plugin is missing', async () => {
    const ok = await runCni(bridgePath, { command: 'STATUS' }, conf());
    expect(ok.code, ok.stdout).toBe(0);
    const missing = await runCni(bridgePath, { command: 'STATUS' }, conf({}, { type: 'no-such-ipam' }));
    expect(missing.code).not.toBe(0);
    expect(missing.json).toMatchObject({ code: 50, msg: expect.stringContaining('no-such-ipam') });
  });

  it('applies mtu, hairpin mode and a requested MAC', async () => {
    const a = world.netns();
    const add = await runCni(
      bridgePath,
      call('ADD', 'opts', a.path),
      { ...conf({ mtu: 1400, hairpinMode: true, ipMasq: false }), runtimeConfig: { mac: '0a:58:0a:c9:00:42' } },
    );
    expect(add.code, add.stdout).toBe(0);
    const host = (add.json?.interfaces as { name: string }[])[1]!.name;
    const inside = world.inNetns(a.name, 'ip', ['-o', 'link', 'show', 'eth0']).stdout;
    expect(inside).toContain('mtu 1400');
    expect(inside).toContain('0a:58:0a:c9:00:42');
    expect((add.json?.interfaces as { mac: string }[])[2]?.mac).toBe('0a:58:0a:c9:00:42');
    expect(readFileSync(`/sys/class/net/${host}/brport/hairpin_mode`, 'utf8').trim()).toBe('1');
    expect((await runCni(bridgePath, call('DEL', 'opts', a.path), conf())).code).toBe(0);
  });

  it('puts the port in the configured VLAN, or says the kernel cannot and leaks nothing', async () => {
    const probe = uniqueName('btvf');
    const kernelHasVlanFiltering = trySh('ip', ['link', 'add', probe, 'type', 'bridge', 'vlan_filtering', '1']).code === 0;
    trySh('ip', ['link', 'del', probe]);
    const a = world.netns();
    const add = await runCni(bridgePath, call('ADD', 'vlan', a.path), conf({ vlan: 42, ipMasq: false }));
    if (kernelHasVlanFiltering) {
      expect(add.code, add.stdout).toBe(0);
      const host = (add.json?.interfaces as { name: string }[])[1]!.name;
      expect(trySh('bridge', ['vlan', 'show', 'dev', host]).stdout).toMatch(/42 PVID Egress Untagged/);
      expect((await runCni(bridgePath, call('DEL', 'vlan', a.path), conf({ vlan: 42 }))).code).toBe(0);
    } else {
      console.log('this kernel has no bridge VLAN filtering: checking the error instead of the VLAN');
      expect(add.code).not.toBe(0);
      expect(add.json?.msg).toMatch(/^vlan: 42 needs bridge VLAN filtering/);
      expect(leases()).toEqual([]);
      expect(linkExists('eth0', a.name)).toBe(false);
    }
  });

  it('masquerades with the nftables backend and removes the rules on DEL', async () => {
    const a = world.netns();
    const nft = conf({ ipMasqBackend: 'nftables' });
    const add = await runCni(bridgePath, call('ADD', 'nftpod', a.path), nft);
    expect(add.code, add.stdout).toBe(0);
    expect(trySh('nft', ['list', 'ruleset']).stdout).toContain('nftpod');
    expect(natRulesFor(network)).toEqual([]);
    expect((await runCni(bridgePath, call('DEL', 'nftpod', a.path), nft)).code).toBe(0);
    expect(trySh('nft', ['list', 'ruleset']).stdout).not.toContain('nftpod');
  });

  it('macspoofchk drops frames from a pod that changed its MAC, and DEL removes the check', async () => {
    const a = world.netns();
    const b = world.netns();
    const spoof = conf({ macspoofchk: true, ipMasq: false });
    const addA = await runCni(bridgePath, call('ADD', 'spoofa', a.path), spoof);
    const addB = await runCni(bridgePath, call('ADD', 'spoofb', b.path), spoof);
    expect(addA.code, addA.stdout).toBe(0);
    expect(addB.code, addB.stdout).toBe(0);
    const ipB = ipOf(addB);
    expect(ping(a.name, ipB)).toBe(0);
    sh('ip', ['-n', a.name, 'link', 'set', 'eth0', 'address', '0a:58:de:ad:be:ef']);
    sh('ip', ['-n', a.name, 'neigh', 'flush', 'all']);
    expect(ping(a.name, ipB)).not.toBe(0);
    for (const [id, ns] of [['spoofa', a], ['spoofb', b]] as const) {
      expect((await runCni(bridgePath, call('DEL', id, ns.path), spoof)).code).toBe(0);
    }
    expect(trySh('nft', ['list', 'table', 'bridge', 'berth-macspoof']).stdout).not.toMatch(/spoofa|spoofb/);
  });

  it('GC on nftables removes the masquerade rules of attachments not in the valid list', async () => {
    const a = world.netns();
    const b = world.netns();
    const nft = conf({ ipMasqBackend: 'nftables' });
    expect((await runCni(bridgePath, call('ADD', 'nkeep', a.path), nft)).code).toBe(0);
    expect((await runCni(bridgePath, call('ADD', 'ndrop', b.path), nft)).code).toBe(0);
    const gc = await runCni(bridgePath, { command: 'GC' }, { ...nft, 'cni.dev/valid-attachments': [{ containerID: 'nkeep', ifname: 'eth0' }] });
    expect(gc.code, gc.stdout).toBe(0);
    const rules = trySh('nft', ['list', 'table', 'inet', 'berth-bridge']).stdout;
    expect(rules).toContain('id=nkeep');
    expect(rules).not.toContain('id=ndrop');
    expect(leases()).toHaveLength(1);
  });

  it('a layer-2 only network ("ipam": {}) attaches the veth without addresses', async () => {
    const a = world.netns();
    const add = await runCni(bridgePath, call('ADD', 'l2', a.path), { ...conf({ isGateway: false, ipMasq: false }), ipam: {} });
    expect(add.code, add.stdout).toBe(0);
    expect(add.json?.ips ?? []).toEqual([]);
    expect(linkExists('eth0', a.name)).toBe(true);
    expect((await runCni(bridgePath, call('DEL', 'l2', a.path), { ...conf(), ipam: {} })).code).toBe(0);
  });

  it('refuses a bridge name that belongs to a device of another kind', async () => {
    const a = world.netns();
    const notABridge = world.link(uniqueName('btv'));
    sh('ip', ['link', 'add', notABridge, 'type', 'veth', 'peer', 'name', uniqueName('btp')]);
    const out = await runCni(bridgePath, call('ADD', 'kind', a.path), conf({ bridge: notABridge }));
    expect(out.code).not.toBe(0);
    expect(out.json?.msg).toMatch(new RegExp(`${notABridge} exists and is a veth`));
    expect(leases()).toEqual([]);
  });

  it('delegates to an IPAM plugin found in CNI_PATH (the reference host-local)', async (ctx) => {
    if (!existsSync(join(referenceCniDir, 'host-local'))) {
      console.log(`skipped: the reference host-local is not installed in ${referenceCniDir}`);
      ctx.skip();
    }
    const a = world.netns();
    const ref = { ...conf({}, { type: 'host-local' }), cniVersion: '1.0.0' };
    const path = `${berthCniDir}:${referenceCniDir}`;
    const add = await runCni(bridgePath, call('ADD', 'refipam', a.path, { path }), ref);
    expect(add.code, add.stdout).toBe(0);
    expect(leases()).toEqual([ipOf(add)]);
    expect((await runCni(bridgePath, call('DEL', 'refipam', a.path, { path }), ref)).code).toBe(0);
    expect(leases()).toEqual([]);
  });
});
