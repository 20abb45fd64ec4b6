import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../../../world/cni.js';

// share/manifests through kubectl's client side. There is no API server here, and
// `kubectl apply --dry-run=client` needs one (it asks discovery for the REST mapping), so this
// uses what works offline: `kubectl annotate --local --dry-run=client -o name`, which decodes
// every object of the file as kubectl would send it and prints kind/name. Field-level checks
// against berth's code are in test/unit/cli/install/manifests.test.ts.

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const haveKubectl = kubectl.status === 0;
if (!haveKubectl) console.log('install-manifests: skipped: kubectl is missing (Debian package kubernetes-client; scripts/bootstrap.sh installs it)');

const dir = join(repoRoot, 'share/manifests');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();

describe.skipIf(!haveKubectl)('share/manifests with kubectl (client side, offline)', () => {
  it.each(files)('%s decodes into the objects it declares', (file) => {
    const path = join(dir, file);
    const r = spawnSync('kubectl', ['annotate', '--local', '--dry-run=client', '-f', path, 'berth.io/checked=true', '-o', 'name'], { encoding: 'utf8', env: { ...process.env, KUBECONFIG: '/dev/null' } });
    expect(r.status, r.stderr).toBe(0);
    const expected = parseAllDocuments(readFileSync(path, 'utf8')).map((d) => {
      const o = d.toJS() as { kind: string; metadata: { name: string } };
      return `${o.kind.toLowerCase()}/${o.metadata.name}`;
    });
    // kubectl prints kind.group/name; compare kind and name.
    const printed = r.stdout.trim().split('\n').map((l) => l.replace(/^([^./]+)(\.[^/]*)?\//, '$1/'));
    expect(printed).toEqual(expected);
  });
});
