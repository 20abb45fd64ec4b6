import { describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import { executePlugin, parseCniArgs, type CniPlugin, type CommandContext } from '../../../../lib/cni/skeleton.js';
import type { CniResult } from '../../../../lib/cni/types.js';

// A plugin that records how it was called, to test the shared skeleton without root.
function recordingPlugin() {
  const calls: { verb: string; ctx: unknown }[] = [];
  const plugin: CniPlugin<Record<string, unknown>> = {
    name: 'berth-test',
    about: 'test plugin',
    parseConfig(raw) {
      if (raw.bad !== undefined) throw new BerthError('invalid-config', `bad: unsupported value ${JSON.stringify(raw.bad)}`);
      return raw;
    },
    async add(ctx) {
      calls.push({ verb: 'ADD', ctx });
      const result: CniResult = {
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', mac: '0a:00:00:00:00:01', sandbox: ctx.netns, mtu: 1500 }],
        ips: [
          { address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 0 },
          { address: 'fd00::2/64', interface: 0 },
        ],
        routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', priority: 10 }],
      };
      return result;
    },
    async del(ctx) { calls.push({ verb: 'DEL', ctx }); },
    async check(ctx) { calls.push({ verb: 'CHECK', ctx }); },
    async gc(ctx) { calls.push({ verb: 'GC', ctx }); },
    async status(ctx) { calls.push({ verb: 'STATUS', ctx }); },
  };
  return { plugin, calls };
}

const env = (over: Record<string, string | undefined>) => ({
  CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc123', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin', ...over,
});
const conf = (over: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'net', type: 'berth-test', ...over });

function parse(stdout: string) {
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('CNI skeleton: dispatch and results', () => {
  it('ADD prints the result converted to the requested version', async () => {
    const { plugin } = recordingPlugin();
    for (const v of ['0.3.0', '0.3.1', '0.4.0']) {
      const out = await executePlugin(plugin, { env: env({}), stdin: conf({ cniVersion: v }) });
      expect(out.exitCode).toBe(0);
      const r = parse(out.stdout);
      expect(r.cniVersion).toBe(v);
      expect(r.ips).toEqual([
        { version: '4', address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 0 },
        { version: '6', address: 'fd00::2/64', interface: 0 },
      ]);
      expect((r.interfaces as Record<string, unknown>[])[0]).not.toHaveProperty('mtu');
      expect((r.routes as Record<string, unknown>[])[0]).toEqual({ dst: '0.0.0.0/0', gw: '10.1.0.1' });
    }
    const v10 = parse((await executePlugin(plugin, { env: env({}), stdin: conf({ cniVersion: '1.0.0' }) })).stdout);
    expect((v10.ips as Record<string, unknown>[])[0]).not.toHaveProperty('version');
    expect((v10.interfaces as Record<string, unknown>[])[0]).not.toHaveProperty('mtu');
    const v11 = parse((await executePlugin(plugin, { env: env({}), stdin: conf({ cniVersion: '1.1.0' }) })).stdout);
    expect((v11.interfaces as Record<string, unknown>[])[0]).toHaveProperty('mtu', 1500);
    expect((v11.routes as Record<string, unknown>[])[0]).toHaveProperty('priority', 10);
  });

  it('VERSION lists the supported versions and needs no other variable', async () => {
    const { plugin } = recordingPlugin();
    const out = await executePlugin(plugin, { env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"0.4.0"}' });
    expect(out.exitCode).toBe(0);
    expect(parse(out.stdout)).toEqual({ cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    const empty = await executePlugin(plugin, { env: { CNI_COMMAND: 'VERSION' }, stdin: '' });
    expect(parse(empty.stdout).cniVersion).toBe('1.1.0');
  });

  it('DEL does not need CNI_NETNS and prints nothing', async () => {
    const { plugin, calls } = recordingPlugin();
    const out = await executePlugin(plugin, { env: env({ CNI_COMMAND: 'DEL', CNI_NETNS: undefined }), stdin: conf() });
    expect(out).toEqual({ exitCode: 0, stdout: '' });
    expect((calls[0]?.ctx as CommandContext<unknown>).netns).toBeUndefined();
  });

  it('CHECK parses prevResult of an older version into the current shape', async () => {
    const { plugin, calls } = recordingPlugin();
    const prevResult = { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.1.0.2/24' }] };
    const out = await executePlugin(plugin, { env: env({ CNI_COMMAND: 'CHECK' }), stdin: conf({ cniVersion: '0.4.0', prevResult }) });
    expect(out.exitCode).toBe(0);
    expect((calls[0]?.ctx as CommandContext<unknown>).prevResult?.ips).toEqual([{ address: '10.1.0.2/24' }]);
  });

  it('GC passes the valid attachments under either key name', async () => {
    const { plugin, calls } = recordingPlugin();
    const list = [{ containerID: 'a', ifname: 'eth0' }];
    for (const key of ['cni.dev/valid-attachments', 'cni.dev/attachments']) {
      const out = await executePlugin(plugin, { env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, stdin: conf({ cniVersion: '1.1.0', [key]: list }) });
      expect(out.exitCode).toBe(0);
    }
    expect(calls.map((c) => (c.ctx as { validAttachments: unknown }).validAttachments)).toEqual([list, list]);
  });

  it('CNI_ARGS is split into pairs', () => {
    expect([...parseCniArgs('IgnoreUnknown=1;IP=10.0.0.5;K8S_POD_NAME=a=b')]).toEqual([
      ['IgnoreUnknown', '1'], ['IP', '10.0.0.5'], ['K8S_POD_NAME', 'a=b'],
    ]);
    expect(() => parseCniArgs('novalue')).toThrow(/CNI_ARGS/);
  });
});

describe('CNI skeleton: errors follow the spec', () => {
  const cases: { name: string; env: Record<string, string | undefined>; stdin: string; code: number; msg: RegExp }[] = [
    { name: 'malformed JSON', env: env({}), stdin: '{"cniVersion": ', code: 6, msg: /not valid JSON/ },
    { name: 'config not an object', env: env({}), stdin: '[1]', code: 6, msg: /JSON object/ },
    { name: 'unknown cniVersion', env: env({}), stdin: conf({ cniVersion: '0.9.9' }), code: 1, msg: /"0\.9\.9"/ },
    { name: 'missing cniVersion', env: env({}), stdin: JSON.stringify({ name: 'n', type: 't' }), code: 7, msg: /cniVersion/ },
    { name: 'missing name', env: env({}), stdin: JSON.stringify({ cniVersion: '1.0.0', type: 't' }), code: 7, msg: /^name/ },
    { name: 'unknown command', env: env({ CNI_COMMAND: 'FROB' }), stdin: conf(), code: 4, msg: /CNI_COMMAND.*FROB/ },
    { name: 'missing CNI_COMMAND', env: env({ CNI_COMMAND: undefined }), stdin: conf(), code: 4, msg: /CNI_COMMAND/ },
    { name: 'missing CNI_NETNS on ADD', env: env({ CNI_NETNS: undefined }), stdin: conf(), code: 4, msg: /CNI_NETNS/ },
    { name: 'missing two variables', env: env({ CNI_CONTAINERID: undefined, CNI_IFNAME: undefined }), stdin: conf(), code: 4, msg: /CNI_CONTAINERID, CNI_IFNAME/ },
    { name: 'bad container id', env: env({ CNI_CONTAINERID: '-x/y' }), stdin: conf(), code: 4, msg: /CNI_CONTAINERID/ },
    { name: 'bad ifname', env: env({ CNI_IFNAME: 'a/b' }), stdin: conf(), code: 4, msg: /CNI_IFNAME/ },
    { name: 'ifname too long', env: env({ CNI_IFNAME: 'x'.repeat(16) }), stdin: conf(), code: 4, msg: /CNI_IFNAME/ },
    { name: 'CHECK before 0.4.0', env: env({ CNI_COMMAND: 'CHECK' }), stdin: conf({ cniVersion: '0.3.1' }), code: 1, msg: /0\.4\.0/ },
    { name: 'GC before 1.1.0', env: env({ CNI_COMMAND: 'GC' }), stdin: conf({ cniVersion: '1.0.0' }), code: 1, msg: /1\.1\.0/ },
    { name: 'STATUS before 1.1.0', env: env({ CNI_COMMAND: 'STATUS' }), stdin: conf({ cniVersion: '0.4.0' }), code: 1, msg: /1\.1\.0/ },
    { name: 'CHECK without prevResult', env: env({ CNI_COMMAND: 'CHECK' }), stdin: conf(), code: 7, msg: /prevResult/ },
    { name: 'plugin rejects a field', env: env({}), stdin: conf({ bad: 42 }), code: 7, msg: /bad: unsupported value 42/ },
    { name: 'malformed prevResult', env: env({ CNI_COMMAND: 'CHECK' }), stdin: conf({ prevResult: { ips: 'x' } }), code: 6, msg: /prevResult\.ips/ },
    { name: 'malformed attachment list', env: { CNI_COMMAND: 'GC' }, stdin: conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ id: 1 }] }), code: 7, msg: /valid-attachments\[0\]/ },
  ];
  for (const c of cases) {
    it(`${c.name} gives code ${c.code} and a message naming the problem`, async () => {
      const { plugin, calls } = recordingPlugin();
      const out = await executePlugin(plugin, { env: c.env, stdin: c.stdin });
      expect(out.exitCode).toBe(1);
      const err = parse(out.stdout);
      expect(err.code).toBe(c.code);
      expect(err.msg).toMatch(c.msg);
      expect(typeof err.cniVersion).toBe('string');
      expect(calls).toHaveLength(0);
    });
  }

  it('an error thrown by the plugin keeps its code and details', async () => {
    const { plugin } = recordingPlugin();
    plugin.add = async () => { throw new BerthError('try-again', 'busy', { details: 'lock held' }); };
    const out = await executePlugin(plugin, { env: env({}), stdin: conf() });
    expect(parse(out.stdout)).toEqual({ cniVersion: '1.0.0', code: 11, msg: 'busy', details: 'lock held' });
  });
});
