import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import { NetlinkError, RtnlSession, withRtnl } from '../../../../lib/netlink/rtnl.js';
import { TestWorld, isRoot, uniqueName } from '../../../../world/netns.js';

// RtnlSession against the real kernel, each test in fresh network namespaces. Checks go through
// iproute2 (`ip -j`, `bridge -j`), an independent reader of the same state.

describe.skipIf(!isRoot)('RtnlSession', () => {
  const world = new TestWorld();
  afterEach(() => world.cleanup());
  const sessionIn = () => world.rtnlSession('bt-nl-');

  const ipJson = (ns: string, args: string[]): Record<string, unknown>[] => {
    const r = world.inNetns(ns, 'ip', ['-j', ...args]);
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout || '[]') as Record<string, unknown>[];
  };

  // This kernel may lack CONFIG_BRIDGE_VLAN_FILTERING; VLAN tests adapt to what it has.
  let vlanFiltering = false;
  beforeAll(async () => {
    if (!isRoot) return;
    const probe = new TestWorld();
    try {
      const ns = probe.netns('bt-nl-');
      await withRtnl(ns.path, async (s) => s.createBridge('probe0', { vlanFiltering: true }));
      vlanFiltering = true;
    } catch (err) {
      if (!(err instanceof NetlinkError && err.code === 'EOPNOTSUPP')) throw err;
    } finally {
      probe.cleanup();
    }
  });

  it('a session sees its own namespace: only lo, down', async () => {
    const { s } = await sessionIn();
    const links = await s.listLinks();
    expect(links.map((l) => l.name)).toEqual(['lo']);
    expect(await s.getLink('lo')).toMatchObject({ index: 1, name: 'lo', up: false, mtu: 65536 });
    expect(await s.getLinkByIndex(1)).toMatchObject({ name: 'lo' });
    expect(await s.getLink('eth0')).toBeUndefined();
    expect(await s.getLinkByIndex(999)).toBeUndefined();
  });

  it('opening a session in a missing namespace is a not-found BerthError', async () => {
    await expect(RtnlSession.open('/run/netns/bt-missing-namespace')).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('creates a bridge, accepts it again, and refuses a non-bridge of that name', async () => {
    const { s, ns } = await sessionIn();
    const br = await s.createBridge('br0', { mtu: 1400, vlanFiltering: false });
    expect(br).toMatchObject({ name: 'br0', kind: 'bridge', mtu: 1400 });
    expect(await s.createBridge('br0')).toMatchObject({ index: br.index, kind: 'bridge' });
    expect(ipJson(ns.name, ['-d', 'link', 'show', 'br0'])[0]).toMatchObject({ mtu: 1400, linkinfo: { info_kind: 'bridge' } });

    await s.createVethPair({ name: 've0', peerName: 've1' });
    const err = await s.createBridge('ve0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('already-exists');
    expect((err as BerthError).message).toMatch(/create bridge ve0 in \/run\/netns\/bt-nl-\w+: a veth link of that name exists/);
  });

  it('creates a veth pair with its peer placed straight into another namespace', async () => {
    const { s, ns: host } = await sessionIn();
    const pod = world.netns('bt-nl-');
    const veth = await s.createVethPair({ name: 'vhost0', peerName: 'eth0', mtu: 1450, peerNetnsPath: pod.path, mac: '02:42:0a:00:00:01', peerMac: '02:42:0a:00:00:02' });
    expect(veth).toMatchObject({ name: 'vhost0', kind: 'veth', mtu: 1450, mac: '02:42:0a:00:00:01' });
    expect(world.inNetns(host.name, 'ip', ['link', 'show', 'eth0']).code).not.toBe(0);

    const podSession = await RtnlSession.open(pod.path);
    world.defer(() => podSession.close());
    const peer = await podSession.getLink('eth0');
    expect(peer).toMatchObject({ kind: 'veth', mtu: 1450, mac: '02:42:0a:00:00:02' });
    // Each end names the other's ifindex: how DEL finds the host veth from the container side.
    expect(await podSession.peerIndexOf('eth0')).toBe(veth.index);
    expect(veth.linkIndex).toBe(peer?.index);
    expect((await s.getLinkByIndex(peer?.linkIndex as number))?.name).toBe('vhost0');
  });

  it('a veth whose peer name is taken in the target namespace fails naming both ends', async () => {
    const { s } = await sessionIn();
    const pod = world.netns('bt-nl-');
    await s.createVethPair({ name: 'va', peerName: 'eth0', peerNetnsPath: pod.path });
    const err = await s.createVethPair({ name: 'vb', peerName: 'eth0', peerNetnsPath: pod.path }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as NetlinkError).code).toBe('EEXIST');
    expect((err as Error).message).toContain(`create veth vb (peer eth0 in ${pod.path})`);
    expect(await s.getLink('vb')).toBeUndefined();
  });

  it('a veth into a missing namespace fails before anything is created', async () => {
    const { s } = await sessionIn();
    await expect(s.createVethPair({ name: 'vc', peerName: 'eth0', peerNetnsPath: '/run/netns/bt-missing-namespace' })).rejects.toMatchObject({ kind: 'not-found' });
    expect(await s.getLink('vc')).toBeUndefined();
  });

  it('deleting a missing link is not an error; deleting a veth removes both ends', async () => {
    const { s } = await sessionIn();
    expect(await s.deleteLink('nothere0')).toBe(false);
    expect(await s.deleteLinkByIndex(4242)).toBe(false);
    const a = await s.createVethPair({ name: 'vd0', peerName: 'vd1' });
    expect(await s.deleteLink('vd0')).toBe(true);
    expect(await s.getLink('vd1')).toBeUndefined();
    expect(await s.deleteLinkByIndex(a.index)).toBe(false);
  });

  it('sets up/down, master, promisc, mtu, mac and name', async () => {
    const { s, ns } = await sessionIn();
    const br = await s.createBridge('br0');
    const v = await s.createVethPair({ name: 'vport0', peerName: 'vpeer0' });
    await s.setMaster(v.index, br.index);
    await s.setUp(v.index);
    await s.setUp(br.index);
    await s.setPromisc(v.index, true);
    await s.setMtu(v.index, 1300);
    expect(await s.getLink('vport0')).toMatchObject({ up: true, promisc: true, mtu: 1300, masterIndex: br.index });
    expect(ipJson(ns.name, ['link', 'show', 'vport0'])[0]).toMatchObject({ master: 'br0', mtu: 1300 });

    await s.setPromisc(v.index, false);
    await s.setMaster(v.index, 0);
    await s.setDown(v.index);
    await s.setMac(v.index, '02:00:00:00:00:aa');
    await s.renameLink(v.index, 'renamed0');
    const after = await s.getLinkByIndex(v.index);
    expect(after).toMatchObject({ name: 'renamed0', up: false, promisc: false, mac: '02:00:00:00:00:aa' });
    expect(after?.masterIndex).toBeUndefined();
  });

  it('errors name the link and the namespace', async () => {
    const { s, ns } = await sessionIn();
    const v = await s.createVethPair({ name: 'vname0', peerName: 'vname1' });
    const err = await s.setMtu(v.index, 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as NetlinkError).code).toBe('EINVAL');
    expect((err as Error).message).toBe(`set mtu 10 on link vname0 (#${v.index}) in ${ns.path}: invalid argument (EINVAL)`);
    await s.createVethPair({ name: 'taken0', peerName: 'taken1' });
    await expect(s.renameLink(v.index, 'taken0')).rejects.toThrow(`rename link vname0 (#${v.index}) to taken0 in ${ns.path}: file already exists (EEXIST)`);
    await expect(s.setUp(4242)).rejects.toMatchObject({ kind: 'not-found', code: 'ENODEV' });
  });

  it('adds, lists and deletes IPv4 and IPv6 addresses; adding twice is fine', async () => {
    const { s, ns } = await sessionIn();
    const v = await s.createVethPair({ name: 'vaddr0', peerName: 'vaddr1' });
    await s.addAddress(v.index, '10.77.1.5/24');
    await s.addAddress(v.index, '10.77.1.5/24');
    await s.addAddress(v.index, 'fd77::5/64', { noDad: true });
    const addrs = await s.listAddresses(v.index);
    expect(addrs.map((a) => a.cidr).sort()).toEqual(['10.77.1.5/24', 'fd77::5/64']);
    expect(await s.listAddresses(v.index, 6)).toHaveLength(1);
    expect((await s.listAddresses(undefined, 4)).map((a) => a.cidr)).toEqual(['10.77.1.5/24']);
    const [shown] = ipJson(ns.name, ['addr', 'show', 'vaddr0']);
    const info = (shown?.addr_info ?? []) as Record<string, unknown>[];
    expect(info.find((a) => a.local === '10.77.1.5')).toMatchObject({ prefixlen: 24, broadcast: '10.77.1.255' });

    expect(await s.delAddress(v.index, '10.77.1.5/24')).toBe(true);
    expect(await s.delAddress(v.index, '10.77.1.5/24')).toBe(false);
    expect((await s.listAddresses(v.index, 4))).toEqual([]);
  });

  it('adds routes (gateway, onlink default, device scope with mtu and metric, other table) and deletes them', async () => {
    const { s, ns } = await sessionIn();
    const v = await s.createVethPair({ name: 'vrt0', peerName: 'vrt1' });
    await s.setUp(v.index);
    await s.addAddress(v.index, '10.88.0.2/24');
    await s.addRoute({ dst: '10.99.0.0/16', gw: '10.88.0.1' });
    await s.addRoute({ dst: '10.99.0.0/16', gw: '10.88.0.1' });
    await s.addRoute({ dst: '0.0.0.0/0', gw: '192.168.254.1', index: v.index, onlink: true });
    await s.addRoute({ dst: '10.100.5.7/16', index: v.index, mtu: 1300, priority: 7 });
    await s.addRoute({ dst: '10.101.0.0/16', gw: '10.88.0.1', table: 100 });

    const routes = await s.listRoutes({ family: 4 });
    expect(routes.find((r) => r.dst === '10.99.0.0/16')).toMatchObject({ gw: '10.88.0.1', index: v.index, table: 254 });
    expect(routes.find((r) => r.dst === '0.0.0.0/0')).toMatchObject({ gw: '192.168.254.1', onlink: true });
    expect(routes.find((r) => r.dst === '10.100.0.0/16')).toMatchObject({ scope: 253, mtu: 1300, priority: 7 });
    expect(routes.some((r) => r.dst === '10.101.0.0/16')).toBe(false);
    expect(await s.listRoutes({ family: 4, table: 100 })).toMatchObject([{ dst: '10.101.0.0/16', table: 100 }]);
    expect(ipJson(ns.name, ['route', 'show', 'default'])[0]).toMatchObject({ gateway: '192.168.254.1', flags: expect.arrayContaining(['onlink']) });

    expect(await s.delRoute({ dst: '10.99.0.0/16', gw: '10.88.0.1' })).toBe(true);
    expect(await s.delRoute({ dst: '10.99.0.0/16', gw: '10.88.0.1' })).toBe(false);
    expect(await s.delRoute({ dst: '10.101.0.0/16', table: 100 })).toBe(true);
    expect((await s.listRoutes({ family: 4 })).some((r) => r.dst === '10.99.0.0/16')).toBe(false);
  });

  it('an unreachable gateway is refused naming the route', async () => {
    const { s } = await sessionIn();
    await expect(s.addRoute({ dst: '10.99.0.0/16', gw: '10.1.1.1' })).rejects.toThrow(/add route 10\.99\.0\.0\/16 via 10\.1\.1\.1 in \/run\/netns\/.*ENETUNREACH/);
  });

  it('adds IPv6 routes and replaces a route', async () => {
    const { s } = await sessionIn();
    const v = await s.createVethPair({ name: 'vr6', peerName: 'vr6p' });
    await s.setUp(v.index);
    await s.addAddress(v.index, 'fd88::2/64', { noDad: true });
    await s.addRoute({ dst: 'fd99::/48', gw: 'fd88::1' });
    await s.addRoute({ dst: 'fd99::/48', gw: 'fd88::3' }, { replace: true });
    const routes = await s.listRoutes({ family: 6, index: v.index });
    expect(routes.filter((r) => r.dst === 'fd99::/48')).toMatchObject([{ gw: 'fd88::3' }]);
  });

  it('turns hairpin mode on and off on a bridge port', async () => {
    const { s, ns } = await sessionIn();
    const br = await s.createBridge('br0');
    const v = await s.createVethPair({ name: 'vhp0', peerName: 'vhp1' });
    await s.setMaster(v.index, br.index);
    await s.setHairpin(v.index, true);
    expect(await s.getBridgePort(v.index)).toMatchObject({ name: 'vhp0', masterIndex: br.index, hairpin: true });
    const shown = JSON.parse(world.inNetns(ns.name, 'bridge', ['-d', '-j', 'link', 'show', 'dev', 'vhp0']).stdout) as Record<string, unknown>[];
    expect(shown[0]).toMatchObject({ hairpin: true });
    await s.setHairpin(v.index, false);
    expect(await s.getBridgePort(v.index)).toMatchObject({ hairpin: false });
    expect(await s.getBridgePort(br.index)).toBeUndefined();
  });

  it('hairpin on a link that is no bridge port fails naming it', async () => {
    const { s } = await sessionIn();
    const v = await s.createVethPair({ name: 'vnp0', peerName: 'vnp1' });
    await expect(s.setHairpin(v.index, true)).rejects.toThrow(/set hairpin on on bridge port vnp0/);
  });

  it('bridge VLANs: added and removed where the kernel filters VLANs, a clear error where it cannot', async () => {
    const { s } = await sessionIn();
    const br = await s.createBridge('br0', vlanFiltering ? { vlanFiltering: true } : {});
    const v = await s.createVethPair({ name: 'vvl0', peerName: 'vvl1' });
    await s.setMaster(v.index, br.index);
    if (!vlanFiltering) {
      const err = await s.addBridgeVlan(v.index, 10, { pvid: true, untagged: true }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NetlinkError);
      expect((err as NetlinkError).code).toBe('EOPNOTSUPP');
      expect((err as NetlinkError).kind).toBe('unimplemented');
      expect((err as Error).message).toContain(`add vlan 10 to bridge port vvl0 (#${v.index})`);
      return;
    }
    await s.addBridgeVlan(v.index, 10, { pvid: true, untagged: true });
    await s.addBridgeVlan(v.index, 20);
    expect((await s.getBridgePort(v.index))?.vlans).toEqual(expect.arrayContaining([{ vid: 10, pvid: true, untagged: true }, { vid: 20, pvid: false, untagged: false }]));
    expect(await s.delBridgeVlan(v.index, 20)).toBe(true);
    expect((await s.getBridgePort(v.index))?.vlans.some((x) => x.vid === 20)).toBe(false);
  });

  it('serves many requests in flight at once', async () => {
    const { s } = await sessionIn();
    const names = Array.from({ length: 20 }, () => uniqueName('vp'));
    await Promise.all(names.map((n, i) => s.createVethPair({ name: n, peerName: `pp${i}` })));
    const found = await Promise.all(names.map((n) => s.getLink(n)));
    expect(found.map((l) => l?.name)).toEqual(names);
    expect(await Promise.all(names.map((n) => s.deleteLink(n)))).toEqual(names.map(() => true));
  });

  it('withRtnl closes the session even when the work fails', async () => {
    const ns = world.netns('bt-nl-');
    let seen: RtnlSession | undefined;
    await expect(withRtnl(ns.path, async (s) => { seen = s; throw new Error('work failed'); })).rejects.toThrow('work failed');
    expect(seen).toBeDefined();
  });
});
