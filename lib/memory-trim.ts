import { getHeapStatistics } from 'node:v8';
import { nativeAddon } from './native.js';

// An idle daemon keeps what its last burst of work left behind. V8 collects only when it
// allocates, so the garbage of a pull or of fifty pods started stays in the heap of a process that
// then sits idle; and glibc keeps what was freed for reuse, which an idle node agent never asks
// for. Measured on berth-cri (Node 24): idle 80.8 MiB RSS before glibc's free pages went back,
// 74.2 after; after two image pulls, 80.7 with the pull's garbage still in the heap.
//
// So now and then: a major GC when the heap grew since the last one (the units run the daemons
// with --expose-gc, lib/node-flags.ts; without it this step is skipped), run concurrently
// (`execution: 'async'`) so the event loop is not paused for the marking, then malloc_trim(0).

/**
 * When to trim: once after start-up settles, then once a minute, so what a burst of work freed
 * goes back within a minute of it. A trim with nothing to give back costs ~40 µs; a timer a
 * minute wakes an idle process less than its gRPC keepalives do.
 */
export interface MemoryTrimSchedule {
  firstMs: number;
  everyMs: number;
}

export const defaultTrimSchedule: MemoryTrimSchedule = { firstMs: 10_000, everyMs: 60_000 };

/** Heap growth since the last collection this module asked for that is worth one. */
const collectAfterBytes = 2 * 1024 * 1024;

/**
 * Trim now and then; returns the function that stops it. The timers never keep the process
 * alive, and without the native addon (a development checkout that has not built it) only the
 * GC step runs.
 */
export function startMemoryTrim(schedule: MemoryTrimSchedule = defaultTrimSchedule, trim: () => Promise<void> | void = trimOnce): () => void {
  let every: NodeJS.Timeout | undefined;
  let running = false;
  const tick = (): void => {
    if (running) return;
    running = true;
    void Promise.resolve()
      .then(trim)
      .catch(() => undefined)
      .finally(() => (running = false));
  };
  const first = setTimeout(() => {
    tick();
    every = setInterval(tick, schedule.everyMs).unref();
  }, schedule.firstMs).unref();
  return () => {
    clearTimeout(first);
    if (every) clearInterval(every);
  };
}

let usedAfterCollect = 0;

async function trimOnce(): Promise<void> {
  const gc = globalThis.gc;
  if (gc && getHeapStatistics().used_heap_size - usedAfterCollect > collectAfterBytes) {
    await gc({ type: 'major', execution: 'async' });
    usedAfterCollect = getHeapStatistics().used_heap_size;
  }
  try {
    nativeAddon('trimMemory').trimMemory();
  } catch {
    // No addon: the memory stays with glibc, as it would without berth asking.
  }
}
