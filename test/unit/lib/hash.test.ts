import { describe, expect, it } from 'vitest';
import { fnv1a64, shortHash } from '../../../lib/hash.js';

describe('short hashes', () => {
  it('are FNV-1a 64 (published test vectors) and stable', () => {
    expect(fnv1a64('')).toBe(0xcbf29ce484222325n);
    expect(fnv1a64('a')).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv1a64('foobar')).toBe(0x85944171f73967e8n);
    expect(shortHash('foobar', 11)).toBe('85944171f73');
  });
});
