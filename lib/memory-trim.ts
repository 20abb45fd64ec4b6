import { nativeAddon } from './native.js';

// A daemon's native heap is at its largest once it has started (V8's compiler zones for the
// bundle, gRPC and HTTP/2 set-up) and after a burst of calls. glibc keeps what was freed for
// reuse, and an idle node agent never reuses it: malloc_trim(0) hands those pages back. Measured
// on berth-cri idle (Node 24): 80.8 MiB RSS before the first trim, 74.2 MiB after.

/** When to trim: once after start-up settles, then at a slow pace that wakes the process rarely. */
export interface MemoryTrimSchedule {
  firstMs: number;
  everyMs: number;
}

export const defaultTrimSchedule: MemoryTrimSchedule = { firstMs: 10_000, everyMs: 600_000 };

/**
 * Trim now and then; returns the function that stops it. The timers never keep the process
 * alive, and without the native addon (a development checkout that has not built it) nothing
 * happens.
 */
export function startMemoryTrim(schedule: MemoryTrimSchedule = defaultTrimSchedule, trim: () => void = trimOnce): () => void {
  let every: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    trim();
    every = setInterval(trim, schedule.everyMs).unref();
  }, schedule.firstMs).unref();
  return () => {
    clearTimeout(first);
    if (every) clearInterval(every);
  };
}

function trimOnce(): void {
  try {
    nativeAddon('trimMemory').trimMemory();
  } catch {
    // No addon: the memory stays with glibc, as it would without berth asking.
  }
}
