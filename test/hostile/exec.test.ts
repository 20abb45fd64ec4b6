import { describe, expect, it } from 'vitest';
import type { CriWorld } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';
import { SpdyWire } from './spdy-wire.js';
import { attackCri, busybox, execUrl, expectSurvived } from './stream-attack.js';

// Commands that push berth-cri's exec paths: output past ExecSync's cap, and execs racing the
// container's death. berth-cri must answer, stay alive and keep its memory bounded.

/** What one ExecSync reply may carry: the gRPC message limit less room for its framing. */
const replyBudget = 16 * 1024 * 1024 - 1024;

describe.skipIf(!isRoot)('commands that push exec', () => {
  let world!: CriWorld;
  useCriWorld(['busybox'], (w) => (world = w));

  it('ExecSync output past the cap is cut to its first bytes, never RESOURCE_EXHAUSTED', async () => {
    const c = await busybox(world);
    // 20 MB on stdout: more than the 16 MiB cap and than one gRPC reply holds.
    const one = await world.runtime.execSync({ containerId: c.id, cmd: ['sh', '-c', 'yes abc | head -c 20000000; echo -n done >&2'], timeout: 30n });
    expect(one.exitCode).toBe(0);
    expect(one.stdout.length).toBe(replyBudget - 4);
    expect(one.stdout.subarray(0, 8).toString()).toBe('abc\nabc\n');
    expect(one.stderr.toString()).toBe('done');
    // 20 MB on each: each stream keeps half the reply.
    const both = await world.runtime.execSync({ containerId: c.id, cmd: ['sh', '-c', 'head -c 20000000 /dev/zero >&2 & head -c 20000000 /dev/zero; wait; exit 3'], timeout: 30n });
    expect(both.exitCode).toBe(3);
    expect(both.stdout.length + both.stderr.length).toBe(replyBudget);
    expect(both.stdout.length).toBe(replyBudget / 2);
  });

  it('execs into a container that is being killed fail cleanly; berth-cri lives on', async () => {
    const report = await attackCri(world, async () => {
      for (let round = 0; round < 4; round++) {
        const c = await busybox(world);
        const execs = Array.from({ length: 12 }, (_, i) =>
          i % 2 === 0
            ? world.runtime.execSync({ containerId: c.id, cmd: ['sh', '-c', 'echo hi'], timeout: 10n })
            : execUrl(world, c.id, ['sh', '-c', 'echo hi']).then(async (url) => {
                // A client as kubectl: its streams, then what comes until the outcome (or the end).
                const wire = await SpdyWire.upgrade(url);
                const ids = await wire.openStreams(['error', 'stdout', 'stderr'], { flowControl: false }).catch(() => undefined);
                if (ids) await wire.finished(ids.error!);
                wire.socket.destroy();
              }),
        );
        // The container dies while its execs are being set up and started.
        const stop = world.runtime.stopContainer({ containerId: c.id, timeout: 0n });
        const settled = await Promise.allSettled([...execs, stop]);
        expect(settled.at(-1)!.status).toBe('fulfilled');
        for (const s of settled.slice(0, -1)) {
          // Either it ran, or it failed with a gRPC status (for the streaming ones, a Status on the error stream).
          if (s.status === 'rejected') expect((s.reason as { code?: number }).code).toBeGreaterThan(0);
        }
      }
    });
    expectSurvived(report);
  });
});
