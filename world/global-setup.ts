import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './cni.js';

// Integration tests run the built executables, so build them once before any test file when a
// source file is newer than the build (scripts/test.sh builds first anyway; this keeps
// `npx vitest run test/integration/...` honest when run on its own).

const sourceDirs = ['lib', 'berthd', 'cni-plugins', 'overlayd', 'cri-shim', 'csi-driver', 'device-plugin', 'proto', 'cli', 'demo', 'world', 'bench', 'scripts'];

function newest(dir: string): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'build' || entry.name === 'node_modules') continue;
    const path = join(dir, entry.name);
    t = Math.max(t, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return t;
}

export default function setup(): void {
  const marker = join(repoRoot, 'dist/cni/berth-bridge');
  const sources = Math.max(...sourceDirs.map((d) => (existsSync(join(repoRoot, d)) ? newest(join(repoRoot, d)) : 0)));
  if (existsSync(marker) && statSync(marker).mtimeMs >= sources) return;
  execFileSync(process.execPath, [join(repoRoot, 'scripts/build.mjs')], { cwd: repoRoot, stdio: 'inherit' });
}
