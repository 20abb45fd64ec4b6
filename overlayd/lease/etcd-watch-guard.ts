import type { Logger } from 'pino';

// etcd3 1.1.2 throws from its gRPC stream's 'data' handler when etcd answers for a watch it no
// longer tracks (a response in flight while we cancel a watch to list again, or a create
// answer racing a reconnect). Thrown there, the error escapes every promise and kills the
// process. Such a response is stale by definition, so the two handlers (a create answer goes
// through the second to the attach queue, which throws the same way) drop it with a log line
// instead. Installed once, on the module instance etcd3 itself uses.

interface WatchInternals {
  WatchManager: { prototype: Record<string, (...args: unknown[]) => unknown> };
}

const stale = /Failed to find watcher|Could not find watcher|found no pending watchers/;
let installed = false;

function guard(proto: Record<string, (...args: unknown[]) => unknown>, method: string, log: Logger): void {
  const original = proto[method];
  if (typeof original !== 'function') return;
  proto[method] = function (this: unknown, ...args: unknown[]) {
    try {
      return original.apply(this, args);
    } catch (err) {
      if (!(err instanceof Error) || !stale.test(err.message)) throw err;
      log.debug({ err: err.message }, 'etcd watch: dropped a response for a watch that is gone');
      return undefined;
    }
  };
}

export async function guardEtcdWatches(log: Logger): Promise<void> {
  if (installed) return;
  installed = true;
  const internals = (await import('etcd3/lib/watch.js')) as unknown as WatchInternals & { default?: WatchInternals };
  const mod = internals.WatchManager ? internals : internals.default!;
  guard(mod.WatchManager.prototype, 'handleResponse', log);
  guard(mod.WatchManager.prototype, 'handleCreatedResponse', log);
}
