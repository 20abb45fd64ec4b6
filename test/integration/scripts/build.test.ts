import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../../world/cni.js';

// What scripts/build.mjs promises of dist/ beyond "it runs" (the global setup has built it).

/** The JavaScript files under dist/ (bundles, chunks, CNI plugin bundles), not the runtime or the addons. */
function scripts(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name === 'node' || name === 'native' || name === 'release') continue;
    const st = statSync(path);
    if (st.isDirectory()) out.push(...scripts(path));
    else if (st.size > 0 && /^(#!|"use strict"|import |\/\/|var |\(\(\))/.test(readFileSync(path, 'latin1').slice(0, 40))) out.push(path);
  }
  return out;
}

describe('dist/', () => {
  it('holds its JavaScript in ASCII, so V8 keeps each source at one byte a character', () => {
    const files = scripts(join(repoRoot, 'dist'));
    // The walk is real: the daemons and berthd's chunks are among the files it checked.
    expect(files.some((f) => f.endsWith('dist/bin/berth-cri'))).toBe(true);
    expect(files.filter((f) => f.includes('dist/berthd/')).length).toBeGreaterThan(3);
    const wide = files.filter((f) => readFileSync(f).some((byte) => byte > 0x7f));
    expect(wide).toEqual([]);
  });

  it('has a native addon that can trim the allocator', () => {
    const addon = createRequire(import.meta.url)(join(repoRoot, 'dist/native/berth_native.node')) as { trimMemory(): boolean };
    expect(typeof addon.trimMemory()).toBe('boolean');
  });
});
