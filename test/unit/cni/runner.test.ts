import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniRunner, parseNetworkList } from '../../../lib/cni/runner.js';

// The conflist runner against recording fake plugins (shell scripts in a temp CNI_PATH): what
// each plugin receives on stdin and in CNI_COMMAND, and in which order.

let dir = '';
const log = () => readFileSync(join(dir, 'calls.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { cmd: string; plugin: string; conf: Record<string, unknown> });

function fakePlugin(name: string, result: object): void {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh
conf=$(cat)
printf '{"cmd":"%s","plugin":"${name}","conf":%s}\\n' "$CNI_COMMAND" "$conf" >> ${join(dir, 'calls.log')}
if [ "$CNI_COMMAND" = ADD ]; then echo '${JSON.stringify(result)}'; fi
`);
  chmodSync(path, 0o755);
}

describe('conflist runner', () => {
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-runner-'));
    fakePlugin('first', { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.2/24', interface: 0 }] });
    fakePlugin('second', { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.2/24', interface: 0 }], dns: { nameservers: ['10.0.0.10'] } });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const list = () => parseNetworkList(JSON.stringify({
    cniVersion: '1.0.0',
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
    await new CniRunner([dir]).gc(list(), [{ containerID: 'c', ifname: 'eth0' }]);
    expect(log().map((c) => c.conf['cni.dev/valid-attachments'])).toEqual([[{ containerID: 'c', ifname: 'eth0' }], [{ containerID: 'c', ifname: 'eth0' }]]);
  });

  it('rejects a malformed conflist naming the field', () => {
    expect(() => parseNetworkList('{"cniVersion":"1.0.0","name":"n","plugins":[{}]}', 'x.conflist')).toThrow(/x\.conflist: plugins\[0\]\.type/);
    expect(() => parseNetworkList('{"cniVersion":"1.0.0","name":"n","plugins":[]}')).toThrow(/plugins: expected a non-empty array/);
    expect(() => parseNetworkList('{"name":"n"', 'y')).toThrow(/y: not valid JSON/);
  });
});
