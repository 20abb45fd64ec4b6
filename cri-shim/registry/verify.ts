import { createHash, type Hash } from 'node:crypto';
import { Transform } from 'node:stream';
import { BerthError } from '../../lib/errors.js';

// Content addressing (OCI image-spec "Digests"): every byte pulled is hashed and compared with the
// digest that named it, so a mirror, proxy or disk cannot hand us something else.

const algorithms: Record<string, { node: string; hexLength: number }> = {
  sha256: { node: 'sha256', hexLength: 64 },
  sha512: { node: 'sha512', hexLength: 128 },
};

/** Check a digest string's form (`sha256:<64 hex>`, `sha512:<128 hex>`), naming `what` on error. */
export function checkDigest(digest: string, what: string): { algorithm: string; hex: string } {
  const [algorithm, hex, ...extra] = digest.split(':');
  const algo = algorithm ? algorithms[algorithm] : undefined;
  if (!algo || extra.length || !hex || hex.length !== algo.hexLength || !/^[a-f0-9]+$/.test(hex)) {
    throw new BerthError('invalid-argument', `${what}: digest "${digest}" is not sha256:<64 hex> or sha512:<128 hex>`);
  }
  return { algorithm: algorithm!, hex };
}

export function isDigest(s: string): boolean {
  try {
    checkDigest(s, '');
    return true;
  } catch {
    return false;
  }
}

function hasherFor(digest: string, what: string): Hash {
  return createHash(algorithms[checkDigest(digest, what).algorithm]!.node);
}

/** The sha256 digest of some bytes. */
export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The digest of `bytes` in the algorithm `like` uses. */
export function digestLike(like: string, bytes: Buffer): string {
  const { algorithm } = checkDigest(like, 'digest');
  return `${algorithm}:${hasherFor(like, 'digest').update(bytes).digest('hex')}`;
}

/**
 * A pass-through stream that fails unless exactly `size` bytes with digest `digest` went through:
 * too many bytes fail at once, a short or different body fails at its end.
 */
export function verifyingStream(digest: string, size: number, what = `blob ${digest}`): Transform {
  const { algorithm } = checkDigest(digest, what);
  const hash = hasherFor(digest, what);
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (size >= 0 && seen > size) return done(new BerthError('io', `${what}: more than the ${size} bytes its descriptor says`));
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      if (size >= 0 && seen !== size) return done(new BerthError('io', `${what}: got ${seen} bytes, expected ${size}`));
      const got = `${algorithm}:${hash.digest('hex')}`;
      if (got !== digest) return done(new BerthError('io', `${what}: content has digest ${got}`));
      done();
    },
  });
}
