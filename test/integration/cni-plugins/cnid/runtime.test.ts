import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { repoRoot, runCni, type CniCall } from '../../../../world/cni.js';
import { removeDir, tempDir } from './daemon.js';

// dist/ carries the Node it runs on (dist/node/bin/node, the runtime pinned in package.json), and
// the plugin executables' standalone path runs that one unless BERTH_NODE says otherwise.

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { optionalDependencies: Record<string, string> };
const pinned = pkg.optionalDependencies[`node-${process.platform}-${process.arch}`];
const distNode = join(repoRoot, 'dist/node/bin/node');

let dir = '';

/** A node at `path` that appends its arguments to `<path>.ran`, then runs the real one. */
function recordingNode(path: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `#!/bin/sh\necho "$@" >> "$0.ran"\nexec ${realpathSync(distNode)} "$@"\n`, { mode: 0o755 });
  return `${path}.ran`;
}

const ran = (record: string) => (existsSync(record) ? readFileSync(record, 'utf8') : '');

/** A copy of dist/'s plugin layout under dir/opt, with the given runtime in opt/node/bin/node. */
function copyOfDist(): string {
  for (const d of ['cni', 'cni-js', 'native']) cpSync(join(repoRoot, 'dist', d), join(dir, 'opt', d), { recursive: true });
  return join(dir, 'opt');
}

// No daemon listens on this socket, so every call runs standalone; BERTH_NODE is removed unless set.
const version = (over: Partial<CniCall['env']> = {}): CniCall => ({
  command: 'VERSION', env: { BERTH_CNI_SOCKET: join(dir, 'absent.sock'), BERTH_NODE: undefined, ...over },
});

describe('the Node runtime dist/ carries', () => {
  beforeEach(() => {
    dir = tempDir('berth-runtime-');
  });
  afterEach(() => {
    removeDir(dir);
    dir = '';
  });

  it('dist/node/bin/node is the version package.json pins for this platform', () => {
    expect(pinned, `optionalDependencies pin node-${process.platform}-${process.arch}`).toMatch(/^24\./);
    expect(execFileSync(distNode, ['--version'], { encoding: 'utf8' }).trim()).toBe(`v${pinned}`);
  });

  it('the tests themselves run on the pinned Node', () => {
    expect(process.version).toBe(`v${pinned}`);
  });

  it('without BERTH_NODE, a standalone plugin runs on <dir of the executable>/../node/bin/node', async () => {
    const opt = copyOfDist();
    const record = recordingNode(join(opt, 'node/bin/node'));
    const out = await runCni(join(opt, 'cni/berth-bridge'), version(), '{"cniVersion":"1.0.0"}');
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(out.json).toMatchObject({ cniVersion: '1.0.0', supportedVersions: expect.arrayContaining(['1.1.0']) });
    expect(ran(record)).toContain(`${opt}/cni/../cni-js/berth-bridge.cjs`);
  });

  it('BERTH_NODE, when set, is used instead of the runtime dist/ carries', async () => {
    const opt = copyOfDist();
    const bundled = recordingNode(join(opt, 'node/bin/node'));
    const override = recordingNode(join(dir, 'override/node'));
    const out = await runCni(join(opt, 'cni/berth-bridge'), version({ BERTH_NODE: join(dir, 'override/node') }), '{"cniVersion":"1.0.0"}');
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(ran(override)).toContain('berth-bridge.cjs');
    expect(ran(bundled)).toBe('');
  });

  it('a BERTH_NODE that cannot run is an error naming it, not a silent fallback', async () => {
    const opt = copyOfDist();
    const bundled = recordingNode(join(opt, 'node/bin/node'));
    const missing = join(dir, 'no/such/node');
    const out = await runCni(join(opt, 'cni/berth-bridge'), version({ BERTH_NODE: missing }), '{"cniVersion":"1.0.0"}');
    expect(out.code).toBe(1);
    expect(out.json).toMatchObject({ code: 999, msg: expect.stringContaining(`BERTH_NODE=${missing}`) });
    expect(ran(bundled)).toBe('');
  });
});
