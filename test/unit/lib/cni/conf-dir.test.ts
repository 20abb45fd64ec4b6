import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { confFiles, loadDefaultNetwork } from '../../../../lib/cni/conf-dir.js';
import { BerthError } from '../../../../lib/errors.js';

// Choosing the pod network from /etc/cni/net.d as kubelet and containerd do.

let dir = '';
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'berth-net-d-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const put = (name: string, content: unknown) => writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
const conflist = (name: string) => ({ cniVersion: '1.0.0', name, plugins: [{ type: 'bridge' }, { type: 'portmap', capabilities: { portMappings: true } }] });

describe('loadDefaultNetwork', () => {
  it('takes the lexically first file that loads', async () => {
    put('20-second.conflist', conflist('second'));
    put('10-first.conflist', conflist('first'));
    const net = await loadDefaultNetwork(dir);
    expect(net.list.name).toBe('first');
    expect(net.file).toBe(join(dir, '10-first.conflist'));
    expect(net.skipped).toEqual([]);
  });

  it('wraps a single-plugin .conf into a one-plugin list', async () => {
    const conf = { cniVersion: '0.4.0', name: 'single', type: 'bridge', bridge: 'cni0' };
    put('05-single.conf', conf);
    put('10-list.conflist', conflist('list'));
    const { list } = await loadDefaultNetwork(dir);
    expect(list).toMatchObject({ cniVersion: '0.4.0', name: 'single', plugins: [conf] });
    expect(JSON.parse(list.bytes!)).toEqual({ cniVersion: '0.4.0', name: 'single', plugins: [conf] });
  });

  it('reads .json files as single-plugin configurations', async () => {
    put('99-net.json', { cniVersion: '1.0.0', name: 'json-net', type: 'ptp' });
    expect((await loadDefaultNetwork(dir)).list.plugins).toEqual([{ cniVersion: '1.0.0', name: 'json-net', type: 'ptp' }]);
  });

  it('skips invalid files, saying why, and keeps the list text for the cache', async () => {
    put('00-broken.conflist', '{"cniVersion":');
    put('01-noplugins.conflist', { cniVersion: '1.0.0', name: 'x', plugins: [] });
    put('02-notype.conf', { cniVersion: '1.0.0', name: 'y' });
    put('03-badversion.conflist', { cniVersion: '9.9.9', name: 'z', plugins: [{ type: 'bridge' }] });
    const text = JSON.stringify(conflist('good'));
    put('50-good.conflist', text);
    const net = await loadDefaultNetwork(dir);
    expect(net.list.name).toBe('good');
    expect(net.list.bytes).toBe(text);
    expect(net.skipped.map((s) => s.file.slice(dir.length + 1))).toEqual(['00-broken.conflist', '01-noplugins.conflist', '02-notype.conf', '03-badversion.conflist']);
    expect(net.skipped[0]?.reason).toMatch(/not valid JSON/);
    expect(net.skipped[1]?.reason).toMatch(/plugins: expected a non-empty array/);
    expect(net.skipped[2]?.reason).toMatch(/type: required field is missing/);
    expect(net.skipped[3]?.reason).toMatch(/incompatible CNI versions/);
  });

  it('ignores other extensions and directories', async () => {
    put('00-readme.txt', 'hello');
    put('01-old.conflist.bak', conflist('old'));
    mkdirSync(join(dir, '02-dir.conflist'));
    put('10-net.conflist', conflist('net'));
    expect((await confFiles(dir)).map((f) => f.slice(dir.length + 1))).toEqual(['10-net.conflist']);
    expect((await loadDefaultNetwork(dir)).list.name).toBe('net');
  });

  it('fails with not-available naming the directory when nothing loads', async () => {
    put('00-broken.conflist', '{');
    const err = await loadDefaultNetwork(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('not-available');
    expect((err as BerthError).message).toContain(dir);
    expect((err as BerthError).details).toMatch(/00-broken\.conflist: .*not valid JSON/);
  });

  it('fails with not-available for an empty or missing directory', async () => {
    await expect(loadDefaultNetwork(dir)).rejects.toThrow(new RegExp(`no valid CNI network configuration in ${dir}: no \\*\\.conf, \\*\\.conflist, \\*\\.json files`));
    await expect(loadDefaultNetwork(join(dir, 'missing'))).rejects.toMatchObject({ kind: 'not-available', message: expect.stringContaining(join(dir, 'missing')) });
  });
});
