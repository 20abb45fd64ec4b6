import { describe, expect, it } from 'vitest';
import { RecordStore } from '../../../../cri-shim/store/records.js';

describe('RecordStore', () => {
  it('finds records by ID or unique prefix', () => {
    const store = new RecordStore<{ id: string; name: string }>('container');
    store.add({ id: 'abc123', name: 'x' });
    store.add({ id: 'abd456', name: 'y' });
    expect(store.find('abc')?.id).toBe('abc123');
    expect(store.find('ab')).toBeUndefined();
    expect(store.find('')).toBeUndefined();
    expect(store.find('abd456')?.name).toBe('y');
  });
});
