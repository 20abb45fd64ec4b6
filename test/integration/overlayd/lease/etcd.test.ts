import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import { EtcdLeaseStore } from '../../../../overlayd/lease/etcd.js';
import { parseNetworkConfig, formatNetworkConfig } from '../../../../overlayd/network-config.js';
import type { LeaseAttrs, LeaseEvent, LeaseWatch, NetworkConfig } from '../../../../overlayd/types.js';
import { waitFor } from '../../../../world/overlay.js';
import { EtcdWorld, etcdSkipReason } from '../../../../world/etcd.js';

// overlayd's etcd lease store against a real etcd: each test works under its own key prefix,
// with "nodes" being stores that differ by public IP.

const skip = etcdSkipReason();
let world: EtcdWorld;
let admin: Etcd3;
const stores: EtcdLeaseStore[] = [];
const watches: LeaseWatch[] = [];
const logs: string[] = [];
const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(line) });

const config: NetworkConfig = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}', 'test');
let prefix = '';

function attrs(n: number): LeaseAttrs {
  return { publicIP: `192.168.50.${n}`, backendType: 'vxlan', backendData: { vtepMAC: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`, vni: 1 } };
}

function store(opts: Partial<ConstructorParameters<typeof EtcdLeaseStore>[0]> = {}): EtcdLeaseStore {
  const s = new EtcdLeaseStore({ endpoints: world.endpoints, prefix, ttlSeconds: 2, log, ...opts });
  stores.push(s);
  return s;
}

async function value(key: string): Promise<string | null> {
  return admin.get(`${prefix}/subnets/${key}`).string();
}

const until = (what: string, check: () => boolean | Promise<boolean>, ms = 8000): Promise<void> => waitFor(what, check, ms);

async function watchAll(s: EtcdLeaseStore): Promise<{ events: LeaseEvent[]; errors: Error[] }> {
  const events: LeaseEvent[] = [];
  const errors: Error[] = [];
  watches.push(await s.watch((e) => events.push(e), (e) => errors.push(e)));
  return { events, errors };
}

describe.skipIf(skip)('etcd lease store', () => {
  beforeAll(async () => {
    world = await EtcdWorld.start();
    admin = new Etcd3({ hosts: world.endpoints });
  });
  afterAll(async () => {
    admin?.close();
    await world?.stop();
  });
  afterEach(async () => {
    for (const w of watches.splice(0)) await w.close();
    for (const s of stores.splice(0)) await s.close();
    logs.length = 0;
  });
  // A fresh prefix per test keeps tests apart in one etcd.
  const fresh = () => (prefix = `/berth-test/${randomBytes(4).toString('hex')}`);

  it('seeds <prefix>/config when absent, and a second node reads it', async () => {
    fresh();
    const seeded = await store({ seedConfig: config }).getNetworkConfig();
    expect(seeded).toEqual(config);
    expect(JSON.parse((await admin.get(`${prefix}/config`).string())!)).toEqual(JSON.parse(formatNetworkConfig(config)));
    const other = parseNetworkConfig('{"Network":"10.9.0.0/16"}', 'x');
    expect(await store({ seedConfig: other }).getNetworkConfig()).toEqual(config);
  });

  it('without a config or a seed, says where to put one', async () => {
    fresh();
    await expect(store().getNetworkConfig()).rejects.toThrow(new RegExp(`etcd key ${prefix}/config is absent.*--network-config`));
  });

  it('a bad config is refused with the key and the field named', async () => {
    fresh();
    await admin.put(`${prefix}/config`).value('{"Network":"10.244.0.0/16","SubnetLen":"24"}');
    const err = await store().getNetworkConfig().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as Error).message).toContain(`etcd key ${prefix}/config`);
    expect((err as Error).message).toContain('SubnetLen');
  });

  it('two nodes get different subnets, stored in flannel layout with an etcd lease', async () => {
    fresh();
    const a = await store().acquire(attrs(1), config);
    const b = await store().acquire(attrs(2), config);
    expect(a.subnet).toBe('10.244.1.0/24');
    expect(b.subnet).toBe('10.244.2.0/24');
    expect(a.expiration).toBeInstanceOf(Date);
    expect(JSON.parse((await value('10.244.1.0-24'))!)).toEqual({ PublicIP: '192.168.50.1', BackendType: 'vxlan', BackendData: { VtepMAC: '02:00:00:00:00:01', VNI: 1 } });
    const kv = (await admin.get(`${prefix}/subnets/10.244.2.0-24`).exec()).kvs[0]!;
    expect(kv.lease).not.toBe('0');
    const listed = await store().list();
    expect(listed.map((l) => [l.subnet, l.attrs.publicIP]).sort()).toEqual([['10.244.1.0/24', '192.168.50.1'], ['10.244.2.0/24', '192.168.50.2']]);
    expect(listed.every((l) => l.expiration instanceof Date)).toBe(true);
  });

  it('a restarted node takes back its own subnet; a free previous subnet is used', async () => {
    fresh();
    await store().acquire(attrs(1), config);
    const first = store();
    const mine = await first.acquire(attrs(2), config);
    await first.close();
    const again = await store().acquire(attrs(2), config, { subnet: '10.244.40.0/24' });
    expect(again.subnet).toBe(mine.subnet);
    const fromFile = await store().acquire(attrs(3), config, { subnet: '10.244.40.0/24' });
    expect(fromFile.subnet).toBe('10.244.40.0/24');
    const notLeasable = await store().acquire(attrs(4), config, { subnet: '10.244.0.0/24' });
    expect(notLeasable.subnet).toBe('10.244.3.0/24');
  });

  it('uses a reservation for its public IP and skips one for another IP', async () => {
    fresh();
    await admin.put(`${prefix}/subnets/10.244.1.0-24`).value(JSON.stringify({ PublicIP: '192.168.50.99', BackendType: 'vxlan', BackendData: { VtepMAC: '02:00:00:00:00:99', VNI: 1 } }));
    await admin.put(`${prefix}/subnets/10.244.7.0-24`).value(JSON.stringify({ PublicIP: '192.168.50.1', BackendType: 'vxlan', BackendData: { VtepMAC: 'x', VNI: 1 } }));
    const s = store();
    const reserved = await s.acquire(attrs(1), config);
    expect(reserved.subnet).toBe('10.244.7.0/24');
    expect(reserved.expiration).toBeUndefined();
    const kv = (await admin.get(`${prefix}/subnets/10.244.7.0-24`).exec()).kvs[0]!;
    expect(kv.lease).toBe('0');
    expect(JSON.parse(kv.value.toString()).BackendData.VtepMAC).toBe('02:00:00:00:00:01');
    expect((await store().acquire(attrs(2), config)).subnet).toBe('10.244.2.0/24');
    await s.release();
    expect(await value('10.244.7.0-24')).not.toBeNull(); // an operator's reservation outlives the node
    // A reservation written by hand with nothing but the public IP is honoured too.
    await admin.put(`${prefix}/subnets/10.244.9.0-24`).value('{"PublicIP":"192.168.50.3"}');
    expect((await store().acquire(attrs(3), config)).subnet).toBe('10.244.9.0/24');
  });

  it('10 nodes acquiring at once get 10 distinct subnets', async () => {
    fresh();
    const leases = await Promise.all(Array.from({ length: 10 }, (_, i) => store().acquire(attrs(i + 1), config)));
    expect(new Set(leases.map((l) => l.subnet)).size).toBe(10);
    expect(await admin.getAll().prefix(`${prefix}/subnets/`).count()).toBe(10);
  });

  it('a closed node\'s lease expires after its TTL and watchers see the delete', async () => {
    fresh();
    const observer = store();
    await observer.list();
    const { events } = await watchAll(observer);
    const node = store();
    const lease = await node.acquire(attrs(1), config);
    await until('put', () => events.some((e) => e.type === 'put'));
    await node.close();
    await until('delete', () => events.some((e) => e.type === 'delete' && e.key === '10.244.1.0-24'), 6000);
    expect(lease.subnet).toBe('10.244.1.0/24');
    expect(await value('10.244.1.0-24')).toBeNull();
  });

  it('a renewed lease outlives two TTLs, and one revoked behind its back is taken again', async () => {
    fresh();
    const node = store();
    await node.acquire(attrs(1), config);
    await sleep(5000);
    const kv = (await admin.get(`${prefix}/subnets/10.244.1.0-24`).exec()).kvs[0];
    expect(kv).toBeDefined();
    await admin.leaseClient.leaseRevoke({ ID: kv!.lease });
    expect(await value('10.244.1.0-24')).toBeNull();
    await until('the lease back', async () => (await value('10.244.1.0-24')) !== null, 4000);
    expect(logs.some((l) => l.includes('lease taken again with the same subnet'))).toBe(true);
  });

  it('a lease lost to another node while away is replaced by a new subnet, and the owner is told', async () => {
    fresh();
    const node = store();
    const changes: string[] = [];
    node.onSubnetChange = (l) => changes.push(l.subnet!);
    await node.acquire(attrs(1), config);
    const key = `${prefix}/subnets/10.244.1.0-24`;
    const kv = (await admin.get(key).exec()).kvs[0]!;
    // Another node's value put over ours (which detaches it from our etcd lease), then our lease
    // revoked: at its next renewal the store finds its subnet gone to 192.168.50.2.
    await admin.put(key).value(JSON.stringify({ PublicIP: '192.168.50.2', BackendType: 'vxlan', BackendData: { VtepMAC: '02:00:00:00:00:02', VNI: 1 } }));
    await admin.leaseClient.leaseRevoke({ ID: kv.lease });
    await until('a new subnet', () => changes.length > 0, 5000);
    expect(changes).toEqual(['10.244.2.0/24']);
    expect(JSON.parse((await value('10.244.2.0-24'))!)).toMatchObject({ PublicIP: '192.168.50.1' });
    expect(JSON.parse((await value('10.244.1.0-24'))!)).toMatchObject({ PublicIP: '192.168.50.2' });
  });

  it('watch sees another node\'s put and delete; release deletes the key', async () => {
    fresh();
    const observer = store();
    expect(await observer.list()).toEqual([]);
    const { events, errors } = await watchAll(observer);
    const node = store();
    const lease = await node.acquire(attrs(2), config);
    await until('put', () => events.length >= 1);
    expect(events[0]).toMatchObject({ type: 'put', lease: { subnet: lease.subnet, attrs: attrs(2) } });
    await node.release();
    await until('delete', () => events.length >= 2);
    expect(events[1]).toEqual({ type: 'delete', key: '10.244.1.0-24' });
    expect(await value('10.244.1.0-24')).toBeNull();
    expect(errors).toEqual([]);
  });

  it('survives an etcd restart: the watch resumes without losing events and the lease is kept', async () => {
    fresh();
    const observer = store();
    await observer.list();
    const { events, errors } = await watchAll(observer);
    const node = store();
    await node.acquire(attrs(1), config);
    await until('first put', () => events.length === 1);
    await world.restart();
    // Written at once after the restart, possibly before the watch has reconnected.
    await admin.put(`${prefix}/subnets/10.244.9.0-24`).value(JSON.stringify({ PublicIP: '192.168.50.9', BackendType: 'vxlan', BackendData: { VtepMAC: 'm', VNI: 1 } }));
    await store().acquire(attrs(3), config);
    await until('events after the restart', () => events.length === 3, 10_000);
    expect(events.map((e) => e.type === 'put' && e.lease.subnet)).toEqual(['10.244.1.0/24', '10.244.9.0/24', '10.244.2.0/24']);
    await sleep(2500); // more than a TTL: renewal went on after the restart
    expect(await value('10.244.1.0-24')).not.toBeNull();
    expect(errors).toEqual([]);
    expect(logs.some((l) => l.includes('lease watch disconnected'))).toBe(true);
  });

  it('etcd down for longer than a TTL: renewal retries without throwing and the node keeps its subnet', async () => {
    fresh();
    const node = store();
    await node.acquire(attrs(1), config);
    await world.kill();
    try {
      await sleep(3000);
    } finally {
      await world.resume();
    }
    await until('renewal back', () => logs.some((l) => l.includes('lease renewed again') || l.includes('lease taken again')));
    await sleep(2500);
    expect(JSON.parse((await value('10.244.1.0-24'))!).PublicIP).toBe('192.168.50.1');
    expect(logs.some((l) => l.includes('could not renew the lease'))).toBe(true);
  });

  it('a watch from a compacted revision reports an error so the caller relists', async () => {
    fresh();
    const observer = store();
    await observer.list();
    for (let i = 0; i < 3; i++) await admin.put(`${prefix}/subnets/10.244.${i + 1}.0-24`).value('junk');
    const { revision } = (await admin.get('x').exec()).header;
    await admin.kv.compact({ revision, physical: true });
    const { errors } = await watchAll(observer);
    await until('watch error', () => errors.length === 1);
    expect(errors[0]!.message).toMatch(/list again/);
    expect(await observer.list()).toEqual([]); // the junk is skipped with a warning
    expect(logs.some((l) => l.includes('skipping a malformed lease'))).toBe(true);
  });

  it('dual-stack nodes get one subnet of each family under one key', async () => {
    fresh();
    const dual = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}', 'test');
    const v6 = (n: number): LeaseAttrs => ({ ...attrs(n), publicIPv6: `fd00:50::${n}`, backendV6Data: { vtepMAC: `02:00:00:00:01:0${n}`, vni: 1 } });
    const [a, b] = await Promise.all([store().acquire(v6(1), dual), store().acquire(v6(2), dual)]);
    expect([a!.subnet, b!.subnet].sort()).toEqual(['10.244.1.0/24', '10.244.2.0/24']);
    expect([a!.ipv6Subnet, b!.ipv6Subnet].sort()).toEqual(['fd00:10:244:1::/64', 'fd00:10:244:2::/64']);
    const keys = await admin.getAll().prefix(`${prefix}/subnets/`).keys();
    expect(keys.sort()).toEqual([`${prefix}/subnets/10.244.1.0-24&fd00:10:244:1::-64`, `${prefix}/subnets/10.244.2.0-24&fd00:10:244:2::-64`]);
    const listed = await store().list();
    expect(listed.find((l) => l.attrs.publicIP === '192.168.50.1')?.attrs).toEqual(v6(1));
  });

  it('a full network is a resource-exhausted error', async () => {
    fresh();
    const tiny = parseNetworkConfig('{"Network":"10.9.0.0/24","SubnetLen":26}', 'test');
    for (let i = 1; i <= 3; i++) await store().acquire(attrs(i), tiny);
    const err = await store().acquire(attrs(4), tiny).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('resource-exhausted');
    expect((err as Error).message).toContain('10.9.0.0/24');
  });
});

/** A CA and a certificate it signed for 127.0.0.1 (used by etcd as server and by the probe as client). */
function makeCerts(dir: string): { ca: string; cert: string; key: string; clientCert: string; clientKey: string } {
  const f = (name: string) => join(dir, name);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-days', '2', '-subj', '/CN=berth-test-ca', '-keyout', f('ca.key'), '-out', f('ca.crt'));
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const name of ['server', 'client']) {
    ossl('req', ...ec, '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    ossl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('san.ext'), '-out', f(`${name}.crt`));
  }
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key'), clientCert: f('client.crt'), clientKey: f('client.key') };
}

describe.skipIf(skip)('etcd lease store over TLS', () => {
  let dir = '';
  let tlsWorld: EtcdWorld | undefined;
  let certs: ReturnType<typeof makeCerts>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-etcd-tls-'));
    certs = makeCerts(dir);
    tlsWorld = await EtcdWorld.start({ tls: { certFile: certs.cert, keyFile: certs.key, clientCaFile: certs.ca } });
  });
  afterAll(async () => {
    await tlsWorld?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('leases a subnet with a client certificate checked against the CA', async () => {
    const s = new EtcdLeaseStore({ endpoints: tlsWorld!.endpoints, tls: { caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey }, ttlSeconds: 2, seedConfig: config, log });
    try {
      expect(tlsWorld!.endpoints[0]).toMatch(/^https:/);
      await s.getNetworkConfig();
      expect((await s.acquire(attrs(1), config)).subnet).toBe('10.244.1.0/24');
      expect(await s.list()).toHaveLength(1);
    } finally {
      await s.close();
    }
  });

  it('without a client certificate etcd refuses the store', async () => {
    const s = new EtcdLeaseStore({ endpoints: tlsWorld!.endpoints, tls: { caFile: certs.ca }, log });
    try {
      await expect(s.getNetworkConfig()).rejects.toThrow(/etcd https:\/\/127\.0\.0\.1/);
    } finally {
      await s.close();
    }
  });
});
