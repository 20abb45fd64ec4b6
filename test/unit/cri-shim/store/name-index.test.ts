import { describe, expect, it } from 'vitest';
import { NameIndex } from '../../../../cri-shim/store/name-index.js';

describe('NameIndex', () => {
  it('reserves a name for one ID at a time', () => {
    const names = new NameIndex();
    names.reserve('a', '1', 'pod');
    names.reserve('a', '1', 'pod');
    expect(() => names.reserve('a', '2', 'pod')).toThrow(/"a" is reserved for 1/);
    names.release('a', '2');
    expect(names.holder('a')).toBe('1');
    names.release('a', '1');
    names.reserve('a', '2', 'pod');
  });
});
