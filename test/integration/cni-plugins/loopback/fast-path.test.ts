import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestWorld, isRoot } from '../../../../world/netns.js';
import { berthPlugin, repoRoot, runCni, type CniCall, type CniOutcome } from '../../../../world/cni.js';

// The shim's own ADD and DEL for berth-loopback (cni-plugins/loopback/fast.c) against the
// plugin's TypeScript, which stays the definition. Each case runs both on the same input, in
// namespaces prepared the same way, and compares exit code, stdout and what lo looks like
// afterwards. The shim runs with BERTH_NODE pointing nowhere: a call it handles itself succeeds
// anyway, and a call it must leave to the TypeScript fails with "cannot run BERTH_NODE", which
// proves which path ran. Those calls are then run through the shim with Node, to check that the
// TypeScript got stdin intact and answered as it does alone.

const shim = berthPlugin('berth-loopback');
const bundle = join(repoRoot, 'dist/cni-js/berth-loopback.cjs');
const noDaemon = { BERTH_CNI_SOCKET: '/nonexistent/berth-cni.sock' };

type Stdin = string | Record<string, unknown>;
const conf = (version = '1.1.0', extra: Record<string, unknown> = {}) => ({ cniVersion: version, name: 'lo', type: 'berth-loopback', ...extra });

describe.skipIf(!isRoot)('berth-loopback without a daemon: the shim against the TypeScript', () => {
  const world = new TestWorld();
  afterEach(() => world.cleanup());

  beforeAll(() => {
    for (const file of [shim, bundle]) if (!existsSync(file)) throw new Error(`${file} is missing: run \`node scripts/build.mjs\` first`);
  });

  const withEnv = (call: CniCall, env: Record<string, string>): CniCall => ({ ...call, env: { ...noDaemon, ...env, ...call.env } });
  const shimOnly = (call: CniCall, stdin: Stdin) => runCni(shim, withEnv(call, { BERTH_NODE: '/nonexistent/node' }), stdin);
  const shimWithNode = (call: CniCall, stdin: Stdin) => runCni(shim, withEnv(call, {}), stdin);
  const typescript = (call: CniCall, stdin: Stdin) => runCni(process.execPath, withEnv(call, {}), stdin, [bundle]);

  const loState = (ns: string) => {
    const r = world.inNetns(ns, 'ip', ['-j', 'addr', 'show', 'lo']);
    const [lo] = JSON.parse(r.stdout) as { flags: string[]; addr_info: { local: string; prefixlen: number }[] }[];
    return { up: lo?.flags.includes('UP') ?? false, addrs: (lo?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`) };
  };
  const same = (r: CniOutcome, path: string) => ({ code: r.code, stdout: r.stdout.split(path).join('NETNS') });

  /** Two namespaces prepared by `prepare`; `run` gets one, the TypeScript the other. */
  async function compare(
    command: string,
    stdin: Stdin,
    run: (call: CniCall, stdin: Stdin) => Promise<CniOutcome>,
    o: { prepare?: (ns: string) => void; netns?: 'fresh' | 'none' | string; env?: Record<string, string | undefined> } = {},
  ) {
    const outcomes = [];
    for (const runner of [run, typescript]) {
      let path: string | undefined;
      let name: string | undefined;
      if (o.netns === undefined || o.netns === 'fresh') {
        const ns = world.netns('bt-lof-');
        o.prepare?.(ns.name);
        ({ path, name } = ns);
      } else if (o.netns !== 'none') {
        path = o.netns;
      }
      const call: CniCall = { command, containerId: 'ctr1', ifname: 'eth0', ...(path ? { netns: path } : {}), env: o.env };
      const r = await runner(call, stdin);
      outcomes.push({ ...same(r, path ?? '\0'), lo: name ? loState(name) : undefined, stderr: r.stderr });
    }
    const [ours, theirs] = outcomes;
    expect({ ...ours, stderr: undefined }, ours!.stderr).toEqual({ ...theirs, stderr: undefined });
    return ours!;
  }

  const down = (ns: string) => world.inNetns(ns, 'ip', ['link', 'set', 'lo', 'down']);
  const up = (ns: string) => world.inNetns(ns, 'ip', ['link', 'set', 'lo', 'up']);

  describe('calls the shim answers itself', () => {
    it.each(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'])('ADD at spec version %s', async (version) => {
      const r = await compare('ADD', conf(version), shimOnly);
      expect(r.code).toBe(0);
      expect(r.lo).toEqual({ up: true, addrs: ['127.0.0.1/8', '::1/128'] });
    });

    it('ADD when lo is up already', async () => {
      const r = await compare('ADD', conf(), shimOnly, { prepare: up });
      expect(r.code).toBe(0);
    });

    it('ADD in a namespace without IPv6 reports no ::1', async () => {
      const r = await compare('ADD', conf(), shimOnly, { prepare: (ns) => world.inNetns(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']) });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).ips).toEqual([{ address: '127.0.0.1/8', interface: 0 }]);
    });

    it('ADD lists every loopback address of lo, in the kernel order, and no other', async () => {
      const prepare = (ns: string) => {
        up(ns);
        for (const [address, label] of [['127.5.0.1/16', 'lo'], ['10.9.9.9/32', 'lo'], ['127.0.0.2/8', 'lo:two']]) {
          world.inNetns(ns, 'ip', ['addr', 'add', address!, 'dev', 'lo', 'label', label!]);
        }
        world.inNetns(ns, 'ip', ['-6', 'addr', 'add', 'fd00::1/128', 'dev', 'lo']);
        down(ns);
      };
      const r = await compare('ADD', conf('1.0.0'), shimOnly, { prepare });
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout).ips as { address: string }[]).map((ip) => ip.address).sort()).toEqual(['127.0.0.1/8', '127.0.0.2/8', '127.5.0.1/16', '::1/128'].sort());
    });

    it('ADD with the config spread over lines, its keys in another order, and CNI_ARGS', async () => {
      const stdin = '\n  {\t"type" : "berth-loopback",\r\n "name":"lo-net",  "cniVersion":"1.0.0"  }\n\n';
      const r = await compare('ADD', stdin, shimOnly, { env: { CNI_ARGS: 'IgnoreUnknown=1;;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=' } });
      expect(r.code).toBe(0);
    });

    it('DEL brings lo down, and DEL of a lo that is down changes nothing', async () => {
      expect((await compare('DEL', conf(), shimOnly, { prepare: up })).lo).toEqual({ up: false, addrs: ['127.0.0.1/8'] });
      expect((await compare('DEL', conf(), shimOnly)).lo?.up).toBe(false);
    });

    it('DEL without CNI_NETNS, or of a namespace that is gone, succeeds', async () => {
      expect((await compare('DEL', conf(), shimOnly, { netns: 'none' })).code).toBe(0);
      expect((await compare('DEL', conf(), shimOnly, { netns: '/run/netns/bt-lof-gone' })).code).toBe(0);
    });
  });

  describe('calls the shim leaves to the TypeScript, with stdin intact', () => {
    const dir = () => {
      const d = mkdtempSync(join(tmpdir(), 'bt-lof-'));
      world.defer(() => rmSync(d, { recursive: true, force: true }));
      return d;
    };
    const cases: [string, string, Stdin, { netns?: string | (() => string); env?: Record<string, string | undefined> }?][] = [
      ['a key loopback ignores', 'ADD', conf('1.0.0', { mtu: 1500 })],
      ['a prevResult', 'ADD', conf('1.0.0', { prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.1.0.5/24', interface: 0 }], dns: {} } })],
      ['an escape in a string', 'ADD', '{"cniVersion":"1.0.0","name":"l\\u006f","type":"berth-loopback"}'],
      ['a non-ASCII name', 'ADD', conf('1.0.0', { name: 'lö' })],
      ['a key given twice', 'ADD', '{"cniVersion":"1.0.0","name":"a","name":"b","type":"berth-loopback"}'],
      ['a spec version before 0.3.0', 'ADD', conf('0.2.0')],
      ['an unknown spec version', 'ADD', conf('9.9.9')],
      ['no cniVersion', 'ADD', { name: 'lo', type: 'berth-loopback' }],
      ['an empty name', 'ADD', conf('1.0.0', { name: '' })],
      ['a type that is not a string', 'DEL', conf('1.0.0', { type: 7 })],
      ['malformed JSON', 'ADD', '{"cniVersion": "1.0.0", '],
      ['a trailing comma', 'DEL', '{"cniVersion":"1.0.0","name":"lo","type":"berth-loopback",}'],
      ['a byte order mark', 'ADD', '\ufeff' + JSON.stringify(conf())],
      ['a container ID starting with _', 'ADD', conf(), { env: { CNI_CONTAINERID: '_ctr' } }],
      ['an interface name with /', 'DEL', conf(), { env: { CNI_IFNAME: 'a/b' } }],
      ['an interface name of 16 bytes', 'ADD', conf(), { env: { CNI_IFNAME: 'abcdefghijklmnop' } }],
      ['CNI_ARGS without =', 'ADD', conf(), { env: { CNI_ARGS: 'K8S_POD_NAME' } }],
      ['no CNI_CONTAINERID', 'DEL', conf(), { env: { CNI_CONTAINERID: undefined } }],
      ['BERTH_LOG_LEVEL=debug', 'ADD', conf(), { env: { BERTH_LOG_LEVEL: 'debug' } }],
      ['ADD into a namespace that is gone', 'ADD', conf(), { netns: '/run/netns/bt-lof-gone' }],
      ['ADD into a file that is no namespace', 'ADD', conf(), { netns: () => { const f = join(dir(), 'netns'); writeFileSync(f, ''); return f; } }],
      ['DEL of a file that is no namespace', 'DEL', conf(), { netns: () => { const f = join(dir(), 'netns'); writeFileSync(f, ''); return f; } }],
      ['a namespace path with a quote', 'ADD', conf(), { netns: '/run/netns/bt-lof-"gone' }],
      ['DEL of a FIFO where the namespace was', 'DEL', conf(), { netns: () => { const f = join(dir(), 'netns'); execFileSync('mkfifo', [f]); return f; } }],
      ['CHECK', 'CHECK', conf('1.1.0', { prevResult: { cniVersion: '1.1.0' } })],
    ];

    it.each(cases)('%s', async (_what, command, stdin, o = {}) => {
      const netns = typeof o.netns === 'function' ? o.netns() : o.netns;
      const alone = await runCni(shim, withEnv({ command, containerId: 'ctr1', ifname: 'eth0', netns: netns ?? '/run/netns/bt-lof-unused', env: o.env }, { BERTH_NODE: '/nonexistent/node' }), stdin);
      expect(alone.code).toBe(1);
      expect(String(alone.json?.msg)).toContain('cannot run BERTH_NODE=/nonexistent/node');
      await compare(command, stdin, shimWithNode, { netns, env: o.env });
    });
  });
});
