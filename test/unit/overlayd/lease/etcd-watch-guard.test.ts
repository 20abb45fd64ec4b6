import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { guardEtcdWatches } from '../../../../overlayd/lease/etcd-watch-guard.js';

// etcd3 throws from its stream handler for a response to a watch it no longer tracks, which
// would kill berth-overlayd; the guard drops exactly those responses and nothing else.

describe('the etcd3 watch guard', () => {
  it('drops responses for watches that are gone and lets other errors through', async () => {
    const { WatchManager } = (await import('etcd3/lib/watch.js')) as unknown as { WatchManager: { prototype: Record<string, (this: unknown, ...a: unknown[]) => unknown> } };
    const manager = { watchers: [], initialBackoff: { next: () => undefined }, queue: { handleCreate: () => { throw new Error('Could not find watcher corresponding to create response'); } } };
    const response = { watch_id: '7', canceled: false, events: [] };
    expect(() => WatchManager.prototype.handleResponse!.call(manager, response)).toThrow(/Failed to find watcher/);
    await guardEtcdWatches(pino({ level: 'silent' }));
    expect(WatchManager.prototype.handleResponse!.call(manager, response)).toBeUndefined();
    expect(WatchManager.prototype.handleCreatedResponse!.call(manager, { ...response, created: true })).toBeUndefined();
    const broken = { ...manager, initialBackoff: undefined };
    expect(() => WatchManager.prototype.handleResponse!.call(broken, response)).toThrow(TypeError);
  });
});
