import { describe, expect, it } from 'vitest';
import { checkDescriptor, defaultPullLimits, imageConfigDiffIds, parseManifestDocument } from '../../../../cri-shim/registry/manifest.js';

const digest = `sha256:${'a'.repeat(64)}`;
const index = 'application/vnd.oci.image.index.v1+json';
const manifest = 'application/vnd.oci.image.manifest.v1+json';
const json = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc));

describe('descriptors', () => {
  it('keeps a well-formed descriptor with its platform', () => {
    const d = { mediaType: manifest, digest, size: 512, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, annotations: { a: 'b' } };
    expect(checkDescriptor(d, 'index x', 'manifests[0]')).toEqual(d);
    expect(checkDescriptor({ digest, size: 0 }, 'x', 'config')).toEqual({ mediaType: '', digest, size: 0 });
  });

  it('refuses a size that is missing, negative, fractional, not a number or past 2^53', () => {
    for (const [size, why] of [
      [undefined, 'missing'],
      [-1, '-1 is not a size'],
      [1.5, '1.5 is not a size'],
      ['12', '"12" is not a size'],
      [1e300, '1e+300 is not a size'],
      [2 ** 53, '9007199254740992 is not a size'],
      [null, 'null is not a size'],
    ] as const) {
      expect(() => checkDescriptor({ mediaType: manifest, digest, size }, 'index x', 'manifests[1]')).toThrow(expect.objectContaining({ kind: 'invalid-argument', message: expect.stringContaining(`index x: manifests[1].size: ${why}`) }));
    }
  });

  it('refuses a size over the limit of what it points at, naming the setting', () => {
    const limit = { bytes: 1024, what: 'manifests', setting: 'maxManifestSize' } as const;
    expect(checkDescriptor({ digest, size: 1024 }, 'x', 'manifests[0]', limit).size).toBe(1024);
    expect(() => checkDescriptor({ digest, size: 1025 }, 'x', 'manifests[0]', limit)).toThrow(
      expect.objectContaining({ kind: 'resource-exhausted', message: 'x: manifests[0].size: 1025 bytes is over the 1024-byte limit for manifests (maxManifestSize)' }),
    );
  });

  it('refuses a digest that is not one before it can reach a URL, a file or a key', () => {
    for (const bad of ['../../etc/passwd', 'sha256:../../x', `sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, `md5:${'a'.repeat(32)}`, `sha256:${'a'.repeat(64)}/..`, '']) {
      expect(() => checkDescriptor({ digest: bad, size: 1 }, 'index x', 'manifests[0]')).toThrow(expect.objectContaining({ kind: 'invalid-argument', message: expect.stringContaining('index x: manifests[0].digest: digest') }));
    }
    expect(() => checkDescriptor({ size: 1 }, 'x', 'config')).toThrow('x: config.digest: missing');
    expect(() => checkDescriptor({ digest: 7, size: 1 }, 'x', 'config')).toThrow('x: config.digest: expected a string');
  });

  it('refuses what is not a descriptor at all', () => {
    expect(() => checkDescriptor('sha256:abc', 'x', 'layers[0]')).toThrow('x: layers[0]: expected a descriptor');
    expect(() => checkDescriptor({ digest, size: 1, mediaType: 5 }, 'x', 'layers[0]')).toThrow('x: layers[0].mediaType: expected a string');
    expect(() => checkDescriptor({ digest, size: 1, platform: 'linux' }, 'x', 'manifests[0]')).toThrow('x: manifests[0].platform');
  });
});

describe('manifest documents', () => {
  it('reads an index, every entry checked against the manifest limit', () => {
    const entry = { mediaType: manifest, digest, size: 100, platform: { os: 'linux', architecture: 'amd64' } };
    expect(parseManifestDocument(json({ manifests: [entry] }), index, 'x', defaultPullLimits)).toEqual({ kind: 'index', manifests: [entry] });
    const huge = { ...entry, size: defaultPullLimits.maxManifestBytes + 1 };
    expect(() => parseManifestDocument(json({ manifests: [entry, huge] }), index, 'x', defaultPullLimits)).toThrow(/x: manifests\[1\]\.size: 4194305 bytes is over/);
    const traversal = { ...entry, digest: '../../etc/passwd' };
    expect(() => parseManifestDocument(json({ manifests: [traversal] }), index, 'x', defaultPullLimits)).toThrow(/x: manifests\[0\]\.digest: digest "\.\.\/\.\.\/etc\/passwd"/);
    expect(() => parseManifestDocument(json({ manifests: 'all' }), index, 'x', defaultPullLimits)).toThrow('x: manifests: an index needs a list');
  });

  it('reads an image manifest: config within the config limit, layers checked', () => {
    const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: 10 };
    const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: 5_000_000_000 };
    expect(parseManifestDocument(json({ config, layers: [layer] }), manifest, 'x', defaultPullLimits)).toEqual({ kind: 'image', config, layers: [layer] });
    const limits = { ...defaultPullLimits, maxConfigBytes: 9 };
    expect(() => parseManifestDocument(json({ config, layers: [] }), manifest, 'x', limits)).toThrow('x: config.size: 10 bytes is over the 9-byte limit for image configs (maxImageConfigSize)');
    expect(() => parseManifestDocument(json({ config, layers: [{ ...layer, size: -5 }] }), manifest, 'x', defaultPullLimits)).toThrow('x: layers[0].size: -5 is not a size');
    expect(() => parseManifestDocument(json({ layers: [] }), manifest, 'x', defaultPullLimits)).toThrow('x: config: missing');
    expect(() => parseManifestDocument(json({ config }), manifest, 'x', defaultPullLimits)).toThrow('x: layers: expected a list');
    expect(() => parseManifestDocument(Buffer.from('{'), manifest, 'x', defaultPullLimits)).toThrow('x: not JSON');
    expect(() => parseManifestDocument(json([1]), manifest, 'x', defaultPullLimits)).toThrow('x: expected a JSON object');
  });

  it('checks the diff IDs of an image config as digests', () => {
    expect(imageConfigDiffIds(json({ rootfs: { type: 'layers', diff_ids: [digest] } }), 'c')).toEqual([digest]);
    expect(imageConfigDiffIds(json({}), 'c')).toEqual([]);
    expect(() => imageConfigDiffIds(json({ rootfs: { diff_ids: ['../x'] } }), 'c')).toThrow(/c: rootfs.diff_ids\[0\]: digest "\.\.\/x"/);
    expect(() => imageConfigDiffIds(json({ rootfs: { diff_ids: 'x' } }), 'c')).toThrow('c: rootfs.diff_ids: expected a list');
    expect(() => imageConfigDiffIds(Buffer.from('nope'), 'c')).toThrow('c: not JSON');
  });
});
