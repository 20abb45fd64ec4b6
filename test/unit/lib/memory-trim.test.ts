import { afterEach, describe, expect, it, vi } from 'vitest';
import { startMemoryTrim } from '../../../lib/memory-trim.js';

describe('startMemoryTrim', () => {
  afterEach(() => void vi.useRealTimers());

  it('trims once start-up has settled, then at the slow pace, until stopped', async () => {
    vi.useFakeTimers();
    const trim = vi.fn();
    const stop = startMemoryTrim({ firstMs: 1000, everyMs: 5000 }, trim);
    await vi.advanceTimersByTimeAsync(999);
    expect(trim).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(trim).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(trim).toHaveBeenCalledTimes(3);
    stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(trim).toHaveBeenCalledTimes(3);
  });

  it('stopped before the first trim, never trims', async () => {
    vi.useFakeTimers();
    const trim = vi.fn();
    startMemoryTrim({ firstMs: 1000, everyMs: 5000 }, trim)();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(trim).not.toHaveBeenCalled();
  });

  it('never runs two at once: a slow collection is not started again under itself', async () => {
    vi.useFakeTimers();
    let finish!: () => void;
    const trim = vi.fn(() => new Promise<void>((resolve) => (finish = resolve)));
    const stop = startMemoryTrim({ firstMs: 1000, everyMs: 1000 }, trim);
    await vi.advanceTimersByTimeAsync(5000);
    expect(trim).toHaveBeenCalledTimes(1);
    finish();
    await vi.advanceTimersByTimeAsync(1000);
    expect(trim).toHaveBeenCalledTimes(2);
    stop();
  });

  it('carries on after a trim that fails', async () => {
    vi.useFakeTimers();
    const trim = vi.fn(() => Promise.reject(new Error('no')));
    const stop = startMemoryTrim({ firstMs: 1000, everyMs: 1000 }, trim);
    await vi.advanceTimersByTimeAsync(3000);
    expect(trim).toHaveBeenCalledTimes(3);
    stop();
  });
});
