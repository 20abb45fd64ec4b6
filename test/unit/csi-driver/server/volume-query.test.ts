import { describe, expect, it } from 'vitest';
import { page } from '../../../../csi-driver/server/volume-query.js';
import { kindOf } from '../fixtures.js';

describe('paging', () => {
  const items = ['c', 'a', 'e', 'b', 'd'].map((id) => ({ id }));
  it('pages walk every item once in ID order', () => {
    const first = page(items, 2, '');
    expect(first.items.map((i) => i.id)).toEqual(['a', 'b']);
    const second = page(items, 2, first.nextToken);
    expect(second.items.map((i) => i.id)).toEqual(['c', 'd']);
    const last = page(items, 2, second.nextToken);
    expect(last.items.map((i) => i.id)).toEqual(['e']);
    expect(last.nextToken).toBe('');
  });
  it('a token whose item was deleted still finds the next one', () => {
    const first = page(items, 2, '');
    expect(page(items.filter((i) => i.id !== 'b'), 0, first.nextToken).items.map((i) => i.id)).toEqual(['c', 'd', 'e']);
  });
  it('a token not issued by the driver is ABORTED', () => {
    expect(kindOf(() => page(items, 0, 'invalid-token'))).toMatch(/^aborted: starting_token/);
  });
});
