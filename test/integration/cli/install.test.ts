import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../../world/cni.js';

// berth install from the release tarball, into an alternate root (--root): what a node gets,
// without touching this machine. The tarball is made here by scripts/release.mjs from dist/
// (the global setup built it), unpacked, and its own bin/berth (the launcher, on the release's
// Node) does the installing.

const work = mkdtempSync(join(tmpdir(), 'berth-install-'));
let berth = '';
let version = '';
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  execFileSync(process.execPath, [join(repoRoot, 'scripts/release.mjs'), '--out', join(work, 'out')], { stdio: 'pipe' });
  const tarball = readdirSync(join(work, 'out')).find((f) => f.endsWith('.tar.gz'))!;
  mkdirSync(join(work, 'unpacked'));
  execFileSync('tar', ['-xzf', join(work, 'out', tarball), '-C', join(work, 'unpacked')]);
  const [dir] = readdirSync(join(work, 'unpacked'));
  version = readFileSync(join(work, 'unpacked', dir!, 'VERSION'), 'utf8').trim();
  berth = join(work, 'unpacked', dir!, 'bin/berth');
}, 120_000);

/** A fresh alternate root holding only a host name. */
function newRoot(name: string): string {
  const root = join(work, name);
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/hostname'), 'node-under-test\n');
  return root;
}

/** Every entry under `dir`: path, type, and a link's target (for "as before" comparisons). */
function listing(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel)).sort().flatMap((name) => {
    const p = join(rel, name);
    const st = lstatSync(join(dir, p));
    if (st.isSymbolicLink()) return [`${p} -> ${readlinkSync(join(dir, p))}`];
    if (st.isDirectory()) return [`${p}/`, ...listing(dir, p)];
    return [p];
  });
}

function run(cmd: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

describe('berth install --root from the release tarball', () => {
  it('the tarball holds the launcher, the real Node binary, the node trees, units, manifests and no bench or demo', () => {
    const top = join(berth, '../..');
    expect(readdirSync(top).sort()).toEqual(['VERSION', 'berthd', 'bin', 'cli', 'cni', 'cni-js', 'cnid', 'lib', 'native', 'node', 'pause', 'proto', 'share', 'systemd']);
    expect(lstatSync(join(top, 'node/bin/node')).isFile()).toBe(true);
    expect(readdirSync(join(top, 'share/manifests'))).toContain('csidriver.yaml');
    expect(run(berth, ['--help']).out).toContain('berth install');
  });

  it('installs under the root, a second run changes nothing, uninstall --purge leaves the root as it was', () => {
    const root = newRoot('fresh');
    const before = listing(root);
    const first = run(berth, ['install', '--root', root, '--no-packages']);
    expect(first.code, first.out).toBe(0);
    expect(first.out).toContain(`created      /usr/lib/berth/releases/${version}`);
    expect(first.out).toContain(`systemctl --root=${root} enable berthd.service`);
    for (const p of ['etc/berth/berth.yaml', 'etc/systemd/system/berthd.service', 'etc/cni/net.d/10-berth.conflist', 'etc/crictl.yaml', 'etc/berth/kubelet/10-berth.conf', `usr/lib/berth/releases/${version}/node/bin/node`]) {
      expect(existsSync(join(root, p)), p).toBe(true);
    }
    expect(readFileSync(join(root, 'etc/berth/berth.yaml'), 'utf8')).toContain('nodeId: node-under-test');
    expect(readlinkSync(join(root, 'usr/lib/berth/current'))).toBe(`releases/${version}`);
    expect(readlinkSync(join(root, 'opt/cni/bin/berth-bridge'))).toBe('/usr/lib/berth/current/cni/berth-bridge');
    expect(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/berthd.service'))).toBe('/etc/systemd/system/berthd.service');
    // The installed tree runs: its berthd on its own Node.
    const installed = join(root, 'usr/lib/berth/current');
    expect(run(join(installed, 'node/bin/node'), [join(installed, 'bin/berthd'), '--version']).out).toContain(version);

    const second = run(berth, ['install', '--root', root, '--no-packages']);
    expect(second.code, second.out).toBe(0);
    expect(second.out).toContain('everything is unchanged');
    expect(second.out).not.toMatch(/^(created|updated|removed|running) /m);

    const removed = run(join(installed, 'bin/berth'), ['uninstall', '--root', root, '--purge', '--force']);
    expect(removed.code, removed.out).toBe(0);
    expect(listing(root)).toEqual(before);
  });

  it('--dry-run says what it would do and changes nothing', () => {
    const root = newRoot('dry');
    const before = listing(root);
    const dry = run(berth, ['install', '--root', root, '--dry-run']);
    expect(dry.code, dry.out).toBe(0);
    expect(dry.out).toContain('would create /etc/berth/berth.yaml');
    expect(dry.out).toContain('--dry-run: nothing was changed');
    expect(listing(root)).toEqual(before);
  });

  it('an upgrade keeps the previous release, --rollback goes back to it, uninstall keeps /etc/berth without --purge', () => {
    const root = newRoot('upgrade');
    expect(run(berth, ['install', '--root', root]).code).toBe(0);
    // The next version: the same tree with another VERSION.
    const next = join(work, 'next');
    cpSync(join(berth, '../..'), next, { recursive: true });
    writeFileSync(join(next, 'VERSION'), `${version}-next\n`);
    const up = run(join(next, 'bin/berth'), ['install', '--root', root]);
    expect(up.code, up.out).toBe(0);
    expect(up.out).toContain(`created      /usr/lib/berth/previous -> releases/${version}`);
    expect(up.out).toContain(`updated      /usr/lib/berth/current -> releases/${version}-next`);
    expect(up.out).toContain('unchanged    /etc/berth/berth.yaml');

    const back = run(join(next, 'bin/berth'), ['install', '--root', root, '--rollback']);
    expect(back.code, back.out).toBe(0);
    expect(readlinkSync(join(root, 'usr/lib/berth/current'))).toBe(`releases/${version}`);
    expect(readlinkSync(join(root, 'usr/lib/berth/previous'))).toBe(`releases/${version}-next`);

    const un = run(berth, ['uninstall', '--root', root]);
    expect(un.code, un.out).toBe(0);
    expect(existsSync(join(root, 'usr/lib/berth'))).toBe(false);
    expect(existsSync(join(root, 'etc/berth/berth.yaml'))).toBe(true);
    expect(existsSync(join(root, 'etc/systemd/system/berthd.service'))).toBe(false);
  });

  it('uninstall --purge without --force is refused when berth\'s CRI runtime cannot be asked', () => {
    const root = newRoot('purge');
    expect(run(berth, ['install', '--root', root]).code).toBe(0);
    const refused = run(berth, ['uninstall', '--root', root, '--purge']);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/--purge: cannot tell whether pods run .*cri.sock does not exist/);
    expect(existsSync(join(root, 'usr/lib/berth/current'))).toBe(true);
  });
});
