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
