import { appendFileSync, chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { berthShimBuildId } from '../../../../lib/cni/berth-shim.js';
import type { PluginResult } from '../../../../lib/cni/cnid-protocol.js';
import { registerLocalPlugins, unregisterLocalPlugins, type LocalPluginHost } from '../../../../lib/cni/in-process.js';
import { PluginInvoker, type PluginCallRecord } from '../../../../lib/cni/invoke.js';
import { CniRunner, parseNetworkList } from '../../../../lib/cni/runner.js';
import { BerthError } from '../../../../lib/errors.js';
import { pluginCalls, writeFakePlugin } from './fake-plugin.js';

// Which path a plugin call takes (lib/cni/invoke.ts): berth's shim (told by its marker) may be
// served by plugins registered in this process; foreign plugins, and berth's when nothing here
// serves them, are executed. Fake plugins are shell scripts; "berth's" carry the shim's marker.

let dir = '';
let host: LocalPluginHost | undefined;
const records: PluginCallRecord[] = [];
const result = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.2/24', interface: 0 }] };
const ok = (body: object): PluginResult => ({ exitCode: 0, stdout: Buffer.from(JSON.stringify(body) + '\n'), stderr: Buffer.alloc(0) });

function berthLike(name: string, buildId: string): void {
  writeFakePlugin(dir, name, result);
  appendFileSync(join(dir, name), `# berth-cni-shim build=${buildId}\n`);
}

function register(serve: LocalPluginHost['serve'], buildId = 'b1'): void {
  host = { buildId, serve };
  registerLocalPlugins(host);
}

const invoker = (timeoutMs = 10_000) => new PluginInvoker({ shortcuts: true, timeoutMs, onCall: (r) => records.push(r) });
// No daemon answers here: the socket path names nothing.
const env = () => ({ PATH: process.env.PATH, CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', BERTH_CNI_SOCKET: join(dir, 'none.sock') });
const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'net', type: 'x' });

describe('plugin calls: in-process, through berth-cnid, or executed', () => {
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-invoke-'));
    records.length = 0;
  });
  afterEach(() => {
    if (host) unregisterLocalPlugins(host);
    host = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("tells berth's shim and its build from a foreign plugin", () => {
    berthLike('berth-bridge', 'abc123');
    writeFakePlugin(dir, 'bridge', result);
    expect(berthShimBuildId(join(dir, 'berth-bridge'))).toBe('abc123');
    expect(berthShimBuildId(join(dir, 'bridge'))).toBeUndefined();
    expect(berthShimBuildId(join(dir, 'missing'))).toBeUndefined();
  });

  it("serves berth's plugin in-process, with the request's environment and stdin, and starts no process", async () => {
    berthLike('berth-bridge', 'b1');
    const seen: { plugin: string; env: Record<string, string>; stdin: string }[] = [];
    register(async (plugin, e, stdin) => {
      seen.push({ plugin, env: e, stdin });
      return ok(result);
    });
    const got = await invoker().invoke('berth-bridge', 'ADD', conf, env(), [dir]);
    expect(got?.ips?.[0]?.address).toBe('10.0.0.2/24');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ plugin: 'berth-bridge', stdin: conf, env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0' } });
    expect(pluginCalls(dir)).toEqual([]);
    expect(records).toMatchObject([{ plugin: 'berth-bridge', command: 'ADD', via: 'in-process' }]);
  });

  it('executes a foreign plugin even when berth plugins are served in-process', async () => {
    writeFakePlugin(dir, 'bridge', result);
    register(async () => ok(result));
    await invoker().invoke('bridge', 'ADD', conf, env(), [dir]);
    expect(pluginCalls(dir).map((c) => `${c.cmd} ${c.plugin}`)).toEqual(['ADD bridge']);
    expect(records).toMatchObject([{ via: 'exec' }]);
  });

  it('executes the plugin when the build in this process is not the shim\'s', async () => {
    berthLike('berth-bridge', 'new-build');
    register(async () => ok(result), 'old-build');
    await invoker().invoke('berth-bridge', 'DEL', conf, env(), [dir]);
    expect(pluginCalls(dir).map((c) => c.cmd)).toEqual(['DEL']);
    expect(records[0]?.via).toBe('exec');
  });

  it('executes the plugin when this process declines, and says why', async () => {
    berthLike('berth-bridge', 'b1');
    register(async () => 'the daemon is stopping');
    await invoker().invoke('berth-bridge', 'DEL', conf, env(), [dir]);
    expect(pluginCalls(dir)).toHaveLength(1);
    expect(records[0]).toMatchObject({ via: 'exec', declined: expect.stringMatching(/in-process: the daemon is stopping/) });
  });

  it("turns the in-process plugin's error output into a CNI error with its code", async () => {
    berthLike('berth-bridge', 'b1');
    register(async () => ({ exitCode: 1, stdout: Buffer.from('{"cniVersion":"1.0.0","code":7,"msg":"bad config"}\n'), stderr: Buffer.alloc(0) }));
    const err = await invoker().invoke('berth-bridge', 'ADD', conf, env(), [dir]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(err).toMatchObject({ message: 'berth-bridge: bad config', cniCode: 7 });
  });

  it('a plugin that throws in-process becomes a CNI error, not an exception of the runtime', async () => {
    berthLike('berth-bridge', 'b1');
    register(() => {
      throw new Error('boom');
    });
    await expect(invoker().invoke('berth-bridge', 'ADD', conf, env(), [dir])).rejects.toThrow(/berth-bridge: berth-bridge \(in-process\): boom/);
    register(async () => Promise.reject(new Error('late boom')));
    await expect(invoker().invoke('berth-bridge', 'ADD', conf, env(), [dir])).rejects.toThrow(/late boom/);
  });

  it('a plugin that hangs in-process times out with a CNI error; the runtime goes on', async () => {
    berthLike('berth-bridge', 'b1');
    let release!: (r: PluginResult) => void;
    register(() => new Promise<PluginResult>((resolve) => (release = resolve)));
    const err = await invoker(200).invoke('berth-bridge', 'ADD', conf, env(), [dir]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(err).toMatchObject({ kind: 'deadline-exceeded', message: 'berth-bridge: no answer within 200 ms' });
    // The late answer goes nowhere; the next call is served normally.
    release(ok(result));
    register(async () => ok(result));
    expect(await invoker(200).invoke('berth-bridge', 'ADD', conf, env(), [dir])).toBeDefined();
  });

  it('a hanging executed plugin is killed at the timeout and reported as such', async () => {
    writeFileSync(join(dir, 'slow'), '#!/bin/sh\nexec sleep 30\n');
    chmodSync(join(dir, 'slow'), 0o755);
    await expect(invoker(300).invoke('slow', 'ADD', conf, env(), [dir])).rejects.toThrow(/slow: no answer within 300 ms/);
  });

  it('the runner without shortcuts executes even berth\'s plugins (the demo and bench/cni)', async () => {
    berthLike('berth-bridge', 'b1');
    register(async () => ok(result));
    const list = parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'berth-bridge' }] }));
    await new CniRunner([dir]).add(list, { containerId: 'c', netns: '/proc/self/ns/net', ifname: 'eth0' });
    expect(pluginCalls(dir)).toHaveLength(1);
    await new CniRunner([dir], { invoker: { shortcuts: true } }).add(list, { containerId: 'c', netns: '/proc/self/ns/net', ifname: 'eth0' });
    expect(pluginCalls(dir)).toHaveLength(1);
  });
});
