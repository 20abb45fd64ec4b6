import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostLocal, ipsOf, referenceHostLocal, runIpam, TempDataDir, type Attachment } from './helpers.js';

// A node must be able to switch between the reference host-local (Debian
// containernetworking-plugins 1.1.1) and berth-host-local without losing or doubling a lease:
// both read and write the same files in the same dataDir. The reference speaks spec <= 1.0.0.

const haveReference = existsSync(referenceHostLocal);
if (!haveReference) console.log(`skipping reference compatibility tests: ${referenceHostLocal} is not installed (apt-get install containernetworking-plugins)`);

const network = 'compatnet';
const data = new TempDataDir();

beforeEach(() => {
  data.create();
});
afterEach(() => data.remove());

function conf(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.0.0', name: network, type: 'host-local', ipam: { type: 'host-local', dataDir: data.path, ...ipam }, ...extra };
}

const dual = { ranges: [[{ subnet: '10.55.0.0/24' }], [{ subnet: 'fd00:55::/64' }]] };
const ours = (command: string, a: Attachment, stdin: object) => runIpam(hostLocal, command, a, stdin);
const theirs = (command: string, a: Attachment, stdin: object) => runIpam(referenceHostLocal, command, a, stdin);

describe.skipIf(!haveReference)('compatibility with the reference host-local', () => {
  it('a lease made by the reference is never handed out by ours, and ours continues its round-robin', async () => {
    const ref = ipsOf(await theirs('ADD', { id: 'by-ref' }, conf(dual)));
    expect(ref.map((i) => i.address)).toEqual(['10.55.0.2/24', 'fd00:55::2/64']);
    const mine = ipsOf(await ours('ADD', { id: 'by-berth' }, conf(dual)));
    expect(mine.map((i) => i.address)).toEqual(['10.55.0.3/24', 'fd00:55::3/64']);
  });

  it('ours DEL of a container the reference added removes its leases', async () => {
    ipsOf(await theirs('ADD', { id: 'by-ref' }, conf(dual)));
    ipsOf(await theirs('ADD', { id: 'other-ref' }, conf(dual)));
    expect((await ours('DEL', { id: 'by-ref' }, conf(dual))).code).toBe(0);
    expect(data.leases(network)).toEqual({ '10.55.0.3': 'other-ref\r\neth0', 'fd00:55::3': 'other-ref\r\neth0' });
  });

  it('a lease made by ours is never handed out by the reference, and the reference DEL removes it', async () => {
    ipsOf(await ours('ADD', { id: 'by-berth' }, conf(dual)));
    const ref = ipsOf(await theirs('ADD', { id: 'by-ref' }, conf(dual)));
    expect(ref.map((i) => i.address)).toEqual(['10.55.0.3/24', 'fd00:55::3/64']);
    expect((await theirs('DEL', { id: 'by-berth' }, conf(dual))).code).toBe(0);
    expect(data.leases(network)).toEqual({ '10.55.0.3': 'by-ref\r\neth0', 'fd00:55::3': 'by-ref\r\neth0' });
  });

  it('the reference CHECK accepts a container added by ours, and ours accepts one added by the reference', async () => {
    const mine = await ours('ADD', { id: 'by-berth' }, conf(dual));
    expect((await theirs('CHECK', { id: 'by-berth' }, conf(dual, { prevResult: mine.json }))).code).toBe(0);
    const ref = await theirs('ADD', { id: 'by-ref' }, conf(dual));
    expect((await ours('CHECK', { id: 'by-ref' }, conf(dual, { prevResult: ref.json }))).code).toBe(0);
  });

  it('both name IPv6 lease files alike, so an address the reference took is seen as taken by ours', async () => {
    const v6 = { ranges: [[{ subnet: 'fd00:0:0:55::/64' }]] };
    const wanted = 'fd00:0:0:55:0:0:0:5';
    ipsOf(await theirs('ADD', { id: 'by-ref', args: `IP=${wanted}` }, conf(v6)));
    expect(Object.keys(data.leases(network))).toEqual(['fd00:0:0:55::5']);
    const out = await ours('ADD', { id: 'by-berth' }, conf(v6, { runtimeConfig: { ips: [wanted] } }));
    expect(out.code).toBe(1);
    expect(out.json?.msg).toMatch(/fd00:0:0:55::5 is already in use by container by-ref/);
  });

  it('concurrent ADDs from both plugins on a 5-address range never hand out one address twice', async () => {
    const tiny = { ranges: [[{ subnet: '10.56.0.0/24', rangeStart: '10.56.0.10', rangeEnd: '10.56.0.14' }]] };
    const outs = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? ours : theirs)('ADD', { id: `mix${i}` }, conf(tiny))),
    );
    const won = outs.filter((o) => o.code === 0).map((o) => ipsOf(o)[0]?.address);
    expect(won).toHaveLength(5);
    expect(new Set(won).size).toBe(5);
    expect(Object.keys(data.leases(network))).toHaveLength(5);
  });
});
