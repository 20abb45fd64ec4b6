import { describe, expect, it } from 'vitest';
import { pinnedImageMatcher, pinnedPatternProblem } from '../../../../cri-shim/store/pinned-images.js';

describe('pinned image patterns (CRI-O pinned_images)', () => {
  it('an exact pattern matches the whole name only, ignoring case', () => {
    const pinned = pinnedImageMatcher(['registry.k8s.io/pause:3.10']);
    expect(pinned('registry.k8s.io/pause:3.10')).toBe(true);
    expect(pinned('REGISTRY.k8s.io/Pause:3.10')).toBe(true);
    expect(pinned('registry.k8s.io/pause:3.1')).toBe(false);
    expect(pinned('registry.k8s.io/pause:3.100')).toBe(false);
    expect(pinned('mirror/registry.k8s.io/pause:3.10')).toBe(false);
  });

  it('a glob with a trailing * matches the names that begin with the rest', () => {
    const pinned = pinnedImageMatcher(['quay.io/org/*']);
    expect(pinned('quay.io/org/app:1')).toBe(true);
    expect(pinned('quay.io/org/app@sha256:' + 'a'.repeat(64))).toBe(true);
    expect(pinned('quay.io/other/app:1')).toBe(false);
    expect(pinned('mirror.test/quay.io/org/app:1')).toBe(false);
  });

  it('a keyword *word* matches the names that contain it', () => {
    const pinned = pinnedImageMatcher(['*pause*']);
    expect(pinned('registry.k8s.io/pause:3.10')).toBe(true);
    expect(pinned('localhost/berth/PAUSE:1')).toBe(true);
    expect(pinned('docker.io/library/busybox:latest')).toBe(false);
  });

  it('metacharacters are literal, and any pattern of several pins what any one does', () => {
    const pinned = pinnedImageMatcher(['a.b/c:1', '*[x]*']);
    expect(pinned('a.b/c:1')).toBe(true);
    expect(pinned('aXb/c:1')).toBe(false);
    expect(pinned('host/[x]:1')).toBe(true);
    expect(pinnedImageMatcher([])('anything')).toBe(false);
    expect(pinnedImageMatcher(['*'])('anything')).toBe(true);
  });

  it('refuses patterns CRI-O does not know: a * in the middle, empty, white space', () => {
    expect(pinnedPatternProblem('registry.k8s.io/pause:3.10')).toBeUndefined();
    expect(pinnedPatternProblem('quay.io/*')).toBeUndefined();
    expect(pinnedPatternProblem('*pause*')).toBeUndefined();
    expect(pinnedPatternProblem('quay.io/*/app')).toMatch(/a \* may only end the pattern/);
    expect(pinnedPatternProblem('*pause')).toMatch(/a \* may only end/);
    expect(pinnedPatternProblem('a**')).toMatch(/a \* may only end/);
    expect(pinnedPatternProblem('')).toMatch(/empty/);
    expect(pinnedPatternProblem('a b')).toMatch(/white space/);
  });
});
