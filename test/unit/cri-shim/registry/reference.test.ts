import { describe, expect, it } from 'vitest';
import { familiarName, imageIdPrefix, isImageId, parseReference } from '../../../../cri-shim/registry/reference.js';

const digest = `sha256:${'ab'.repeat(32)}`;

describe('image references', () => {
  it('normalizes familiar names the way Docker does', () => {
    expect(parseReference('busybox').normalized).toBe('docker.io/library/busybox:latest');
    expect(parseReference('library/busybox:1.36').normalized).toBe('docker.io/library/busybox:1.36');
    expect(parseReference('kube/pause:3').normalized).toBe('docker.io/kube/pause:3');
    expect(parseReference('index.docker.io/x/y').name).toBe('docker.io/x/y');
    expect(parseReference('docker.io/library/busybox:1').path).toBe('library/busybox');
  });

  it('gives the familiar form back', () => {
    expect(parseReference('docker.io/library/busybox').familiar).toBe('busybox:latest');
    expect(parseReference('docker.io/kube/pause:3').familiar).toBe('kube/pause:3');
    expect(parseReference('quay.io/a/b:c').familiar).toBe('quay.io/a/b:c');
    expect(familiarName('docker.io', 'library/a/b')).toBe('library/a/b');
  });

  it('recognizes a registry host by a dot, a port or localhost', () => {
    expect(parseReference('127.0.0.1:5000/a/b:t')).toMatchObject({ domain: '127.0.0.1:5000', path: 'a/b', tag: 't' });
    expect(parseReference('host:5000/a/b')).toMatchObject({ domain: 'host:5000', path: 'a/b', tag: 'latest' });
    expect(parseReference('localhost/x')).toMatchObject({ domain: 'localhost', path: 'x', tag: 'latest' });
    expect(parseReference('registry.k8s.io/pause:3.9')).toMatchObject({ domain: 'registry.k8s.io', path: 'pause' });
    expect(parseReference('[::1]:5000/a')).toMatchObject({ domain: '[::1]:5000', path: 'a' });
    // Without a dot, port or localhost, the first component is a Docker Hub namespace.
    expect(parseReference('myhost/a')).toMatchObject({ domain: 'docker.io', path: 'myhost/a' });
  });

  it('keeps a digest and drops a tag next to it', () => {
    expect(parseReference(`busybox@${digest}`).normalized).toBe(`docker.io/library/busybox@${digest}`);
    const both = parseReference(`host:1/a:tag@${digest}`);
    expect(both.normalized).toBe(`host:1/a@${digest}`);
    expect(both.digest).toBe(digest);
    expect(both.tag).toBeUndefined();
  });

  it('allows the separators the distribution grammar allows', () => {
    expect(parseReference('a/b.c_d__e---f:v1.0-rc_1').path).toBe('a/b.c_d__e---f');
  });

  it('rejects invalid references, naming the reference and what is wrong', () => {
    expect(() => parseReference('')).toThrow(/empty/);
    expect(() => parseReference('Busybox')).toThrow(/"Busybox".*lowercase/);
    expect(() => parseReference('quay.io/Org/app')).toThrow(/lowercase \("Org"\)/);
    expect(() => parseReference('busybox@sha256:123')).toThrow(/"busybox@sha256:123": digest/);
    expect(() => parseReference(`busybox@sha256:${'AB'.repeat(32)}`)).toThrow(/digest/);
    expect(() => parseReference('busybox@md5:abc')).toThrow(/digest/);
    expect(() => parseReference('busybox:-bad')).toThrow(/tag "-bad"/);
    expect(() => parseReference('a//b')).toThrow(/component ""/);
    expect(() => parseReference('a/-b')).toThrow(/component "-b"/);
    expect(() => parseReference('ab'.repeat(32))).toThrow(/image ID/);
    expect(() => parseReference(`x/${'a'.repeat(260)}`)).toThrow(/255/);
    expect(() => parseReference('bad_host.io/a')).toThrow(/registry host "bad_host.io"/);
  });

  it('errors are invalid-argument', () => {
    expect(() => parseReference('UPPER')).toThrow(expect.objectContaining({ kind: 'invalid-argument' }));
  });
});

describe('image IDs', () => {
  it('tells full image IDs from names', () => {
    expect(isImageId(digest)).toBe(true);
    expect(isImageId('ab'.repeat(32))).toBe(true);
    expect(isImageId('busybox')).toBe(false);
    expect(isImageId(`sha256:${'ab'.repeat(31)}`)).toBe(false);
  });

  it('reads ID prefixes as Docker short IDs', () => {
    expect(imageIdPrefix('sha256:abc123')).toBe('abc123');
    expect(imageIdPrefix('abc123')).toBe('abc123');
    expect(imageIdPrefix('ab')).toBeUndefined();
    expect(imageIdPrefix('busybox')).toBeUndefined();
  });
});
