// Named crash points for the crash tests: with BERTH_CSI_CRASH_AT=<name> in its environment the
// driver kills itself with SIGKILL when it reaches that point, which is how a test lands a
// kill -9 exactly between two steps of an RPC (after the intent is journaled, after the mount,
// before the record) instead of hoping a timer hits it. Unset, this is one string compare.

const armed = process.env.BERTH_CSI_CRASH_AT;

export type CrashPoint =
  | 'create:after-backing'
  | 'delete:after-forget'
  | 'stage:after-intent'
  | 'stage:after-mount'
  | 'publish:after-intent'
  | 'publish:after-mount'
  | 'unpublish:after-unmount'
  | 'snapshot:after-copy';

export function crashPoint(name: CrashPoint): void {
  if (armed === name) process.kill(process.pid, 'SIGKILL');
}

const pauseAt = process.env.BERTH_CSI_PAUSE_AT;

/** Where a test may hold the driver between opening a path and mounting on it. */
export type PausePoint = 'stage:after-open' | 'publish:after-open';

/**
 * With BERTH_CSI_PAUSE_AT=<name> the driver stops itself (SIGSTOP) at that point until the test
 * sends SIGCONT: how a test swaps a symlink in between a path's lookup and its use, every time
 * rather than by luck. Unset, this is one string compare.
 */
export function pausePoint(name: PausePoint): void {
  if (pauseAt === name) process.kill(process.pid, 'SIGSTOP');
}
