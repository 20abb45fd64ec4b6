import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCni } from '../../../../world/cni.js';
import { hostLocal, ipsOf, runIpam, TempDataDir, type Attachment } from './helpers.js';

// berth-host-local run as a runtime runs it: a built executable, CNI_* variables, JSON on stdin.

const network = 'itnet';
const data = new TempDataDir();

beforeEach(() => {
  data.create();
});
afterEach(() => data.remove());

function conf(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.1.0', name: network, type: 'berth-host-local', ipam: { type: 'berth-host-local', dataDir: data.path, ...ipam }, ...extra };
}

const v4 = { ranges: [[{ subnet: '10.44.0.0/24' }]] };
const run = (command: string, attachment: Attachment, stdin: string | object) => runIpam(hostLocal, command, attachment, stdin);

describe('berth-host-local ADD', () => {
  it('prints an address for every spec version, with ips[].version before 1.0.0', async () => {
    const versions = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
    for (const [i, cniVersion] of versions.entries()) {
      const out = await run('ADD', { id: `v${i}` }, conf(v4, { cniVersion }));
      expect(out.code, out.stdout).toBe(0);
      expect(out.json?.cniVersion).toBe(cniVersion);
      const expected = { address: `10.44.0.${i + 2}/24`, gateway: '10.44.0.1' };
      expect(ipsOf(out)).toEqual([cniVersion.startsWith('0.') ? { version: '4', ...expected } : expected]);
    }
    expect(Object.keys(data.leases(network))).toHaveLength(versions.length);
  });

  it('gives 8 concurrent ADDs for different containers 8 distinct addresses', async () => {
    const outs = await Promise.all(Array.from({ length: 8 }, (_, i) => run('ADD', { id: `par${i}` }, conf(v4))));
    const addresses = outs.map((o) => ipsOf(o)[0]?.address);
    expect(new Set(addresses).size).toBe(8);
    const leases = data.leases(network);
    expect(Object.keys(leases)).toHaveLength(8);
    outs.forEach((o, i) => expect(leases[(addresses[i] as string).split('/')[0] as string]).toBe(`par${i}\r\neth0`));
  });

  it('under 8 concurrent ADDs a 3-address range gives exactly 3 addresses and 5 clean exhausted errors', async () => {
    const tiny = { ranges: [[{ subnet: '10.45.0.0/24', rangeStart: '10.45.0.10', rangeEnd: '10.45.0.12' }]] };
    const outs = await Promise.all(Array.from({ length: 8 }, (_, i) => run('ADD', { id: `race${i}` }, conf(tiny))));
    const won = outs.filter((o) => o.code === 0);
    const lost = outs.filter((o) => o.code !== 0);
    expect(won).toHaveLength(3);
    expect(new Set(won.map((o) => ipsOf(o)[0]?.address))).toEqual(new Set(['10.45.0.10/24', '10.45.0.11/24', '10.45.0.12/24']));
    expect(lost).toHaveLength(5);
    for (const o of lost) {
      expect(o.json).toEqual({
        cniVersion: '1.1.0',
        code: 999,
        msg: 'network "itnet": no free address left in range set 0 (10.45.0.0/24 (10.45.0.10-10.45.0.12))',
      });
    }
    // Exactly the 3 leases: no fourth lease, no temp file left by a loser.
    expect(Object.keys(data.leases(network))).toEqual(['10.45.0.10', '10.45.0.11', '10.45.0.12']);
  });

  it('hands out addresses round-robin: a released address is not reused at once', async () => {
    const first = ipsOf(await run('ADD', { id: 'a' }, conf(v4)));
    expect((await run('DEL', { id: 'a' }, conf(v4))).code).toBe(0);
    const second = ipsOf(await run('ADD', { id: 'b' }, conf(v4)));
    expect(first[0]?.address).toBe('10.44.0.2/24');
    expect(second[0]?.address).toBe('10.44.0.3/24');
  });

  it('gives one IPv4 and one IPv6 address for dual-stack range sets', async () => {
    const dual = { ranges: [[{ subnet: '10.44.0.0/24' }], [{ subnet: 'fd00:44::/64' }]] };
    const out = await run('ADD', { id: 'dual' }, conf(dual));
    expect(ipsOf(out)).toEqual([
      { address: '10.44.0.2/24', gateway: '10.44.0.1' },
      { address: 'fd00:44::2/64', gateway: 'fd00:44::1' },
    ]);
    expect(data.leases(network)).toEqual({ '10.44.0.2': 'dual\r\neth0', 'fd00:44::2': 'dual\r\neth0' });
  });

  it('puts the resolvConf nameservers, domain, search and options into dns', async () => {
    const resolv = join(data.path, 'resolv.conf');
    writeFileSync(resolv, '# generated\nnameserver 10.96.0.10\nnameserver fd00::10\ndomain cluster.local\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5 edns0\n');
    const out = await run('ADD', { id: 'dns' }, conf({ ...v4, resolvConf: resolv, routes: [{ dst: '0.0.0.0/0' }] }));
    expect(out.json?.dns).toEqual({
      nameservers: ['10.96.0.10', 'fd00::10'],
      domain: 'cluster.local',
      search: ['default.svc.cluster.local', 'svc.cluster.local'],
      options: ['ndots:5', 'edns0'],
    });
    expect(out.json?.routes).toEqual([{ dst: '0.0.0.0/0' }]);
  });
});

describe('berth-host-local requested addresses', () => {
  it('gives the address asked for with CNI_ARGS IP=', async () => {
    const out = await run('ADD', { id: 'req', args: 'IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.44.0.77' }, conf(v4));
    expect(ipsOf(out)[0]?.address).toBe('10.44.0.77/24');
    expect(data.leases(network)).toEqual({ '10.44.0.77': 'req\r\neth0' });
  });

  it('gives the addresses asked for with runtimeConfig.ips, one per range set', async () => {
    const dual = { ranges: [[{ subnet: '10.44.0.0/24' }], [{ subnet: 'fd00:44::/64' }]] };
    const out = await run('ADD', { id: 'req' }, conf(dual, { runtimeConfig: { ips: ['fd00:44::99/64', '10.44.0.99/24'] } }));
    expect(ipsOf(out).map((i) => i.address)).toEqual(['10.44.0.99/24', 'fd00:44::99/64']);
  });

  it('refuses a requested address that is taken, naming it and its holder, and writes nothing', async () => {
    ipsOf(await run('ADD', { id: 'owner', args: 'IP=10.44.0.77' }, conf(v4)));
    const before = data.snapshot(network);
    const out = await run('ADD', { id: 'thief' }, conf(v4, { runtimeConfig: { ips: ['10.44.0.77'] } }));
    expect(out.code).toBe(1);
    expect(out.json?.msg).toBe('runtimeConfig.ips[0]: requested address 10.44.0.77 is already in use by container owner (eth0) in network "itnet"');
    expect(data.snapshot(network)).toEqual(before);
  });
});

describe('berth-host-local DEL, CHECK, GC, STATUS', () => {
  it('DEL releases the lease, and a second DEL also succeeds', async () => {
    ipsOf(await run('ADD', { id: 'gone' }, conf(v4)));
    expect(await run('DEL', { id: 'gone' }, conf(v4))).toMatchObject({ code: 0, stdout: '' });
    expect(data.leases(network)).toEqual({});
    expect(await run('DEL', { id: 'gone' }, conf(v4))).toMatchObject({ code: 0, stdout: '' });
  });

  it('DEL of an unknown container succeeds and changes nothing', async () => {
    ipsOf(await run('ADD', { id: 'stays' }, conf(v4)));
    const before = data.snapshot(network);
    expect((await run('DEL', { id: 'stranger' }, conf(v4))).code).toBe(0);
    expect(data.snapshot(network)).toEqual(before);
  });

  it('DEL with CNI_NETNS unset releases the lease (the netns may be long gone)', async () => {
    ipsOf(await run('ADD', { id: 'nonetns' }, conf(v4)));
    const out = await run('DEL', { id: 'nonetns', env: { CNI_NETNS: undefined } }, conf(v4));
    expect(out.code, out.stdout).toBe(0);
    expect(data.leases(network)).toEqual({});
  });

  it('DEL releases only the named interface of a container', async () => {
    ipsOf(await run('ADD', { id: 'multi', ifname: 'eth0' }, conf(v4)));
    ipsOf(await run('ADD', { id: 'multi', ifname: 'net1' }, conf(v4)));
    expect((await run('DEL', { id: 'multi', ifname: 'eth0' }, conf(v4))).code).toBe(0);
    expect(data.leases(network)).toEqual({ '10.44.0.3': 'multi\r\nnet1' });
  });

  it('CHECK succeeds while the container holds its prevResult addresses and fails once released', async () => {
    const added = await run('ADD', { id: 'chk' }, conf(v4));
    const prevResult = added.json;
    expect(await run('CHECK', { id: 'chk' }, conf(v4, { prevResult }))).toMatchObject({ code: 0, stdout: '' });
    await run('DEL', { id: 'chk' }, conf(v4));
    const out = await run('CHECK', { id: 'chk' }, conf(v4, { prevResult }));
    expect(out.code).toBe(1);
    expect(out.json?.msg).toBe('prevResult.ips[0]: 10.44.0.2 is not leased to container chk (eth0) in network "itnet"');
  });

  it('GC with cni.dev/valid-attachments keeps only the listed leases', async () => {
    for (const id of ['live1', 'dead1', 'live2', 'dead2']) ipsOf(await run('ADD', { id }, conf(v4)));
    const attachments = [{ containerID: 'live1', ifname: 'eth0' }, { containerID: 'live2', ifname: 'eth0' }, { containerID: 'dead1', ifname: 'net9' }];
    const out = await runCni(hostLocal, { command: 'GC' }, conf(v4, { 'cni.dev/valid-attachments': attachments }));
    expect(out.code, out.stdout).toBe(0);
    expect(Object.values(data.leases(network)).sort()).toEqual(['live1\r\neth0', 'live2\r\neth0']);
  });

  it('STATUS succeeds while every range set has a free address and answers code 50 when one is full', async () => {
    const small = { ranges: [[{ subnet: '10.44.0.0/24' }], [{ subnet: '10.46.0.0/30' }]] };
    expect(await runCni(hostLocal, { command: 'STATUS' }, conf(small))).toMatchObject({ code: 0, stdout: '' });
    ipsOf(await run('ADD', { id: 'fill' }, conf(small)));
    const out = await runCni(hostLocal, { command: 'STATUS' }, conf(small));
    expect(out.code).toBe(1);
    expect(out.json).toMatchObject({ code: 50, msg: 'network "itnet": no free address left in range set 1 (10.46.0.0/30 (10.46.0.1-10.46.0.2))' });
  });
});

describe('berth-host-local refuses bad input with the spec error codes', () => {
  it('malformed JSON -> code 6', async () => {
    const out = await run('ADD', { id: 'bad' }, '{"cniVersion": "1.0.0", ');
    expect(out).toMatchObject({ code: 1 });
    expect(out.json?.code).toBe(6);
  });

  it('a missing environment variable -> code 4 naming it', async () => {
    const out = await run('ADD', { id: 'bad', env: { CNI_IFNAME: undefined } }, conf(v4));
    expect(out.json?.code).toBe(4);
    expect(out.json?.msg).toMatch(/CNI_IFNAME/);
  });

  it('an unknown cniVersion -> code 1', async () => {
    const out = await run('ADD', { id: 'bad' }, conf(v4, { cniVersion: '9.9.9' }));
    expect(out.json?.code).toBe(1);
  });

  it('an unknown CNI_COMMAND -> code 4', async () => {
    const out = await run('FROB', { id: 'bad' }, conf(v4));
    expect(out.json?.code).toBe(4);
    expect(out.json?.msg).toMatch(/FROB/);
  });

  it('a bad subnet -> code 7 naming the field, and nothing written', async () => {
    const out = await run('ADD', { id: 'bad' }, conf({ ranges: [[{ subnet: '10.44.0.0/24' }], [{ subnet: '10.47.0.0/33' }]] }));
    expect(out.json?.code).toBe(7);
    expect(out.json?.msg).toMatch(/^ipam\.ranges\[1\]\[0\]\.subnet: /);
    expect(data.snapshot(network)).toEqual({});
  });

  it('a /31 subnet -> code 7, too small to allocate from', async () => {
    const out = await run('ADD', { id: 'bad' }, conf({ subnet: '10.47.0.0/31' }));
    expect(out.json).toMatchObject({ code: 7, msg: 'ipam.subnet: network 10.47.0.0/31 too small to allocate from' });
  });
});
