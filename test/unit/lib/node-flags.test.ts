import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { daemonNodeFlags } from '../../../lib/node-flags.js';
import { repoRoot } from '../../../world/cni.js';

describe('the daemons\' Node flags', () => {
  it('systemd/node-flags (the units\' EnvironmentFile) gives exactly lib/node-flags.ts\'s flags', () => {
    const file = readFileSync(join(repoRoot, 'systemd/node-flags'), 'utf8');
    const assignments = file.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    expect(assignments).toEqual([`BERTH_NODE_FLAGS=${daemonNodeFlags.join(' ')}`]);
  });

  it('expose gc() for lib/memory-trim.ts', () => {
    expect(execFileSync(process.execPath, [...daemonNodeFlags, '-p', 'typeof gc'], { encoding: 'utf8' }).trim()).toBe('function');
  });

  it('this Node accepts them and they cap the young generation (which Node 24 otherwise lets reach 128 MiB)', () => {
    const out = execFileSync(process.execPath, [...daemonNodeFlags, '-p', `
      const v8 = require('v8'); let max = 0, keep = [];
      for (let i = 0; i < 3e6; i++) {
        keep.push({ i, s: 'x' + i }); if (keep.length > 50000) keep = [];
        if (i % 10000 === 0) max = Math.max(max, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);
      }
      max`], { encoding: 'utf8' });
    // Two 8 MiB semi-spaces and V8's page rounding; without the flags this reaches 64 MiB or more.
    expect(Number(out)).toBeLessThan(24 << 20);
  });
});
