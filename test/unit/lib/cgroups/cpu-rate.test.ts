import { describe, expect, it } from 'vitest';
import { CpuRateTracker } from '../../../../lib/cgroups/cpu-rate.js';

describe('CpuRateTracker', () => {
  it('has no rate for the first sample, then the slope in nanocores', () => {
    const t = new CpuRateTracker();
    expect(t.update('c', 1_000_000_000n, 10_000_000_000n)).toBeUndefined();
    // half a core: 0.5 s of CPU over 1 s of wall time
    expect(t.update('c', 1_500_000_000n, 11_000_000_000n)).toBe(500_000_000n);
    expect(t.get('c')).toBe(500_000_000n);
  });

  it('keeps keys apart, ignores stale samples and restarts after the counter went back', () => {
    const t = new CpuRateTracker();
    t.update('a', 0n, 1_000_000_000n);
    t.update('b', 0n, 1_000_000_000n);
    expect(t.update('a', 2_000_000_000n, 2_000_000_000n)).toBe(2_000_000_000n);
    expect(t.update('a', 9_000_000_000n, 2_000_000_000n)).toBe(2_000_000_000n);
    expect(t.update('a', 10n, 3_000_000_000n)).toBeUndefined();
    expect(t.update('b', 1_000_000_000n, 3_000_000_000n)).toBe(500_000_000n);
  });

  it('forgets a deleted key', () => {
    const t = new CpuRateTracker();
    t.update('a', 0n, 1n);
    t.update('a', 10n, 2n);
    expect(t.delete('a')).toBe(true);
    expect(t.size).toBe(0);
    expect(t.update('a', 20n, 3n)).toBeUndefined();
  });
});
