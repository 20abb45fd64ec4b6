import { describe, expect, it } from 'vitest';
import { isIndexMediaType, selectPlatform, type Descriptor } from '../../../../cri-shim/registry/platform.js';

const d = (n: string, platform?: Descriptor['platform']): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: `sha256:${n.repeat(64)}`,
  size: 100,
  ...(platform ? { platform } : {}),
});

describe('platform selection', () => {
  const index = {
    manifests: [
      d('1', { os: 'linux', architecture: 'amd64' }),
      d('2', { os: 'linux', architecture: 'arm', variant: 'v7' }),
      d('3', { os: 'linux', architecture: 'arm64', variant: 'v8' }),
      d('4', { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' }),
      d('5'),
    ],
  };

  it('chooses the entry for linux/amd64 and linux/arm64', () => {
    expect(selectPlatform(index, { os: 'linux', architecture: 'amd64' }).digest).toBe(`sha256:${'1'.repeat(64)}`);
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm64' }).digest).toBe(`sha256:${'3'.repeat(64)}`);
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(`sha256:${'2'.repeat(64)}`);
  });

  it('treats arm64 without a variant as v8', () => {
    const noVariant = { manifests: [d('6', { os: 'linux', architecture: 'arm64' })] };
    expect(selectPlatform(noVariant, { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest).toBe(`sha256:${'6'.repeat(64)}`);
  });

  it('prefers the exact variant over an entry without one', () => {
    const both = { manifests: [d('7', { os: 'linux', architecture: 'arm' }), d('8', { os: 'linux', architecture: 'arm', variant: 'v6' })] };
    expect(selectPlatform(both, { os: 'linux', architecture: 'arm', variant: 'v6' }).digest).toBe(`sha256:${'8'.repeat(64)}`);
    expect(selectPlatform(both, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(`sha256:${'7'.repeat(64)}`);
  });

  it('lists the platforms it has when none matches', () => {
    expect(() => selectPlatform(index, { os: 'linux', architecture: 's390x' })).toThrow(
      'no manifest for linux/s390x in the image index (it has: linux/amd64, linux/arm/v7, linux/arm64/v8, windows/amd64)',
    );
    expect(() => selectPlatform({ manifests: [] }, { os: 'linux', architecture: 'amd64' })).toThrow(/no platforms/);
    expect(() => selectPlatform(index, { os: 'linux', architecture: 'riscv64' })).toThrow(expect.objectContaining({ kind: 'not-found' }));
  });

  it('knows index media types', () => {
    expect(isIndexMediaType('application/vnd.oci.image.index.v1+json')).toBe(true);
    expect(isIndexMediaType('application/vnd.docker.distribution.manifest.list.v2+json')).toBe(true);
    expect(isIndexMediaType('application/vnd.oci.image.manifest.v1+json')).toBe(false);
  });
});
