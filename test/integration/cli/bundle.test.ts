import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../../world/cni.js';

// The product CLI is installed on nodes; the test world (registry, containerd, etcd start-up) is
// bundled into the demo program only. The global setup has built dist/ from the current sources.

describe('the berth CLI bundle', () => {
  const cli = readFileSync(join(repoRoot, 'dist/cli/berth'), 'utf8');
  const demo = readFileSync(join(repoRoot, 'dist/demo/berth-demo'), 'utf8');

  it('carries no test-world module', () => {
    expect(cli.match(/^\/\/ world\/.*$/gm) ?? []).toEqual([]);
    expect(cli).not.toContain('/usr/bin/docker-registry');
  });

  it('leaves the world to the demo program, which does carry it', () => {
    expect(demo).toMatch(/^\/\/ world\/registry\.ts$/m);
    expect(demo).toContain('/usr/bin/docker-registry');
  });
});
