import { describe, expect, it } from 'vitest';
import { imageUser } from '../../../../cri-shim/store/image-store.js';

describe('imageUser', () => {
  it('reads uid or username from an image User', () => {
    expect(imageUser('')).toEqual({ username: '' });
    expect(imageUser('1000:1000')).toEqual({ uid: 1000n, username: '' });
    expect(imageUser('www-data:www')).toEqual({ username: 'www-data' });
  });
});
