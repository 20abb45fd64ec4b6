import { describe, expect, it } from 'vitest';
import type { HealthEvent } from '../../../device-plugin/backend/types.js';
import { defaultIgnoredXids } from '../../../device-plugin/config.js';
import { HealthTracker } from '../../../device-plugin/health.js';

const A = 'GPU-aaaaaaaa-0000-0000-0000-000000000000';
const B = 'GPU-bbbbbbbb-0000-0000-0000-000000000000';
const t0 = Date.parse('2025-01-01T00:00:00Z');
const at = (seconds: number): Date => new Date(t0 + seconds * 1000);

function xid(uuid: string, code: number, seconds = 0): HealthEvent {
  return { uuid, kind: 'xid', code, at: at(seconds) };
}

function tracker(overrides: Partial<ConstructorParameters<typeof HealthTracker>[0]> = {}): HealthTracker {
  return new HealthTracker({ ignoredXids: defaultIgnoredXids, singleBitEccUnhealthy: false, recoveryQuietSeconds: 300, ...overrides });
}

describe('HealthTracker events', () => {
  it.each([13, 31, 43, 45, 68, 109])('ignored Xid %i never marks a GPU unhealthy', (code) => {
    const h = tracker();
    expect(h.observe(xid(A, code))).toBe(false);
    expect(h.unhealthy().size).toBe(0);
    expect(h.reason(A)).toBeUndefined();
    expect(h.transitions).toEqual({ toUnhealthy: 0, toHealthy: 0 });
  });

  it('Xid 79 (fallen off the bus) marks the GPU unhealthy once', () => {
    const h = tracker();
    expect(h.observe(xid(A, 79))).toBe(true);
    expect([...h.unhealthy()]).toEqual([A]);
    expect(h.reason(A)).toEqual(xid(A, 79));
    expect(h.observe(xid(A, 79, 1))).toBe(false);
    expect(h.transitions).toEqual({ toUnhealthy: 1, toHealthy: 0 });
  });

  it('only the GPU of the event is affected', () => {
    const h = tracker();
    h.observe(xid(A, 48));
    expect(h.unhealthy().has(B)).toBe(false);
  });

  it('the ignored list is configurable: an emptied list makes Xid 13 count', () => {
    const h = tracker({ ignoredXids: [] });
    expect(h.observe(xid(A, 13))).toBe(true);
  });

  it('a double-bit ECC error always marks', () => {
    const h = tracker();
    expect(h.observe({ uuid: A, kind: 'ecc-double-bit', code: 1, at: at(0) })).toBe(true);
  });

  it('a single-bit ECC error marks only with singleBitEccUnhealthy', () => {
    const single: HealthEvent = { uuid: A, kind: 'ecc-single-bit', code: 5, at: at(0) };
    expect(tracker().observe(single)).toBe(false);
    expect(tracker().counts(single)).toBe(false);
    expect(tracker({ singleBitEccUnhealthy: true }).observe(single)).toBe(true);
  });

  it('the reason is the last counted event, ignored ones do not replace it', () => {
    const h = tracker();
    h.observe(xid(A, 79, 0));
    h.observe(xid(A, 48, 10));
    h.observe(xid(A, 13, 20));
    expect(h.reason(A)).toEqual(xid(A, 48, 10));
  });

  it('unhealthy() is a snapshot the caller cannot change', () => {
    const h = tracker();
    h.observe(xid(A, 79));
    const snapshot = h.unhealthy() as Set<string>;
    snapshot.delete(A);
    expect(h.unhealthy().has(A)).toBe(true);
  });
});

describe('HealthTracker recovery', () => {
  it('is due for a probe once the quiet period has passed, and healthy after it answers', () => {
    const h = tracker();
    h.observe(xid(A, 79, 0));
    expect(h.dueForProbe(at(299))).toEqual([]);
    expect(h.dueForProbe(at(300))).toEqual([A]);
    expect(h.recovered(A, at(301))).toBe(true);
    expect(h.unhealthy().size).toBe(0);
    expect(h.reason(A)).toBeUndefined();
    expect(h.dueForProbe(at(1000))).toEqual([]);
    expect(h.transitions).toEqual({ toUnhealthy: 1, toHealthy: 1 });
  });

  it('a failed probe keeps the GPU unhealthy and restarts the wait', () => {
    const h = tracker();
    h.observe(xid(A, 79, 0));
    h.probeFailed(A, at(300));
    expect(h.unhealthy().has(A)).toBe(true);
    expect(h.dueForProbe(at(599))).toEqual([]);
    expect(h.dueForProbe(at(600))).toEqual([A]);
    expect(h.transitions).toEqual({ toUnhealthy: 1, toHealthy: 0 });
  });

  it('a new counted event during the quiet period restarts it', () => {
    const h = tracker();
    h.observe(xid(A, 79, 0));
    h.observe(xid(A, 79, 200));
    expect(h.dueForProbe(at(300))).toEqual([]);
    expect(h.dueForProbe(at(500))).toEqual([A]);
  });

  it('an ignored Xid during the quiet period does not restart it', () => {
    const h = tracker();
    h.observe(xid(A, 79, 0));
    h.observe(xid(A, 13, 200));
    expect(h.dueForProbe(at(300))).toEqual([A]);
  });

  it('an event older than the current quiet start does not move it back', () => {
    const h = tracker();
    h.observe(xid(A, 79, 100));
    h.observe(xid(A, 79, 50));
    expect(h.dueForProbe(at(399))).toEqual([]);
    expect(h.dueForProbe(at(400))).toEqual([A]);
  });

  it('a counted event that arrives while the probe runs cancels the recovery', () => {
    const h = tracker();
    h.observe(xid(A, 79, 0));
    expect(h.dueForProbe(at(300))).toEqual([A]);
    h.observe(xid(A, 79, 301));
    expect(h.recovered(A, at(302))).toBe(false);
    expect(h.unhealthy().has(A)).toBe(true);
  });

  it('recovered() of a healthy GPU changes nothing; probeFailed() of one neither', () => {
    const h = tracker();
    expect(h.recovered(A, at(0))).toBe(false);
    h.probeFailed(A, at(0));
    expect(h.unhealthy().size).toBe(0);
    expect(h.transitions).toEqual({ toUnhealthy: 0, toHealthy: 0 });
  });

  it('with recoveryQuietSeconds 0 a GPU is never due and never recovers', () => {
    const h = tracker({ recoveryQuietSeconds: 0 });
    h.observe(xid(A, 79, 0));
    expect(h.dueForProbe(at(1e9))).toEqual([]);
    expect(h.recovered(A, at(1e9))).toBe(false);
    expect(h.unhealthy().has(A)).toBe(true);
  });

  it('several due GPUs are listed sorted by UUID, each on its own clock', () => {
    const h = tracker({ recoveryQuietSeconds: 10 });
    h.observe(xid(B, 79, 0));
    h.observe(xid(A, 79, 5));
    expect(h.dueForProbe(at(10))).toEqual([B]);
    expect(h.dueForProbe(at(15))).toEqual([A, B]);
  });

  it('a recovered GPU can become unhealthy again and is counted again', () => {
    const h = tracker({ recoveryQuietSeconds: 10 });
    h.observe(xid(A, 79, 0));
    h.recovered(A, at(10));
    expect(h.observe(xid(A, 79, 20))).toBe(true);
    expect(h.transitions).toEqual({ toUnhealthy: 2, toHealthy: 1 });
  });
});
