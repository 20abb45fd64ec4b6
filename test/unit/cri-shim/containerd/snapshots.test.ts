import { describe, expect, it } from 'vitest';
import { chainIds } from '../../../../cri-shim/containerd/snapshots.js';

describe('chainIds', () => {
  it('computes OCI chain IDs', () => {
    const a = `sha256:${'a'.repeat(64)}`;
    const b = `sha256:${'b'.repeat(64)}`;
    const [c0, c1] = chainIds([a, b]);
    expect(c0).toBe(a);
    // sha256("sha256:aaa… sha256:bbb…")
    expect(c1).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(c1).not.toBe(b);
    expect(chainIds([a, b])).toEqual([c0, c1]);
  });
});
