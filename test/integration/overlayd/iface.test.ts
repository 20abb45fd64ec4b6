import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectUnderlay } from '../../../overlayd/iface.js';
import type { RtnlSession } from '../../../lib/netlink/rtnl.js';
import { TestWorld, isRoot, sh } from '../../../world/netns.js';

// berth-overlayd's choice of underlay interface in a namespace with two candidates: the default
// route's interface unless --iface (a name or an address), --iface-regex or --public-ip say
// otherwise.

describe.skipIf(!isRoot)('underlay interface selection', () => {
  const world = new TestWorld();
  let s: RtnlSession;
  let ns: { name: string; path: string };

  beforeAll(async () => {
    ({ s, ns } = await world.rtnlSession('bt-if-'));
    const peer = world.netns('bt-ifp-');
    for (const [dev, addr] of [
      ['ens3', '192.168.50.10/24'],
      ['data0', '172.31.7.20/24'],
    ] as const) {
      sh('ip', ['-n', ns.name, 'link', 'add', dev, 'mtu', dev === 'data0' ? '9000' : '1500', 'type', 'veth', 'peer', 'name', `p-${dev}`, 'netns', peer.name]);
      sh('ip', ['-n', ns.name, 'addr', 'add', addr, 'dev', dev]);
      sh('ip', ['-n', ns.name, 'link', 'set', dev, 'up']);
    }
    sh('ip', ['-n', ns.name, 'route', 'add', 'default', 'via', '192.168.50.1']);
  });
  afterAll(() => world.cleanup());

  it('takes the default route interface by default', async () => {
    expect(await selectUnderlay(s, { iface: [], ifaceRegex: [] })).toMatchObject({ name: 'ens3', address: '192.168.50.10', cidr: '192.168.50.10/24', publicIP: '192.168.50.10', mtu: 1500 });
  });

  it('follows --iface by name or address, first that exists', async () => {
    expect(await selectUnderlay(s, { iface: ['missing0', 'data0'], ifaceRegex: [] })).toMatchObject({ name: 'data0', address: '172.31.7.20', mtu: 9000 });
    expect(await selectUnderlay(s, { iface: ['172.31.7.20'], ifaceRegex: [] })).toMatchObject({ name: 'data0' });
    await expect(selectUnderlay(s, { iface: ['nope0'], ifaceRegex: [] })).rejects.toThrow(/--iface nope0: no such interface/);
  });

  it('follows --iface-regex on names and addresses', async () => {
    expect(await selectUnderlay(s, { iface: [], ifaceRegex: ['^data'] })).toMatchObject({ name: 'data0' });
    expect(await selectUnderlay(s, { iface: [], ifaceRegex: ['^172\\.31\\.'] })).toMatchObject({ name: 'data0' });
    await expect(selectUnderlay(s, { iface: [], ifaceRegex: ['^wlan'] })).rejects.toThrow(/--iface-regex \^wlan: no interface/);
  });

  it('advertises --public-ip, and picks the interface that holds it', async () => {
    expect(await selectUnderlay(s, { iface: [], ifaceRegex: [], publicIp: '172.31.7.20' })).toMatchObject({ name: 'data0', publicIP: '172.31.7.20' });
    // An address this node does not hold (behind NAT): advertised as given, the default route's interface carries it.
    expect(await selectUnderlay(s, { iface: [], ifaceRegex: [], publicIp: '203.0.113.9' })).toMatchObject({ name: 'ens3', address: '192.168.50.10', publicIP: '203.0.113.9' });
  });
});
