import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestWorld, isRoot } from '../../../../world/netns.js';
import { berthPlugin, referenceCniDir, runCni, type CniCall } from '../../../../world/cni.js';

// The built berth-loopback executable, run the way a runtime runs it, in fresh namespaces.

const plugin = berthPlugin('berth-loopback');
const reference = `${referenceCniDir}/loopback`;
const conf = (version = '1.1.0', extra: Record<string, unknown> = {}) => ({ cniVersion: version, name: 'lo', type: 'berth-loopback', ...extra });

describe.skipIf(!isRoot)('berth-loopback', () => {
  const world = new TestWorld();
  afterEach(() => world.cleanup());

  beforeAll(() => {
    if (!existsSync(plugin)) throw new Error(`${plugin} is missing: run \`node scripts/build.mjs\` first`);
  });

  const call = (command: string, netns: string | undefined, over: Partial<CniCall> = {}): CniCall => ({
    command, containerId: 'ctr1', ifname: 'lo', ...(netns ? { netns } : {}), ...over,
  });
  const loState = (ns: string) => {
    const r = world.inNetns(ns, 'ip', ['-j', 'addr', 'show', 'lo']);
    const [lo] = JSON.parse(r.stdout) as { flags: string[]; addr_info: { local: string; prefixlen: number }[] }[];
    return { up: lo?.flags.includes('UP') ?? false, addrs: (lo?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`) };
  };

  it('ADD brings lo up and reports it with 127.0.0.1/8 and ::1/128', async () => {
    const ns = world.netns('bt-lo-');
    expect(loState(ns.name).up).toBe(false);
    const r = await runCni(plugin, call('ADD', ns.path), conf());
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: ns.path }],
      ips: [{ address: '127.0.0.1/8', interface: 0 }, { address: '::1/128', interface: 0 }],
      dns: {},
    });
    expect(loState(ns.name)).toEqual({ up: true, addrs: ['127.0.0.1/8', '::1/128'] });
  });

  it.each(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'])('ADD and DEL work at spec version %s', async (version) => {
    const ns = world.netns('bt-lo-');
    const add = await runCni(plugin, call('ADD', ns.path), conf(version));
    expect(add.code, add.stdout).toBe(0);
    expect(add.json?.cniVersion).toBe(version);
    const ips = add.json?.ips as Record<string, unknown>[];
    // Before 1.0.0 every IP carries its version.
    if (version < '1.0.0') expect(ips).toEqual([{ version: '4', address: '127.0.0.1/8', interface: 0 }, { version: '6', address: '::1/128', interface: 0 }]);
    else expect(ips).toEqual([{ address: '127.0.0.1/8', interface: 0 }, { address: '::1/128', interface: 0 }]);
    const del = await runCni(plugin, call('DEL', ns.path), conf(version));
    expect(del.code, del.stdout).toBe(0);
    expect(del.stdout).toBe('');
    expect(loState(ns.name).up).toBe(false);
  });

  it('ADD reports the same interface and addresses as the reference plugin', async () => {
    const ours = world.netns('bt-lo-');
    const theirs = world.netns('bt-lo-');
    const a = await runCni(plugin, call('ADD', ours.path), conf('1.0.0'));
    const b = await runCni(reference, call('ADD', theirs.path, { path: referenceCniDir }), { ...conf('1.0.0'), type: 'loopback' });
    expect(b.code, b.stdout).toBe(0);
    const strip = (j: Record<string, unknown> | undefined, path: string) => JSON.parse(JSON.stringify(j).split(path).join('NETNS')) as unknown;
    expect(strip(a.json, ours.path)).toEqual(strip(b.json, theirs.path));
    expect(loState(ours.name)).toEqual(loState(theirs.name));
  });

  it('ADD with a prevResult passes it through unchanged, and still brings lo up', async () => {
    const ns = world.netns('bt-lo-');
    const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: ns.path }], ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 0 }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['10.1.0.10'] } };
    const r = await runCni(plugin, call('ADD', ns.path), conf('1.0.0', { prevResult }));
    expect(r.code, r.stdout).toBe(0);
    expect(r.json).toEqual(prevResult);
    expect(loState(ns.name).up).toBe(true);
  });

  it('acts on lo whatever CNI_IFNAME says, as the reference does', async () => {
    const ns = world.netns('bt-lo-');
    const r = await runCni(plugin, call('ADD', ns.path, { ifname: 'eth0' }), conf());
    expect(r.code, r.stdout).toBe(0);
    expect((r.json?.interfaces as { name: string }[])[0]?.name).toBe('lo');
    expect(loState(ns.name).up).toBe(true);
  });

  it('CHECK succeeds while lo is up and fails naming lo and the namespace once it is down', async () => {
    const ns = world.netns('bt-lo-');
    const add = await runCni(plugin, call('ADD', ns.path), conf());
    const prev = conf('1.1.0', { prevResult: add.json });
    const ok = await runCni(plugin, call('CHECK', ns.path), prev);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toBe('');
    world.inNetns(ns.name, 'ip', ['link', 'set', 'lo', 'down']);
    const bad = await runCni(plugin, call('CHECK', ns.path), prev);
    expect(bad.code).toBe(1);
    expect(bad.json).toMatchObject({ code: 999, msg: `loopback interface lo in ${ns.path} is down` });
  });

  it('CHECK in a namespace that is gone fails naming it', async () => {
    const r = await runCni(plugin, call('CHECK', '/run/netns/bt-lo-gone'), conf('1.1.0', { prevResult: { cniVersion: '1.1.0' } }));
    expect(r.code).toBe(1);
    expect(String(r.json?.msg)).toContain('/run/netns/bt-lo-gone');
  });

  it('DEL twice succeeds', async () => {
    const ns = world.netns('bt-lo-');
    await runCni(plugin, call('ADD', ns.path), conf());
    for (let i = 0; i < 2; i++) {
      const r = await runCni(plugin, call('DEL', ns.path), conf());
      expect(r.code, r.stdout).toBe(0);
    }
    expect(loState(ns.name).up).toBe(false);
  });

  it('DEL succeeds when the namespace is gone or CNI_NETNS is unset', async () => {
    const ns = world.netns('bt-lo-');
    world.cleanup();
    const gone = await runCni(plugin, call('DEL', ns.path), conf());
    expect(gone.code, gone.stdout).toBe(0);
    const unset = await runCni(plugin, call('DEL', undefined), conf());
    expect(unset.code, unset.stdout).toBe(0);
  });

  it('DEL succeeds when CNI_NETNS is a leftover file that is no namespace any more', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bt-lo-'));
    world.defer(() => rmSync(dir, { recursive: true, force: true }));
    const stale = join(dir, 'netns');
    writeFileSync(stale, '');
    const r = await runCni(plugin, call('DEL', stale), conf());
    expect(r.code, r.stdout).toBe(0);
  });

  it('ADD into a namespace that does not exist fails naming it', async () => {
    const r = await runCni(plugin, call('ADD', '/run/netns/bt-lo-gone'), conf());
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ cniVersion: '1.1.0', code: 999 });
    expect(String(r.json?.msg)).toContain('network namespace /run/netns/bt-lo-gone does not exist');
  });

  it('GC and STATUS succeed with nothing to do', async () => {
    const gc = await runCni(plugin, { command: 'GC' }, conf('1.1.0', { 'cni.dev/valid-attachments': [{ containerID: 'ctr1', ifname: 'lo' }] }));
    expect([gc.code, gc.stdout]).toEqual([0, '']);
    const status = await runCni(plugin, { command: 'STATUS' }, conf());
    expect([status.code, status.stdout]).toEqual([0, '']);
  });

  it('VERSION lists the spec versions', async () => {
    const r = await runCni(plugin, { command: 'VERSION' }, { cniVersion: '1.0.0' });
    expect(r.json).toEqual({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  describe('bad input', () => {
    it.each(['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'])('ADD without %s is error 4 naming it', async (name) => {
      const ns = world.netns('bt-lo-');
      const r = await runCni(plugin, call('ADD', ns.path, { env: { [name]: undefined } }), conf());
      expect(r.code).toBe(1);
      expect(r.json?.code).toBe(4);
      expect(String(r.json?.msg)).toContain(name);
      expect(loState(ns.name).up).toBe(false);
    });

    it('malformed JSON is error 6', async () => {
      const ns = world.netns('bt-lo-');
      const r = await runCni(plugin, call('ADD', ns.path), '{"cniVersion": "1.0.0", ');
      expect(r.code).toBe(1);
      expect(r.json?.code).toBe(6);
    });

    it('an unknown spec version is error 1 naming it', async () => {
      const ns = world.netns('bt-lo-');
      const r = await runCni(plugin, call('ADD', ns.path), conf('9.9.9'));
      expect(r.code).toBe(1);
      expect(r.json?.code).toBe(1);
      expect(String(r.json?.msg)).toContain('9.9.9');
    });

    it('an unknown CNI_COMMAND is error 4', async () => {
      const r = await runCni(plugin, { command: 'FROB' }, conf());
      expect(r.json?.code).toBe(4);
      expect(String(r.json?.msg)).toContain('FROB');
    });
  });
});
