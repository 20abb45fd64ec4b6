import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeNameValues, encodeNameValues, headerDictionary } from '../../../../lib/stream/spdy-headers.js';

// The SPDY/3 header-block codec on its own, without a session.

describe('SPDY/3 header blocks', () => {
  it('has the SPDY/3 header dictionary, byte for byte', () => {
    expect(headerDictionary.length).toBe(1423);
    expect(createHash('sha256').update(headerDictionary).digest('hex')).toBe('51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02');
  });

  it('encodes and decodes name/value blocks, several values joined by NUL', () => {
    const h = { streamtype: 'stdout', port: '8080', 'x-multi': 'a\0b' };
    expect(decodeNameValues(encodeNameValues(h))).toEqual(h);
    expect(() => decodeNameValues(Buffer.from([0, 0, 0, 1, 0, 0, 0, 9]))).toThrow(/ends early/);
  });
});
