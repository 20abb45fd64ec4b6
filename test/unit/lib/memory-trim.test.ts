import { afterEach, describe, expect, it, vi } from 'vitest';
import { startMemoryTrim } from '../../../lib/memory-trim.js';

describe('startMemoryTrim', () => {
  afterEach(() => void vi.useRealTimers());

  it('trims once start-up has settled, then at the slow pace, until stopped', () => {
    vi.useFakeTimers();
    const trim = vi.fn();
    const stop = startMemoryTrim({ firstMs: 1000, everyMs: 5000 }, trim);
    vi.advanceTimersByTime(999);
    expect(trim).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(trim).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(10_000);
    expect(trim).toHaveBeenCalledTimes(3);
    stop();
    vi.advanceTimersByTime(60_000);
    expect(trim).toHaveBeenCalledTimes(3);
  });

  it('stopped before the first trim, never trims', () => {
    vi.useFakeTimers();
    const trim = vi.fn();
    startMemoryTrim({ firstMs: 1000, everyMs: 5000 }, trim)();
    vi.advanceTimersByTime(60_000);
    expect(trim).not.toHaveBeenCalled();
  });
});
