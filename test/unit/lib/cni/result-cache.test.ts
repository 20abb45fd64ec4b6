import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResultCache, type CachedAttachment } from '../../../../lib/cni/result-cache.js';
import { CniRunner, parseNetworkList, type RuntimeConf } from '../../../../lib/cni/runner.js';
import { failOn, pluginCalls, writeFakePlugin } from './fake-plugin.js';

// libcni's attachment cache: the file layout libcni reads and writes, and how the runner uses
// the cache for DEL, CHECK, GC and after a restart.

let dir = '';
let cacheDir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cni-cache-'));
  cacheDir = join(dir, 'cache');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const entry = (over: Partial<CachedAttachment> = {}): CachedAttachment => ({
  networkName: 'pods',
  containerId: 'abc123',
  ifName: 'eth0',
  config: '{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}',
  cniArgs: [],
  capabilityArgs: {},
  ...over,
});

describe('ResultCache', () => {
  it('writes <cacheDir>/results/<network>-<containerID>-<ifname> in libcni\'s format', () => {
    const cache = new ResultCache(cacheDir);
    cache.write(entry({
      netns: '/var/run/netns/cni-1',
      cniArgs: [['K8S_POD_NAME', 'web'], ['IgnoreUnknown', '1']],
      capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
      result: { cniVersion: '1.0.0', ips: [{ address: '10.1.0.5/24' }] },
    }));
    const path = join(cacheDir, 'results', 'pods-abc123-eth0');
    const onDisk = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(onDisk).toEqual({
      kind: 'cniCacheV1',
      containerId: 'abc123',
      config: Buffer.from(entry().config).toString('base64'),
      ifName: 'eth0',
      networkName: 'pods',
      netns: '/var/run/netns/cni-1',
      cniArgs: [['K8S_POD_NAME', 'web'], ['IgnoreUnknown', '1']],
      capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
      result: { cniVersion: '1.0.0', ips: [{ address: '10.1.0.5/24' }] },
    });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(cacheDir, 'results'))).toEqual(['pods-abc123-eth0']);
  });

  it('leaves empty fields out, as libcni\'s omitempty does', () => {
    new ResultCache(cacheDir).write(entry());
    const onDisk = JSON.parse(readFileSync(join(cacheDir, 'results', 'pods-abc123-eth0'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(onDisk).sort()).toEqual(['config', 'containerId', 'ifName', 'kind', 'networkName']);
  });

  it('reads an entry libcni wrote', () => {
    const config = '{"cniVersion":"0.4.0","name":"k8s-pod-network","plugins":[{"type":"calico"}]}';
    mkdirSync(join(cacheDir, 'results'), { recursive: true });
    writeFileSync(join(cacheDir, 'results', 'k8s-pod-network-0f3c-eth0'), JSON.stringify({
      kind: 'cniCacheV1', containerId: '0f3c', config: Buffer.from(config).toString('base64'), ifName: 'eth0',
      networkName: 'k8s-pod-network', netns: '/proc/42/ns/net', cniArgs: [['K8S_POD_NAMESPACE', 'default']],
      result: { cniVersion: '0.4.0', ips: [{ version: '4', address: '192.168.1.7/32' }] },
    }));
    expect(new ResultCache(cacheDir).read('k8s-pod-network', '0f3c', 'eth0')).toEqual({
      networkName: 'k8s-pod-network', containerId: '0f3c', ifName: 'eth0', netns: '/proc/42/ns/net', config,
      cniArgs: [['K8S_POD_NAMESPACE', 'default']], capabilityArgs: {},
      result: { cniVersion: '0.4.0', ips: [{ version: '4', address: '192.168.1.7/32' }] },
    });
  });

  it('has no entry for an unknown attachment, and removing one is idempotent', () => {
    const cache = new ResultCache(cacheDir);
    expect(cache.read('pods', 'nope', 'eth0')).toBeUndefined();
    cache.write(entry());
    expect(cache.remove('pods', 'abc123', 'eth0')).toBe(true);
    expect(cache.remove('pods', 'abc123', 'eth0')).toBe(false);
  });

  it('rejects names that would leave the results directory', () => {
    const cache = new ResultCache(cacheDir);
    expect(() => cache.write(entry({ containerId: '../x' }))).toThrow(/containerId: invalid value/);
    expect(() => cache.read('pods', 'c', '')).toThrow(/ifName: invalid value/);
  });

  it('reports a corrupt entry as a decode error and lists around it', () => {
    const cache = new ResultCache(cacheDir);
    cache.write(entry());
    cache.write(entry({ networkName: 'other', containerId: 'def' }));
    writeFileSync(join(cacheDir, 'results', 'pods-bad-eth0'), '{"kind":"cniCacheV1"');
    expect(() => cache.read('pods', 'bad', 'eth0')).toThrow(/not valid JSON/);
    expect(cache.list().map((e) => e.containerId).sort()).toEqual(['abc123', 'def']);
    expect(cache.list({ networkName: 'other' }).map((e) => e.containerId)).toEqual(['def']);
    expect(cache.list({ containerId: 'abc123' }).map((e) => e.networkName)).toEqual(['pods']);
  });

  it('lists nothing when the cache directory does not exist', () => {
    expect(new ResultCache(join(dir, 'none')).list()).toEqual([]);
  });
});

describe('the runner with a cache', () => {
  const bin = () => join(dir, 'bin');
  const ipResult = (address: string) => ({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/ns' }], ips: [{ address, interface: 0 }] });
  beforeEach(() => {
    mkdirSync(bin());
    writeFakePlugin(bin(), 'main', ipResult('10.0.0.2/24'));
    writeFakePlugin(bin(), 'meta', ipResult('10.0.0.2/24'));
    writeFakePlugin(bin(), 'newer', ipResult('10.9.9.9/24'));
  });
  const calls = () => pluginCalls(bin());
  const listText = (plugins: object[], cniVersion = '1.1.0') => JSON.stringify({ cniVersion, name: 'pods', plugins });
  const list = (plugins: object[] = [{ type: 'main' }, { type: 'meta', capabilities: { portMappings: true } }], cniVersion = '1.1.0') =>
    parseNetworkList(listText(plugins, cniVersion), 'pods.conflist');
  const rt = (containerId = 'c1', over: Partial<RuntimeConf> = {}): RuntimeConf => ({
    containerId, netns: '/proc/self/ns/net', ifname: 'eth0', args: [['K8S_POD_NAME', containerId]], capabilityArgs: { portMappings: [{ hostPort: 80 }] }, ...over,
  });
  const runner = () => new CniRunner([bin()], { cacheDir });
  const entryPath = (containerId = 'c1') => join(cacheDir, 'results', `pods-${containerId}-eth0`);

  it('ADD records the list text, arguments and result; a new runner (a restart) reads the result back', async () => {
    await runner().add(list(), rt());
    const cached = new ResultCache(cacheDir).read('pods', 'c1', 'eth0');
    expect(cached).toMatchObject({
      config: listText([{ type: 'main' }, { type: 'meta', capabilities: { portMappings: true } }]),
      netns: '/proc/self/ns/net',
      cniArgs: [['K8S_POD_NAME', 'c1']],
      capabilityArgs: { portMappings: [{ hostPort: 80 }] },
      result: { cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24', interface: 0 }] },
    });
    expect(runner().getCachedResult('pods', { containerId: 'c1', ifname: 'eth0' })?.ips).toEqual([{ address: '10.0.0.2/24', interface: 0 }]);
    expect(runner().getCachedConfig(list(), { containerId: 'c1', ifname: 'eth0' })?.rt).toEqual(rt());
    expect(runner().getCachedAttachments('c1').map((a) => a.networkName)).toEqual(['pods']);
  });

  it('an ADD that fails caches nothing', async () => {
    failOn(bin(), 'meta', 'ADD');
    await expect(runner().add(list(), rt())).rejects.toThrow(/meta failed on purpose/);
    expect(existsSync(entryPath())).toBe(false);
  });

  it('without a cacheDir nothing is cached', async () => {
    await new CniRunner([bin()]).add(list(), rt());
    expect(existsSync(cacheDir)).toBe(false);
    expect(new CniRunner([bin()]).getCachedResult('pods', rt())).toBeUndefined();
  });

  it('CHECK uses the cached result as prevResult', async () => {
    await runner().add(list(), rt());
    await runner().check(list(), rt());
    const checks = calls().filter((c) => c.cmd === 'CHECK');
    expect(checks.map((c) => c.plugin)).toEqual(['main', 'meta']);
    expect(checks[0]?.conf.prevResult).toMatchObject({ ips: [{ address: '10.0.0.2/24' }] });
  });

  it('DEL runs the cached list with the cached result, then drops the entry', async () => {
    await runner().add(list(), rt());
    // The conflist on disk changed since the ADD: DEL still undoes what the ADD did.
    await runner().del(list([{ type: 'newer' }]), rt());
    const dels = calls().filter((c) => c.cmd === 'DEL');
    expect(dels.map((c) => c.plugin)).toEqual(['meta', 'main']);
    expect(dels[0]?.conf.prevResult).toMatchObject({ ips: [{ address: '10.0.0.2/24' }] });
    expect(existsSync(entryPath())).toBe(false);
  });

  it('DEL fills CNI_ARGS and capability args the caller left out from the cache', async () => {
    await runner().add(list(), rt());
    await runner().del(list(), { containerId: 'c1', ifname: 'eth0' });
    const meta = calls().find((c) => c.cmd === 'DEL' && c.plugin === 'meta');
    expect(meta?.args).toBe('K8S_POD_NAME=c1');
    expect(meta?.conf.runtimeConfig).toEqual({ portMappings: [{ hostPort: 80 }] });
  });

  it('a result given to DEL wins over the cached one', async () => {
    await runner().add(list(), rt());
    await runner().del(list(), rt(), { cniVersion: '1.1.0', ips: [{ address: '10.7.7.7/24' }] });
    expect(calls().find((c) => c.cmd === 'DEL')?.conf.prevResult).toMatchObject({ ips: [{ address: '10.7.7.7/24' }] });
  });

  it('a list older than 0.4.0 gets no cached prevResult on DEL', async () => {
    await runner().add(list([{ type: 'main' }], '0.3.1'), rt());
    await runner().del(list([{ type: 'main' }], '0.3.1'), rt());
    expect(calls().find((c) => c.cmd === 'DEL')?.conf).not.toHaveProperty('prevResult');
  });

  it('a DEL that fails keeps the entry for the next try', async () => {
    await runner().add(list(), rt());
    failOn(bin(), 'main', 'DEL');
    await expect(runner().del(list(), rt())).rejects.toThrow(/main failed on purpose/);
    expect(existsSync(entryPath())).toBe(true);
  });

  it('DEL of an unknown container succeeds and changes nothing', async () => {
    await runner().add(list(), rt('c1'));
    await runner().del(list(), rt('c2'));
    expect(calls().filter((c) => c.cmd === 'DEL').every((c) => !('prevResult' in c.conf))).toBe(true);
    expect(existsSync(entryPath('c1'))).toBe(true);
  });

  it('a corrupt entry is dropped and DEL runs without it', async () => {
    mkdirSync(join(cacheDir, 'results'), { recursive: true });
    writeFileSync(entryPath(), 'garbage');
    await runner().del(list(), rt());
    expect(calls().filter((c) => c.cmd === 'DEL').map((c) => c.plugin)).toEqual(['meta', 'main']);
    expect(existsSync(entryPath())).toBe(false);
  });

  it('GC deletes cached attachments that are not valid, keeps the valid ones, then sends GC', async () => {
    await runner().add(list(), rt('keep'));
    await runner().add(list(), rt('stale'));
    await runner().add(parseNetworkList(JSON.stringify({ cniVersion: '1.1.0', name: 'other', plugins: [{ type: 'main' }] })), rt('elsewhere'));
    await runner().gc(list(), [{ containerID: 'keep', ifname: 'eth0' }]);
    const after = calls().filter((c) => c.cmd === 'DEL' || c.cmd === 'GC');
    expect(after.map((c) => `${c.cmd} ${c.plugin} ${c.cmd === 'DEL' ? c.containerId : ''}`.trim())).toEqual([
      'DEL meta stale', 'DEL main stale', 'GC main', 'GC meta',
    ]);
    expect(after.find((c) => c.cmd === 'DEL')?.args).toBe('K8S_POD_NAME=stale');
    expect(existsSync(entryPath('keep'))).toBe(true);
    expect(existsSync(entryPath('stale'))).toBe(false);
    expect(existsSync(join(cacheDir, 'results', 'other-elsewhere-eth0'))).toBe(true);
  });

  it('GC still sends GC to the plugins when deleting a stale attachment fails, and reports it', async () => {
    await runner().add(list(), rt('stale'));
    failOn(bin(), 'main', 'DEL');
    await expect(runner().gc(list(), [])).rejects.toThrow(/failed to delete stale attachment stale\/eth0/);
    expect(calls().filter((c) => c.cmd === 'GC').map((c) => c.plugin)).toEqual(['main', 'meta']);
    expect(existsSync(entryPath('stale'))).toBe(true);
  });

  it('GC does nothing for a list with disableGC', async () => {
    await runner().add(list(), rt('stale'));
    const off = parseNetworkList(JSON.stringify({ cniVersion: '1.1.0', name: 'pods', disableGC: true, plugins: [{ type: 'main' }] }));
    await runner().gc(off, []);
    expect(calls().filter((c) => c.cmd !== 'ADD')).toEqual([]);
    expect(existsSync(entryPath('stale'))).toBe(true);
  });
});
