import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { annotationKeys } from '../../../../overlayd/lease/kube-node.js';
import { KubeLeaseStore } from '../../../../overlayd/lease/kube.js';
import type { LeaseAttrs, LeaseEvent, LeaseStore, LeaseWatch, NetworkConfig } from '../../../../overlayd/types.js';
import { FakeKubeApi } from '../../../../world/fake-kube-api.js';

// The kube lease store against world/fake-kube-api.ts: no real Kubernetes API server can
// run on these machines, so a small in-memory one stands in (nodes, merge patches, watches with
// resourceVersions and 410 Gone). No root needed.

const v4Config: NetworkConfig = {
  enableIPv4: true,
  enableIPv6: false,
  network: '10.244.0.0/16',
  subnetLen: 24,
  ipv6SubnetLen: 64,
  backend: { type: 'vxlan', vni: 1, port: 8472, directRouting: false },
};
const dualConfig: NetworkConfig = { ...v4Config, enableIPv6: true, ipv6Network: 'fd00:10:244::/56' };

const attrs = (n: number): LeaseAttrs => ({
  publicIP: `192.168.1.${n}`,
  backendType: 'vxlan',
  backendData: { vtepMAC: `0a:58:0a:f4:00:${n.toString(16).padStart(2, '0')}`, vni: 1 },
});

/** Annotations as another node's daemon would have written them. */
const annotationsOf = (n: number): Record<string, string> => ({
  [annotationKeys.backendType]: 'vxlan',
  [annotationKeys.backendData]: JSON.stringify({ VtepMAC: `0a:58:0a:f4:00:${n.toString(16).padStart(2, '0')}`, VNI: 1 }),
  [annotationKeys.publicIP]: `192.168.1.${n}`,
});

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('kube lease store (against a fake API server)', () => {
  let api: FakeKubeApi;
  let dir: string;
  let kubeconfig: string;
  let logLines: string[];
  const stores: LeaseStore[] = [];
  const watches: LeaseWatch[] = [];

  beforeAll(() => {
    console.log('kube lease store: tested against a fake Kubernetes API (world/fake-kube-api.ts) because no real API server can run on these machines');
  });

  beforeEach(async () => {
    api = await new FakeKubeApi().start();
    dir = mkdtempSync(join(tmpdir(), 'berth-kube-store-'));
    kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
    logLines = [];
  });

  afterEach(async () => {
    await Promise.all(watches.splice(0).map((w) => w.close()));
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function makeStore(nodeName: string, networkConfig = v4Config, extra: { podCIDRTimeoutMs?: number } = {}): KubeLeaseStore {
    const log = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
    const store = new KubeLeaseStore({ nodeName, kubeconfig, networkConfig, log, pollIntervalMs: 50, ...extra });
    stores.push(store);
    return store;
  }

  async function startWatch(store: LeaseStore): Promise<{ events: LeaseEvent[]; errors: Error[] }> {
    const events: LeaseEvent[] = [];
    const errors: Error[] = [];
    watches.push(await store.watch((e) => events.push(e), (err) => errors.push(err)));
    return { events, errors };
  }

  it('acquire publishes the lease as node annotations and returns the podCIDR as the subnet', async () => {
    api.addNode('node-a', ['10.244.3.0/24']);
    const store = makeStore('node-a');
    const lease = await store.acquire(attrs(10), v4Config);
    expect(lease).toEqual({ subnet: '10.244.3.0/24', attrs: attrs(10) });
    expect(lease.expiration).toBeUndefined();
    expect(api.node('node-a')?.metadata.annotations).toEqual(annotationsOf(10));
    expect(api.requests.filter((r) => r.method === 'PATCH').map((r) => r.contentType)).toEqual(['application/merge-patch+json']);
    expect(await store.getNetworkConfig()).toBe(v4Config);
  });

  it('acquire patches nothing when the annotations already carry the lease', async () => {
    api.addNode('node-a', ['10.244.3.0/24']);
    api.setAnnotations('node-a', annotationsOf(10));
    await makeStore('node-a').acquire(attrs(10), v4Config);
    expect(api.requests.filter((r) => r.method === 'PATCH')).toEqual([]);
  });

  it('acquire waits for a podCIDR assigned later', async () => {
    api.addNode('node-a');
    const store = makeStore('node-a');
    const acquired = store.acquire(attrs(10), v4Config);
    await new Promise((r) => setTimeout(r, 300));
    expect(api.node('node-a')?.metadata.annotations).toBeUndefined();
    api.setPodCIDR('node-a', ['10.244.7.0/24']);
    expect((await acquired).subnet).toBe('10.244.7.0/24');
  });

  it('acquire fails naming the node when the podCIDR never comes', async () => {
    api.addNode('node-a');
    await expect(makeStore('node-a', v4Config, { podCIDRTimeoutMs: 300 }).acquire(attrs(10), v4Config)).rejects.toThrow(/node "node-a" has no IPv4 podCIDR/);
  });

  it('acquire fails clearly for a node that does not exist', async () => {
    await expect(makeStore('ghost').acquire(attrs(10), v4Config)).rejects.toThrow(/node "ghost" does not exist/);
  });

  it('acquire refuses a podCIDR outside the network, naming both', async () => {
    api.addNode('node-a', ['10.99.3.0/24']);
    await expect(makeStore('node-a').acquire(attrs(10), v4Config)).rejects.toThrow(/10\.99\.3\.0\/24.*outside.*10\.244\.0\.0\/16/);
    expect(api.node('node-a')?.metadata.annotations).toBeUndefined();
  });

  it('without a kubeconfig outside a cluster, the error says so', async () => {
    const store = new KubeLeaseStore({ nodeName: 'node-a', networkConfig: v4Config, log: pino({ level: 'silent' }) });
    stores.push(store);
    const saved = process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_HOST;
    try {
      await expect(store.list()).rejects.toThrow(/no kubeconfig given and not running in a pod/);
    } finally {
      if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
    }
  });

  it('list returns the leases of annotated nodes with a podCIDR only', async () => {
    api.addNode('node-a', ['10.244.1.0/24']);
    api.setAnnotations('node-a', annotationsOf(1));
    api.addNode('node-b', ['10.244.2.0/24']); // no annotations yet
    api.addNode('node-c'); // annotated but no podCIDR
    api.setAnnotations('node-c', annotationsOf(3));
    const leases = await makeStore('node-a').list();
    expect(leases).toEqual([{ subnet: '10.244.1.0/24', attrs: attrs(1) }]);
  });

  it('a node with broken annotation JSON is skipped with a warning', async () => {
    api.addNode('node-a', ['10.244.1.0/24']);
    api.setAnnotations('node-a', annotationsOf(1));
    api.addNode('node-b', ['10.244.2.0/24']);
    api.setAnnotations('node-b', { ...annotationsOf(2), [annotationKeys.backendData]: '{"VtepMAC": ' });
    const store = makeStore('node-a');
    expect((await store.list()).map((l) => l.subnet)).toEqual(['10.244.1.0/24']);
    const warning = logLines.map((l) => JSON.parse(l) as { level: number; node?: string }).find((l) => l.node === 'node-b');
    expect(warning?.level).toBe(40);

    // the same on the watch: no crash, no event for it, later events still arrive
    const { events, errors } = await startWatch(store);
    api.setAnnotations('node-b', { [annotationKeys.backendData]: 'not json' });
    api.addNode('node-d', ['10.244.4.0/24']);
    api.setAnnotations('node-d', annotationsOf(4));
    await waitFor('the put of node-d', () => events.length === 1);
    expect(events).toEqual([{ type: 'put', lease: { subnet: '10.244.4.0/24', attrs: attrs(4) } }]);
    expect(errors).toEqual([]);
  });

  it('watch delivers a put for a node annotated later and a delete for a node deleted', async () => {
    api.addNode('node-a', ['10.244.1.0/24']);
    api.setAnnotations('node-a', annotationsOf(1));
    api.addNode('node-b', ['10.244.2.0/24']);
    const store = makeStore('node-a');
    await store.list();
    const { events, errors } = await startWatch(store);
    api.touchNode('node-a'); // a status update: not a lease change
    api.setAnnotations('node-b', annotationsOf(2));
    await waitFor('the put of node-b', () => events.length >= 1);
    api.deleteNode('node-a');
    await waitFor('the delete of node-a', () => events.length >= 2);
    expect(events).toEqual([
      { type: 'put', lease: { subnet: '10.244.2.0/24', attrs: attrs(2) } },
      { type: 'delete', key: '10.244.1.0-24' },
    ]);
    expect(errors).toEqual([]);
  });

  it('watch delivers a delete when a node loses its annotations', async () => {
    api.addNode('node-b', ['10.244.2.0/24']);
    api.setAnnotations('node-b', annotationsOf(2));
    const store = makeStore('node-a');
    await store.list();
    const { events } = await startWatch(store);
    api.setAnnotations('node-b', { [annotationKeys.backendType]: null });
    await waitFor('the delete', () => events.length >= 1);
    expect(events).toEqual([{ type: 'delete', key: '10.244.2.0-24' }]);
  });

  it('watch resumes after the server closes it, losing no event', async () => {
    api.addNode('node-b', ['10.244.2.0/24']);
    const store = makeStore('node-a');
    await store.list();
    const { events, errors } = await startWatch(store);
    await waitFor('the watch to be open', () => api.openWatches === 1);
    api.closeWatches();
    // changed while no watch is open: the next one starts from the last version it saw
    api.setAnnotations('node-b', annotationsOf(2));
    await waitFor('the put after the resume', () => events.length >= 1);
    expect(events).toEqual([{ type: 'put', lease: { subnet: '10.244.2.0/24', attrs: attrs(2) } }]);
    await waitFor('the watch to be open again', () => api.openWatches === 1);
    api.closeWatches();
    api.deleteNode('node-b');
    await waitFor('the delete after the second resume', () => events.length >= 2);
    expect(events[1]).toEqual({ type: 'delete', key: '10.244.2.0-24' });
    expect(errors).toEqual([]);
  });

  it('watch calls onError after 410 Gone, so the daemon relists', async () => {
    api.addNode('node-b', ['10.244.2.0/24']);
    const store = makeStore('node-a');
    await store.list();
    const { events, errors } = await startWatch(store);
    await waitFor('the watch to be open', () => api.openWatches === 1);
    api.setAnnotations('node-b', annotationsOf(2));
    await waitFor('the put', () => events.length >= 1);
    // in one tick: the watch ends, node-c is added, and the history holding that change is compacted away
    api.closeWatches();
    api.addNode('node-c', ['10.244.3.0/24']);
    api.compact();
    const [err] = await waitFor('onError', () => errors.length > 0 && errors);
    expect(err?.message).toMatch(/410/);
    // a relist and a new watch carry on from the present
    expect((await store.list()).map((l) => l.subnet)).toEqual(['10.244.2.0/24']);
    const next = await startWatch(store);
    api.setAnnotations('node-c', annotationsOf(3));
    await waitFor('the put on the new watch', () => next.events.length >= 1);
    expect(next.errors).toEqual([]);
  });

  it('watch calls onError when the server answers a resumed watch with HTTP 410', async () => {
    api.goneAsHttpStatus = true;
    api.addNode('node-b', ['10.244.2.0/24']);
    const store = makeStore('node-a');
    await store.list();
    const { errors } = await startWatch(store);
    await waitFor('the watch to be open', () => api.openWatches === 1);
    api.closeWatches();
    api.addNode('node-c', ['10.244.3.0/24']);
    api.compact();
    const [err] = await waitFor('onError', () => errors.length > 0 && errors);
    expect(err?.message).toMatch(/410/);
  });

  it('watch calls onError once after repeated failures (the API server is gone)', async () => {
    const store = makeStore('node-a');
    await store.list();
    const { errors } = await startWatch(store);
    await waitFor('the watch to be open', () => api.openWatches === 1);
    await api.close();
    const [err] = await waitFor('onError', () => errors.length > 0 && errors, 10_000);
    expect(err?.message).toMatch(/failed 3 times/);
    await new Promise((r) => setTimeout(r, 300));
    expect(errors).toHaveLength(1);
  });

  it('no callback runs after the watch is closed', async () => {
    api.addNode('node-b', ['10.244.2.0/24']);
    const store = makeStore('node-a');
    await store.list();
    const events: LeaseEvent[] = [];
    const w = await store.watch((e) => events.push(e), () => undefined);
    await waitFor('the watch to be open', () => api.openWatches === 1);
    await w.close();
    api.setAnnotations('node-b', annotationsOf(2));
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toEqual([]);
    expect(api.openWatches).toBe(0);
  });

  it('release removes the berth annotations and keeps the others', async () => {
    api.addNode('node-a', ['10.244.3.0/24']);
    api.setAnnotations('node-a', { 'example.com/keep': 'yes' });
    const store = makeStore('node-a');
    await store.acquire(attrs(10), v4Config);
    await store.release();
    expect(api.node('node-a')?.metadata.annotations).toEqual({ 'example.com/keep': 'yes' });
  });

  it('dual-stack: both podCIDRs become the lease and the IPv6 annotations are published', async () => {
    api.addNode('node-a', ['10.244.3.0/24', 'fd00:10:244:3::/64']);
    const store = makeStore('node-a', dualConfig);
    const dual: LeaseAttrs = { ...attrs(10), publicIPv6: 'fd00:1::10', backendV6Data: { vtepMAC: '0a:58:0a:f4:01:10', vni: 1 } };
    const lease = await store.acquire(dual, dualConfig);
    expect(lease).toEqual({ subnet: '10.244.3.0/24', ipv6Subnet: 'fd00:10:244:3::/64', attrs: dual });
    const annotations = api.node('node-a')?.metadata.annotations ?? {};
    expect(annotations[annotationKeys.publicIPv6]).toBe('fd00:1::10');
    expect(JSON.parse(annotations[annotationKeys.backendV6Data] ?? '')).toEqual({ VtepMAC: '0a:58:0a:f4:01:10', VNI: 1 });

    // a second node, seen by list and watch with its dual-stack key
    expect(await store.list()).toEqual([lease]);
    const { events } = await startWatch(store);
    api.addNode('node-b', ['fd00:10:244:4::/64', '10.244.4.0/24']);
    api.setAnnotations('node-b', { ...annotationsOf(4), [annotationKeys.publicIPv6]: 'fd00:1::4', [annotationKeys.backendV6Data]: JSON.stringify({ VtepMAC: '0a:58:0a:f4:01:04', VNI: 1 }) });
    api.deleteNode('node-b');
    await waitFor('put and delete', () => events.length >= 2);
    expect(events[0]).toMatchObject({ type: 'put', lease: { subnet: '10.244.4.0/24', ipv6Subnet: 'fd00:10:244:4::/64' } });
    expect(events[1]).toEqual({ type: 'delete', key: '10.244.4.0-24&fd00:10:244:4::-64' });
  });

  it('close leaves no sockets or timers behind', async () => {
    const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;
    api.addNode('node-a', ['10.244.3.0/24']);
    const store = makeStore('node-a');
    await store.list(); // the client library is loaded and warm before counting
    await new Promise((r) => setTimeout(r, 100));
    const before = { sockets: count('TCPSocketWrap'), timers: count('Timeout') };
    await store.acquire(attrs(10), v4Config);
    await startWatch(store);
    await waitFor('the watch to be open', () => api.openWatches === 1);
    await store.close();
    await waitFor('the sockets to close', () => count('TCPSocketWrap') <= before.sockets && api.openWatches === 0);
    expect(count('Timeout')).toBeLessThanOrEqual(before.timers);
  });

  it('close stops a pending acquire', async () => {
    api.addNode('node-a');
    const store = makeStore('node-a');
    const acquired = store.acquire(attrs(10), v4Config);
    await new Promise((r) => setTimeout(r, 100));
    await store.close();
    await expect(acquired).rejects.toThrow(/closed/);
  });
});
