import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniRunner, parseNetworkList } from '../../../../lib/cni/runner.js';
import { pluginCalls, writeFakePlugin } from './fake-plugin.js';

// The conflist runner against recording fake plugins (shell scripts in a temp CNI_PATH): what
// each plugin receives on stdin and in CNI_COMMAND, and in which order.

let dir = '';
const log = () => pluginCalls(dir);
const fakePlugin = (name: string, result: object) => writeFakePlugin(dir, name, result);

describe('conflist runner', () => {
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-runner-'));
    fakePlugin('first', { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.2/24', interface: 0 }] });
    fakePlugin('second', { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.2/24', interface: 0 }], dns: { nameservers: ['10.0.0.10'] } });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const list = (cniVersion = '1.0.0') => parseNetworkList(JSON.stringify({
    cniVersion,
    name: 'net',
    plugins: [{ type: 'first', keep: 'me' }, { type: 'second', capabilities: { portMappings: true, bandwidth: true } }],
  }));

  it('ADD chains prevResult, injects name/cniVersion and only the declared capabilities', async () => {
    const runner = new CniRunner([dir]);
    const result = await runner.add(list(), { containerId: 'c', netns: '/proc/self/ns/net', ifname: 'eth0', capabilityArgs: { portMappings: [{ hostPort: 1 }], ipRanges: [] } });
    expect(result?.dns).toEqual({ nameservers: ['10.0.0.10'] });
    const [a, b] = log();
    expect(a).toMatchObject({ cmd: 'ADD', plugin: 'first', conf: { name: 'net', cniVersion: '1.0.0', type: 'first', keep: 'me' } });
    expect(a?.conf).not.toHaveProperty('prevResult');
    expect(a?.conf).not.toHaveProperty('runtimeConfig');
    expect(b?.conf).toMatchObject({ runtimeConfig: { portMappings: [{ hostPort: 1 }] }, prevResult: { ips: [{ address: '10.0.0.2/24' }] } });
    expect(b?.conf).not.toHaveProperty('capabilities');
    expect((b?.conf.runtimeConfig as Record<string, unknown>).ipRanges).toBeUndefined();
  });

  it('DEL runs the plugins in reverse order', async () => {
    await new CniRunner([dir]).del(list(), { containerId: 'c', ifname: 'eth0' });
    expect(log().map((c) => `${c.cmd} ${c.plugin}`)).toEqual(['DEL second', 'DEL first']);
  });

  it('GC passes the valid attachments to every plugin', async () => {
    await new CniRunner([dir]).gc(list('1.1.0'), [{ containerID: 'c', ifname: 'eth0' }]);
    expect(log().map((c) => c.conf['cni.dev/valid-attachments'])).toEqual([[{ containerID: 'c', ifname: 'eth0' }], [{ containerID: 'c', ifname: 'eth0' }]]);
  });

  it('GC sends no GC to the plugins of a list older than 1.1.0, which predates the command', async () => {
    await new CniRunner([dir]).gc(list('1.0.0'), []);
    expect(log()).toEqual([]);
  });

  it('tells its observer of every plugin execution, by type and verb, failures included', async () => {
    const seen: string[] = [];
    const runner = new CniRunner([dir], { observe: (plugin, verb, seconds, ok) => seen.push(`${verb} ${plugin} ${ok} ${seconds >= 0}`) });
    await runner.add(list(), { containerId: 'c', netns: '/proc/self/ns/net', ifname: 'eth0' });
    await runner.del(parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'missing' }] })), { containerId: 'c', ifname: 'eth0' }).catch(() => undefined);
    expect(seen).toEqual(['ADD first true true', 'ADD second true true', 'DEL missing false true']);
  });

  it('CHECK without a result and without a cache has nothing to check against', async () => {
    await expect(new CniRunner([dir]).check(list(), { containerId: 'c', ifname: 'eth0' })).rejects.toThrow(/no result of network "net"/);
  });

  it('rejects a malformed conflist naming the field', () => {
    expect(() => parseNetworkList('{"cniVersion":"1.0.0","name":"n","plugins":[{}]}', 'x.conflist')).toThrow(/x\.conflist: plugins\[0\]\.type/);
    expect(() => parseNetworkList('{"cniVersion":"1.0.0","name":"n","plugins":[]}')).toThrow(/plugins: expected a non-empty array/);
    expect(() => parseNetworkList('{"name":"n"', 'y')).toThrow(/y: not valid JSON/);
  });
});
