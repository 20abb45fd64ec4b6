import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { executePlugin } from '../../../../lib/cni/skeleton.js';
import { hostLocalPlugin } from '../../../../cni-plugins/host-local/plugin.js';

// The plugin in-process through the shared skeleton, with a temp dataDir: no root needed.

let dataDir = '';
beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'berth-ipam-unit-'));
});
afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

function conf(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion: '1.1.0', name: 'unitnet', type: 'berth-host-local', ipam: { type: 'berth-host-local', dataDir, ...ipam }, ...extra });
}

async function call(command: string, stdin: string, opts: { id?: string; ifname?: string; args?: string } = {}) {
  const env: Record<string, string> = { CNI_COMMAND: command, CNI_CONTAINERID: opts.id ?? 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: opts.ifname ?? 'eth0', CNI_PATH: '/nowhere' };
  if (opts.args) env.CNI_ARGS = opts.args;
  const out = await executePlugin(hostLocalPlugin, { env, stdin });
  return { code: out.exitCode, json: out.stdout ? (JSON.parse(out.stdout) as Record<string, unknown>) : undefined };
}

const netDir = () => join(dataDir, 'unitnet');
const leaseFiles = () => readdirSync(netDir()).filter((n) => n !== 'lock' && !n.startsWith('last_reserved_ip.')).sort();

describe('host-local in-process: ADD result', () => {
  it('returns an IPAM result: ips with gateway and no interface index, routes, dns', async () => {
    const resolv = join(dataDir, 'resolv.conf');
    writeFileSync(resolv, 'nameserver 10.0.0.53\nsearch a.local b.local\noptions ndots:5\n');
    const stdin = conf({ ranges: [[{ subnet: '10.5.0.0/24' }], [{ subnet: 'fd00:5::/64' }]], routes: [{ dst: '0.0.0.0/0' }], resolvConf: resolv });
    const out = await call('ADD', stdin);
    expect(out.code).toBe(0);
    expect(out.json).toEqual({
      cniVersion: '1.1.0',
      ips: [
        { address: '10.5.0.2/24', gateway: '10.5.0.1' },
        { address: 'fd00:5::2/64', gateway: 'fd00:5::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['10.0.0.53'], search: ['a.local', 'b.local'], options: ['ndots:5'] },
    });
    expect(out.json).not.toHaveProperty('interfaces');
  });

  it('a repeated ADD for the same container and ifname returns the address it already holds', async () => {
    const stdin = conf({ ranges: [[{ subnet: '10.5.0.0/24' }]] });
    const first = await call('ADD', stdin);
    const again = await call('ADD', stdin);
    expect(again.json?.ips).toEqual(first.json?.ips);
    expect(leaseFiles()).toEqual(['10.5.0.2']);
    const otherIf = await call('ADD', stdin, { ifname: 'eth1' });
    expect(otherIf.json?.ips).toEqual([{ address: '10.5.0.3/24', gateway: '10.5.0.1' }]);
  });

  it('refuses to give a container a second, different requested address in a range set it already holds', async () => {
    const stdin = conf({ ranges: [[{ subnet: '10.5.0.0/24' }]] });
    await call('ADD', stdin);
    const out = await call('ADD', stdin, { args: 'IP=10.5.0.9' });
    expect(out.code).toBe(1);
    expect(out.json?.msg).toMatch(/^CNI_ARGS IP: container c1 \(eth0\) already holds 10\.5\.0\.2/);
    expect(leaseFiles()).toEqual(['10.5.0.2']);
  });

  it('releases the addresses of earlier range sets when a later set is exhausted, leaving nothing behind', async () => {
    const stdin = conf({ ranges: [[{ subnet: '10.5.0.0/24' }], [{ subnet: '10.6.0.0/30' }]] });
    expect((await call('ADD', stdin, { id: 'fill' })).code).toBe(0);
    const before = readdirSync(netDir()).sort();
    const out = await call('ADD', stdin, { id: 'late' });
    expect(out.code).toBe(1);
    expect(out.json).toMatchObject({ code: 999 });
    expect(out.json?.msg).toBe('network "unitnet": no free address left in range set 1 (10.6.0.0/30 (10.6.0.1-10.6.0.2))');
    // Not even the round-robin cursor moved.
    expect(readdirSync(netDir()).sort()).toEqual(before);
  });

  it('fails before writing anything when a requested address fits no range', async () => {
    const out = await call('ADD', conf({ ranges: [[{ subnet: '10.5.0.0/24' }]] }, { runtimeConfig: { ips: ['10.77.0.5'] } }));
    expect(out.code).toBe(1);
    expect(out.json?.code).toBe(7);
    expect(out.json?.msg).toMatch(/^runtimeConfig\.ips\[0\]: cannot allocate requested address 10\.77\.0\.5: it is in no range of network "unitnet"/);
    expect(existsSync(netDir())).toBe(false);
  });

  it('refuses two requested addresses for one range set', async () => {
    const out = await call('ADD', conf({ ranges: [[{ subnet: '10.5.0.0/24' }]] }), { args: 'IP=10.5.0.5,10.5.0.6' });
    expect(out.json?.msg).toMatch(/10\.5\.0\.6: another requested address already takes its range set/);
  });

  it('refuses a requested gateway address', async () => {
    const out = await call('ADD', conf({ ranges: [[{ subnet: '10.5.0.0/24' }]] }), { args: 'IP=10.5.0.1' });
    expect(out.json?.msg).toMatch(/^CNI_ARGS IP: .*10\.5\.0\.1 is the gateway/);
  });

  it('reports an unreadable resolvConf as an I/O error naming the field', async () => {
    const out = await call('ADD', conf({ ranges: [[{ subnet: '10.5.0.0/24' }]], resolvConf: join(dataDir, 'missing.conf') }));
    expect(out.json).toMatchObject({ code: 5 });
    expect(out.json?.msg).toMatch(/^ipam\.resolvConf: cannot read/);
  });
});

describe('host-local in-process: CHECK, GC, STATUS', () => {
  const ranges = [[{ subnet: '10.5.0.0/24' }]];

  it('CHECK passes when the container holds the prevResult addresses and fails naming the one it does not', async () => {
    const added = await call('ADD', conf({ ranges }));
    const prevResult = added.json;
    expect((await call('CHECK', conf({ ranges }, { prevResult }))).code).toBe(0);
    const wrong = { ...prevResult, ips: [{ address: '10.5.0.40/24', gateway: '10.5.0.1' }] };
    const out = await call('CHECK', conf({ ranges }, { prevResult: wrong }));
    expect(out.code).toBe(1);
    expect(out.json?.msg).toBe('prevResult.ips[0]: 10.5.0.40 is not leased to container c1 (eth0) in network "unitnet"');
  });

  it('CHECK fails for a container that holds nothing', async () => {
    const out = await call('CHECK', conf({ ranges }, { prevResult: { cniVersion: '1.1.0', ips: [] } }), { id: 'nobody' });
    expect(out.code).toBe(1);
    expect(out.json?.msg).toMatch(/no address is leased to container nobody/);
  });

  it('GC keeps only the listed attachments, and old ID-only leases of listed containers', async () => {
    for (const id of ['keep', 'drop']) await call('ADD', conf({ ranges }), { id });
    writeFileSync(join(netDir(), '10.5.0.50'), 'keep');
    writeFileSync(join(netDir(), '10.5.0.51'), 'gone');
    const out = await call('GC', conf({ ranges }, { 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] }));
    expect(out.code).toBe(0);
    expect(leaseFiles()).toEqual(['10.5.0.2', '10.5.0.50']);
  });

  it('STATUS is ready while an address is free and answers code 50 once a range set is full', async () => {
    const small = [[{ subnet: '10.5.0.0/24' }], [{ subnet: '10.6.0.0/30' }]];
    expect((await call('STATUS', conf({ ranges: small }))).code).toBe(0);
    await call('ADD', conf({ ranges: small }));
    const out = await call('STATUS', conf({ ranges: small }));
    expect(out.code).toBe(1);
    expect(out.json).toMatchObject({ code: 50 });
    expect(out.json?.msg).toMatch(/range set 1/);
  });

  it('STATUS answers code 50 when the dataDir cannot hold leases', async () => {
    writeFileSync(join(dataDir, 'plain-file'), '');
    const out = await call('STATUS', conf({ ranges, dataDir: join(dataDir, 'plain-file', 'sub') }));
    expect(out.json).toMatchObject({ code: 50 });
    expect(out.json?.msg).toMatch(/^ipam\.dataDir: /);
  });
});
