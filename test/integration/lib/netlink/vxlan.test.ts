import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import type { LinkInfo, RtnlSession, VxlanSpec } from '../../../../lib/netlink/rtnl.js';
import { NL } from '../../../../lib/netlink/codec.js';
import { TestWorld, isRoot } from '../../../../world/netns.js';

// VXLAN devices, permanent neighbours and FDB entries, as a flannel-like overlay programs them,
// each test in fresh network namespaces. iproute2 (`ip -j`, `bridge -j`) reads the kernel's
// state back independently of our decoder.

type Json = Record<string, unknown>;

describe.skipIf(!isRoot)('RtnlSession: VXLAN, neighbours, FDB', () => {
  const world = new TestWorld();
  afterEach(() => world.cleanup());
  const sessionIn = () => world.rtnlSession('bt-vx-');

  const toolJson = (ns: string, tool: 'ip' | 'bridge', args: string[]): Json[] => {
    const r = world.inNetns(ns, tool, ['-j', ...args]);
    if (r.code !== 0) throw new Error(`${tool} ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout || '[]') as Json[];
  };

  /** A veth underlay (ul0, up, with `address`) and the spec of a flannel-style device on it. */
  async function underlay(s: RtnlSession, address = '192.168.77.1'): Promise<{ ul: LinkInfo; spec: VxlanSpec }> {
    const ul = await s.createVethPair({ name: 'ul0', peerName: 'ul1' });
    await s.addAddress(ul.index, `${address}/24`);
    await s.setUp(ul.index);
    const spec: VxlanSpec = { name: 'flannel.7', vni: 7, port: 8472, local: address, underlayIndex: ul.index, learning: false, mtu: 1450, mac: '02:aa:00:00:00:01' };
    return { ul, spec };
  }

  it('creates a vxlan with exactly the vni, port, local, underlay and nolearning asked for', async () => {
    const { s, ns } = await sessionIn();
    const { ul, spec } = await underlay(s);
    const vx = await s.createVxlan(spec);
    expect(vx).toMatchObject({ name: 'flannel.7', kind: 'vxlan', mtu: 1450, mac: '02:aa:00:00:00:01' });
    expect(vx.vxlan).toEqual({ vni: 7, port: 8472, local: '192.168.77.1', underlayIndex: ul.index, learning: false });

    const [shown] = toolJson(ns.name, 'ip', ['-d', 'link', 'show', 'flannel.7']);
    expect(shown).toMatchObject({ mtu: 1450, address: '02:aa:00:00:00:01', linkinfo: { info_kind: 'vxlan' } });
    // 8472 on the wire as big-endian: a little-endian port would read back as 6177.
    expect((shown?.linkinfo as Json).info_data).toMatchObject({ id: 7, port: 8472, local: '192.168.77.1', link: 'ul0', learning: false });

    expect((await s.listLinks()).find((l) => l.name === 'flannel.7')?.vxlan).toEqual(vx.vxlan);
    expect((await s.getLinkByIndex(vx.index))?.vxlan?.vni).toBe(7);
    expect((await s.getLink('ul0'))?.vxlan).toBeUndefined();
  });

  it('learning on and no local or underlay are what the kernel gets too', async () => {
    const { s, ns } = await sessionIn();
    const vx = await s.createVxlan({ name: 'vx4789', vni: 4242, port: 4789, learning: true });
    expect(vx.vxlan).toEqual({ vni: 4242, port: 4789, learning: true });
    const [shown] = toolJson(ns.name, 'ip', ['-d', 'link', 'show', 'vx4789']);
    const data = (shown?.linkinfo as Json).info_data as Json;
    expect(data).toMatchObject({ id: 4242, port: 4789, learning: true });
    expect(data.local).toBeUndefined();
    expect(data.link).toBeUndefined();
  });

  it('an IPv6 underlay: local travels as IFLA_VXLAN_LOCAL6, FDB dsts and onlink routes are IPv6', async () => {
    const { s, ns } = await sessionIn();
    const ul = await s.createVethPair({ name: 'ul0', peerName: 'ul1' });
    await s.addAddress(ul.index, 'fd77::1/64', { noDad: true });
    const spec: VxlanSpec = { name: 'flannel-v6.7', vni: 7, port: 8472, local: 'fd77::1', underlayIndex: ul.index };
    const vx = await s.createVxlan(spec);
    expect(vx.vxlan).toEqual({ vni: 7, port: 8472, local: 'fd77::1', underlayIndex: ul.index, learning: false });
    const [shown] = toolJson(ns.name, 'ip', ['-d', 'link', 'show', 'flannel-v6.7']);
    expect((shown?.linkinfo as Json).info_data).toMatchObject({ id: 7, local6: 'fd77::1', learning: false });
    // Another spelling of the same address is the same device.
    expect(await s.createVxlan({ ...spec, local: 'fd77:0:0::0001' })).toMatchObject({ index: vx.index });

    await s.setUp(vx.index);
    await s.addAddress(vx.index, 'fd44::/128', { noDad: true });
    await s.setFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: 'fd77::2' });
    expect(await s.listFdb(vx.index)).toMatchObject([{ mac: '02:bb:00:00:00:01', dst: 'fd77::2', permanent: true, self: true }]);
    expect(await s.delFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: 'fd77:0::2' })).toBe(true);
    await s.addRoute({ dst: 'fd44:1::/64', gw: 'fd44:1::', index: vx.index, onlink: true });
    expect((await s.listRoutes({ family: 6, index: vx.index })).filter((r) => r.dst === 'fd44:1::/64')).toMatchObject([{ gw: 'fd44:1::', onlink: true }]);
  });

  it('creating the same vxlan again returns it; a different vni is refused naming it', async () => {
    const { s } = await sessionIn();
    const { spec } = await underlay(s);
    const vx = await s.createVxlan(spec);
    expect(await s.createVxlan(spec)).toMatchObject({ index: vx.index, vxlan: vx.vxlan });
    // mtu and mac are not part of the identity: the existing device is returned unchanged.
    expect(await s.createVxlan({ ...spec, mtu: 1400, mac: undefined })).toMatchObject({ index: vx.index, mtu: 1450 });

    const err = await s.createVxlan({ ...spec, vni: 8 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('already-exists');
    expect((err as Error).message).toMatch(/create vxlan flannel\.7 \(vni 8, port 8472\) in \/run\/netns\/bt-vx-\w+: a vxlan of that name exists with vni 7 \(want 8\)$/);

    await expect(s.createVxlan({ ...spec, learning: true, port: 4789 })).rejects.toThrow(/with port 8472 \(want 4789\), learning off \(want on\)$/);
    await expect(s.createVxlan({ ...spec, local: '192.168.77.9' })).rejects.toThrow(/with local 192\.168\.77\.1 \(want 192\.168\.77\.9\)$/);
    await expect(s.createVxlan({ ...spec, underlayIndex: undefined })).rejects.toThrow(/with underlay \d+ \(want none\)$/);
    expect((await s.getLink('flannel.7'))?.vxlan?.vni).toBe(7);
  });

  it('a non-vxlan of that name, or another vxlan on the same vni and port, is refused naming it', async () => {
    const { s } = await sessionIn();
    const { spec } = await underlay(s);
    await expect(s.createVxlan({ ...spec, name: 'ul0' })).rejects.toMatchObject({ kind: 'already-exists', message: expect.stringMatching(/create vxlan ul0 .*: a veth link of that name exists$/) });
    await s.createVxlan(spec);
    await expect(s.createVxlan({ ...spec, name: 'flannel.x' })).rejects.toMatchObject({ kind: 'already-exists', message: expect.stringMatching(/vxlan flannel\.7 already uses vni 7 on port 8472$/) });
  });

  it('invalid vni, port or local are refused before anything is sent', async () => {
    const { s } = await sessionIn();
    await expect(s.createVxlan({ name: 'vx0', vni: 1 << 24, port: 8472 })).rejects.toThrow(/vni 16777216 is outside/);
    await expect(s.createVxlan({ name: 'vx0', vni: 1, port: 0 })).rejects.toThrow(/port 0 is outside/);
    await expect(s.createVxlan({ name: 'vx0', vni: 1, port: 8472, local: 'nowhere' })).rejects.toMatchObject({ kind: 'invalid-argument' });
    expect(await s.getLink('vx0')).toBeUndefined();
  });

  it('sets, replaces, lists and deletes permanent neighbours', async () => {
    const { s, ns } = await sessionIn();
    const { spec } = await underlay(s);
    const vx = await s.createVxlan(spec);
    await s.setUp(vx.index);

    await s.setNeighbor({ index: vx.index, ip: '10.244.1.0', mac: '02:bb:00:00:00:01' });
    await s.setNeighbor({ index: vx.index, ip: '10.244.1.0', mac: '02:bb:00:00:00:02' });
    await s.setNeighbor({ index: vx.index, ip: '10.244.2.0', mac: '02:bb:00:00:00:03' });
    await s.setNeighbor({ index: vx.index, ip: 'fd44:1::', mac: '02:bb:00:00:00:04' });

    const v4 = await s.listNeighbors({ index: vx.index, family: 4 });
    expect(v4.sort((a, b) => a.ip.localeCompare(b.ip))).toEqual([
      { index: vx.index, family: 4, ip: '10.244.1.0', mac: '02:bb:00:00:00:02', state: NL.NUD_PERMANENT, permanent: true },
      { index: vx.index, family: 4, ip: '10.244.2.0', mac: '02:bb:00:00:00:03', state: NL.NUD_PERMANENT, permanent: true },
    ]);
    const v6 = (await s.listNeighbors({ index: vx.index, family: 6 })).filter((n) => n.permanent);
    expect(v6).toMatchObject([{ ip: 'fd44:1::', mac: '02:bb:00:00:00:04' }]);
    expect((await s.listNeighbors()).filter((n) => n.permanent)).toHaveLength(3);
    expect(await s.listNeighbors({ index: 4242 })).toEqual([]);

    const shown = toolJson(ns.name, 'ip', ['neigh', 'show', 'dev', 'flannel.7']);
    expect(shown).toEqual(expect.arrayContaining([
      { dst: '10.244.1.0', lladdr: '02:bb:00:00:00:02', state: ['PERMANENT'] },
      { dst: '10.244.2.0', lladdr: '02:bb:00:00:00:03', state: ['PERMANENT'] },
      { dst: 'fd44:1::', lladdr: '02:bb:00:00:00:04', state: ['PERMANENT'] },
    ]));

    expect(await s.delNeighbor({ index: vx.index, ip: '10.244.1.0' })).toBe(true);
    expect(await s.delNeighbor({ index: vx.index, ip: '10.244.1.0' })).toBe(false);
    expect(await s.delNeighbor({ index: vx.index, ip: 'fd44:1::' })).toBe(true);
    expect(await s.delNeighbor({ index: vx.index, ip: 'fd44:1::' })).toBe(false);
    expect((await s.listNeighbors({ index: vx.index })).filter((n) => n.permanent).map((n) => n.ip)).toEqual(['10.244.2.0']);
    expect(toolJson(ns.name, 'ip', ['neigh', 'show', 'dev', 'flannel.7', 'to', '10.244.1.0'])).toEqual([]);
  });

  it('taking the link down flushes its permanent neighbours but keeps its FDB entries', async () => {
    const { s } = await sessionIn();
    const { spec } = await underlay(s);
    const vx = await s.createVxlan(spec);
    // A neighbour may be set while the link is down ...
    await s.setNeighbor({ index: vx.index, ip: '10.244.1.0', mac: '02:bb:00:00:00:01' });
    await s.setFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: '192.168.77.2' });
    await s.setUp(vx.index);
    expect((await s.listNeighbors({ index: vx.index, family: 4 })).map((n) => n.ip)).toEqual(['10.244.1.0']);
    // ... but going down (NETDEV_DOWN) drops even permanent ARP entries; the VXLAN FDB stays.
    await s.setDown(vx.index);
    expect(await s.listNeighbors({ index: vx.index, family: 4 })).toEqual([]);
    expect(await s.listFdb(vx.index)).toMatchObject([{ mac: '02:bb:00:00:00:01', dst: '192.168.77.2' }]);
  });

  it('neighbour errors name the link; a malformed address or MAC is refused before sending', async () => {
    const { s } = await sessionIn();
    const { ul } = await underlay(s);
    await expect(s.setNeighbor({ index: 4242, ip: '10.0.0.1', mac: '02:00:00:00:00:01' })).rejects.toMatchObject({ code: 'ENODEV', message: expect.stringContaining('set neighbour 10.0.0.1 lladdr 02:00:00:00:00:01 on link #4242') });
    await expect(s.setNeighbor({ index: ul.index, ip: '10.0.0.x', mac: '02:00:00:00:00:01' })).rejects.toThrow(/"10\.0\.0\.x" is not an IP address/);
    await expect(s.setNeighbor({ index: ul.index, ip: '10.0.0.1', mac: '02:00:00' })).rejects.toThrow(/"02:00:00" is not a MAC address/);
  });

  it('sets, replaces, lists and deletes FDB entries of one device', async () => {
    const { s, ns } = await sessionIn();
    const { spec } = await underlay(s);
    const vx = await s.createVxlan(spec);
    await s.setUp(vx.index);

    await s.setFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: '192.168.77.2' });
    // Replacing moves the MAC to the new VTEP instead of adding a second remote.
    await s.setFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: '192.168.77.3' });
    await s.setFdb({ index: vx.index, mac: '02:bb:00:00:00:02', dst: '192.168.77.4' });

    const entries = await s.listFdb(vx.index);
    expect(entries.sort((a, b) => a.mac.localeCompare(b.mac))).toMatchObject([
      { index: vx.index, mac: '02:bb:00:00:00:01', dst: '192.168.77.3', permanent: true, self: true },
      { index: vx.index, mac: '02:bb:00:00:00:02', dst: '192.168.77.4', permanent: true, self: true },
    ]);
    const shown = toolJson(ns.name, 'bridge', ['fdb', 'show', 'dev', 'flannel.7']);
    expect(shown).toHaveLength(2);
    expect(shown).toEqual(expect.arrayContaining([
      expect.objectContaining({ mac: '02:bb:00:00:00:01', dst: '192.168.77.3', flags: ['self'], state: 'permanent' }),
      expect.objectContaining({ mac: '02:bb:00:00:00:02', dst: '192.168.77.4', flags: ['self'], state: 'permanent' }),
    ]));
    // Other devices' entries (the veth's own multicast addresses) stay out of this device's list.
    const ul = await s.getLink('ul0');
    expect((await s.listFdb(ul?.index as number)).every((e) => e.index === ul?.index)).toBe(true);

    expect(await s.delFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: '192.168.77.2' })).toBe(false);
    expect(await s.delFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: '192.168.77.3' })).toBe(true);
    expect(await s.delFdb({ index: vx.index, mac: '02:bb:00:00:00:01', dst: '192.168.77.3' })).toBe(false);
    expect(await s.delFdb({ index: vx.index, mac: '02:bb:00:00:00:02' })).toBe(true);
    expect(await s.delFdb({ index: vx.index, mac: '02:bb:00:00:00:02' })).toBe(false);
    expect(await s.listFdb(vx.index)).toEqual([]);
    expect(toolJson(ns.name, 'bridge', ['fdb', 'show', 'dev', 'flannel.7'])).toEqual([]);
  });

  it('an FDB entry needs a dst and a device that exists, also to be deleted', async () => {
    const { s } = await sessionIn();
    await expect(s.setFdb({ index: 4242, mac: '02:bb:00:00:00:01', dst: '192.168.77.2' })).rejects.toThrow(/set fdb 02:bb:00:00:00:01 dst 192\.168\.77\.2 on link #4242/);
    await expect(s.setFdb({ index: 1, mac: '02:bb:00:00:00:01', dst: '' })).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(s.delFdb({ index: 4242, mac: '02:bb:00:00:00:01' })).rejects.toMatchObject({ kind: 'not-found', code: 'ENODEV' });
    await expect(s.delFdb({ index: 4242, mac: '02:bb:00:00:00:01', dst: '192.168.77.2' })).rejects.toMatchObject({ kind: 'not-found', message: expect.stringContaining('delete fdb 02:bb:00:00:00:01 dst 192.168.77.2 on link #4242') });
  });

  it('an onlink route via a VTEP address is listed with onlink', async () => {
    const { s, ns } = await sessionIn();
    const { spec } = await underlay(s);
    const vx = await s.createVxlan(spec);
    await s.setUp(vx.index);
    await s.addAddress(vx.index, '10.244.0.0/32');
    // 10.244.1.0 is on no subnet of this node: only onlink makes it a usable gateway.
    await expect(s.addRoute({ dst: '10.244.1.0/24', gw: '10.244.1.0', index: vx.index })).rejects.toThrow(/ENETUNREACH/);
    await s.addRoute({ dst: '10.244.1.0/24', gw: '10.244.1.0', index: vx.index, onlink: true });
    await s.addRoute({ dst: '10.244.1.0/24', gw: '10.244.1.0', index: vx.index, onlink: true });

    const [route] = (await s.listRoutes({ family: 4, index: vx.index })).filter((r) => r.dst === '10.244.1.0/24');
    expect(route).toMatchObject({ gw: '10.244.1.0', index: vx.index, onlink: true });
    expect(toolJson(ns.name, 'ip', ['route', 'show', '10.244.1.0/24'])[0]).toMatchObject({ gateway: '10.244.1.0', dev: 'flannel.7', flags: ['onlink'] });

    // A lease moving to another subnet's VTEP replaces the gateway, still onlink.
    await s.addRoute({ dst: '10.244.1.0/24', gw: '10.244.9.0', index: vx.index, onlink: true }, { replace: true });
    expect((await s.listRoutes({ family: 4, index: vx.index })).filter((r) => r.dst === '10.244.1.0/24')).toMatchObject([{ gw: '10.244.9.0', onlink: true }]);
    // The underlay's own routes carry no onlink flag.
    expect((await s.listRoutes({ family: 4 })).filter((r) => r.index !== vx.index).every((r) => !r.onlink)).toBe(true);
  });

  it('two nodes with permanent neighbour, FDB and onlink routes ping each other across the underlay', async () => {
    const { s: a, ns: nsA } = await sessionIn();
    const { s: b, ns: nsB } = await sessionIn();
    const ulA = await a.createVethPair({ name: 'eth0', peerName: 'eth0', peerNetnsPath: nsB.path });
    const ulB = (await b.getLink('eth0')) as LinkInfo;
    const nodes = [
      { s: a, ul: ulA, underlayIp: '192.168.77.1', vtep: '10.244.0.0', subnet: '10.244.0.0/24', mac: '02:aa:00:00:00:01' },
      { s: b, ul: ulB, underlayIp: '192.168.77.2', vtep: '10.244.1.0', subnet: '10.244.1.0/24', mac: '02:aa:00:00:00:02' },
    ];
    const devices: LinkInfo[] = [];
    for (const n of nodes) {
      await n.s.addAddress(n.ul.index, `${n.underlayIp}/24`);
      await n.s.setUp(n.ul.index);
      const vx = await n.s.createVxlan({ name: 'flannel.7', vni: 7, port: 8472, local: n.underlayIp, underlayIndex: n.ul.index, mac: n.mac });
      await n.s.setUp(vx.index);
      await n.s.addAddress(vx.index, `${n.vtep}/32`);
      devices.push(vx);
    }
    // What a flannel-like daemon programs for each peer's lease.
    for (const [i, n] of nodes.entries()) {
      const peer = nodes[1 - i] as (typeof nodes)[number];
      const index = (devices[i] as LinkInfo).index;
      await n.s.setNeighbor({ index, ip: peer.vtep, mac: peer.mac });
      await n.s.setFdb({ index, mac: peer.mac, dst: peer.underlayIp });
      await n.s.addRoute({ dst: peer.subnet, gw: peer.vtep, index, onlink: true });
    }

    const ping = world.inNetns(nsA.name, 'ping', ['-c', '2', '-i', '0.2', '-W', '2', '10.244.1.0']);
    expect(ping.stderr).toBe('');
    expect(ping.stdout).toMatch(/2 received/);
    // With nolearning and no group, nothing but our entries exists: B learned nothing from A.
    expect((await b.listFdb((devices[1] as LinkInfo).index)).map((e) => e.mac)).toEqual(['02:aa:00:00:00:01']);
    expect(world.inNetns(nsB.name, 'ping', ['-c', '1', '-W', '2', '10.244.0.0']).code).toBe(0);

    // Without the FDB entry the kernel has nowhere to send the frame.
    await a.delFdb({ index: (devices[0] as LinkInfo).index, mac: '02:aa:00:00:00:02' });
    expect(world.inNetns(nsA.name, 'ping', ['-c', '1', '-W', '1', '10.244.1.0']).code).not.toBe(0);
  });
});
