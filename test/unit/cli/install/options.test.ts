import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseInstallArgs, parseUninstallArgs } from '../../../../cli/install/main.js';
import { renderUnit } from '../../../../cli/install/render.js';
import { debianPackages, packagesFor } from '../../../../cli/install/state.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-install-args-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('berth install / uninstall arguments', () => {
  it('defaults: prefix /usr/lib/berth, berthd.service, the 10.88.0.0/16 bridge, packages checked', () => {
    expect(parseInstallArgs([])).toEqual({ prefix: '/usr/lib/berth', separateUnits: false, podCidr: '10.88.0.0/16', noPackages: false, root: '', dryRun: false, rollback: false });
  });

  it('reads every flag; --root implies --no-packages (an alternate root has no package manager to ask)', () => {
    const config = join(dir, 'b.yaml');
    writeFileSync(config, 'cri: {}\n');
    const o = parseInstallArgs(['--config', config, '--components=cri,csi', '--prefix', '/opt/berth/', '--separate-units', '--dry-run', '--root', dir, '--pod-cidr', '10.1.0.0/16', '--node-name', 'n1']);
    expect(o).toMatchObject({ config: { text: 'cri: {}\n', source: config }, components: ['cri', 'csi'], prefix: '/opt/berth', separateUnits: true, dryRun: true, root: dir, podCidr: '10.1.0.0/16', nodeName: 'n1', noPackages: true });
    expect(parseInstallArgs(['--root', '/'])).toMatchObject({ root: '', noPackages: false });
  });

  it('errors name the flag and the value', () => {
    expect(() => parseInstallArgs(['--components', 'cri,dns'])).toThrow('--components: unknown component "dns"');
    expect(() => parseInstallArgs(['--prefix', 'relative'])).toThrow('--prefix relative: must be an absolute path');
    expect(() => parseInstallArgs(['--root', join(dir, 'nope')])).toThrow(/--root .*nope: not a directory/);
    expect(() => parseInstallArgs(['--pod-cidr', 'ten'])).toThrow('--pod-cidr ten: expected an IPv4 CIDR');
    expect(() => parseInstallArgs(['--config', join(dir, 'missing.yaml')])).toThrow(/--config .*missing.yaml: ENOENT/);
    expect(() => parseInstallArgs(['--bogus', 'x'])).toThrow('unknown flag --bogus');
    expect(() => parseUninstallArgs(['--purge', '--keep'])).toThrow('unknown flag --keep');
    expect(parseInstallArgs(['--help'])).toBe('help');
  });

  it('uninstall: --purge, --force, --dry-run', () => {
    expect(parseUninstallArgs(['--purge', '--force', '--dry-run'])).toEqual({ prefix: '/usr/lib/berth', purge: true, force: true, root: '', dryRun: true });
  });
});

describe('what install derives', () => {
  it('checks the packages berth needs, plus crun when a handler runs it', () => {
    expect(packagesFor(['runc'])).toEqual(debianPackages);
    expect(packagesFor(['runc', '/usr/bin/crun', '/opt/kata/kata-runtime'])).toEqual([...debianPackages, 'crun']);
  });

  it('unit files point at <prefix>/current; their comments are left as written', () => {
    const unit = '# Paths are where `berth install` puts berth (prefix /usr/lib/berth)\nExecStart=/usr/lib/berth/node/bin/node /usr/lib/berth/bin/berthd\n';
    expect(renderUnit(unit, '/opt/berth')).toBe('# Paths are where `berth install` puts berth (prefix /usr/lib/berth)\nExecStart=/opt/berth/current/node/bin/node /opt/berth/current/bin/berthd\n');
  });
});
