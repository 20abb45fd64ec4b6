import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { checkDigest, digestLike, isDigest, sha256Digest, verifyingStream } from '../../../../cri-shim/registry/verify.js';

async function through(data: Buffer, digest: string, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of Readable.from([data.subarray(0, 3), data.subarray(3)]).pipe(verifyingStream(digest, size))) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe('content verification', () => {
  const data = Buffer.from('hello, registry');
  const digest = sha256Digest(data);

  it('passes the bytes through when size and digest match', async () => {
    expect((await through(data, digest, data.length)).equals(data)).toBe(true);
  });

  it('fails at the end on a different digest or a short body, and at once on a long one', async () => {
    await expect(through(data, `sha256:${'0'.repeat(64)}`, data.length)).rejects.toThrow(`content has digest ${digest}`);
    await expect(through(data, digest, data.length + 1)).rejects.toThrow(/got 15 bytes, expected 16/);
    await expect(through(data, digest, data.length - 1)).rejects.toThrow(/more than the 14 bytes/);
  });

  it('checks digest forms and supports sha512', async () => {
    expect(isDigest(digest)).toBe(true);
    expect(isDigest('sha256:abc')).toBe(false);
    expect(() => checkDigest('md5:00', 'blob x')).toThrow(/blob x: digest "md5:00"/);
    const sha512 = `sha512:${createHash('sha512').update(data).digest('hex')}`;
    expect(digestLike(sha512, data)).toBe(sha512);
    expect((await through(data, sha512, data.length)).equals(data)).toBe(true);
  });
});
