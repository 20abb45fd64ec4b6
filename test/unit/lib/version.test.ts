import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { berthVersion } from '../../../lib/version.js';

describe('berthVersion', () => {
  it('is the version package.json gives the suite', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(berthVersion).toBe(pkg.version);
  });
});
