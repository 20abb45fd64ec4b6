import type { HealthEvent } from './backend/types.js';

// Device health as a pure state machine; the caller feeds events and the time.
//   healthy --(counted event)--> unhealthy --(quiet period, probe answers)--> healthy
// A counted event or a failed probe restarts the quiet period. Ignored Xids (application
// errors such as 13, 31, 43) and, by default, single-bit ECC errors never count.

export interface HealthTrackerOptions {
  ignoredXids: number[];
  singleBitEccUnhealthy: boolean;
  /** Seconds without a counted event before an unhealthy GPU is probed; 0: never recover. */
  recoveryQuietSeconds: number;
}

interface UnhealthyState {
  /** The last counted event (the reason). */
  event: HealthEvent;
  /** Start of the current quiet period: the last counted event or failed probe. */
  quietSince: Date;
}

export class HealthTracker {
  private readonly ignoredXids: ReadonlySet<number>;
  private readonly singleBitEccUnhealthy: boolean;
  private readonly quietMs: number;
  private readonly states = new Map<string, UnhealthyState>();
  private readonly counters = { toUnhealthy: 0, toHealthy: 0 };

  constructor(options: HealthTrackerOptions) {
    this.ignoredXids = new Set(options.ignoredXids);
    this.singleBitEccUnhealthy = options.singleBitEccUnhealthy;
    this.quietMs = options.recoveryQuietSeconds * 1000;
  }

  /** Whether this event counts against the GPU at all. */
  counts(event: HealthEvent): boolean {
    switch (event.kind) {
      case 'xid':
        return !this.ignoredXids.has(event.code);
      case 'ecc-double-bit':
        return true;
      case 'ecc-single-bit':
        return this.singleBitEccUnhealthy;
    }
  }

  /**
   * Record an event. Returns true when the GPU became unhealthy now; a counted event on a GPU
   * that is already unhealthy replaces its reason and restarts its quiet period. Events that do
   * not count change nothing.
   */
  observe(event: HealthEvent): boolean {
    if (!this.counts(event)) return false;
    const state = this.states.get(event.uuid);
    if (state) {
      state.event = event;
      // Events may arrive out of order; the quiet period never moves backwards.
      if (event.at.getTime() > state.quietSince.getTime()) state.quietSince = event.at;
      return false;
    }
    this.states.set(event.uuid, { event, quietSince: event.at });
    this.counters.toUnhealthy++;
    return true;
  }

  /**
   * Unhealthy GPUs whose quiet period has passed at `now`, sorted by UUID: probe them, then call
   * recovered() or probeFailed(). None when recoveryQuietSeconds is 0. A GPU stays due until
   * one of those is called, so the caller must not start a second probe of a GPU in flight.
   */
  dueForProbe(now: Date): string[] {
    if (this.quietMs <= 0) return [];
    const due: string[] = [];
    for (const [uuid, state] of this.states) {
      if (now.getTime() - state.quietSince.getTime() >= this.quietMs) due.push(uuid);
    }
    return due.sort();
  }

  /**
   * The probe answered: the GPU is healthy again. Returns false (and changes nothing) when the
   * GPU is not unhealthy or a counted event arrived while it was probed (it is no longer due).
   */
  recovered(uuid: string, now: Date): boolean {
    const state = this.states.get(uuid);
    if (!state) return false;
    if (this.quietMs <= 0 || now.getTime() - state.quietSince.getTime() < this.quietMs) return false;
    this.states.delete(uuid);
    this.counters.toHealthy++;
    return true;
  }

  /** The probe did not answer: the GPU stays unhealthy and waits another quiet period. */
  probeFailed(uuid: string, now: Date): void {
    const state = this.states.get(uuid);
    if (state) state.quietSince = now;
  }

  /** UUIDs of the unhealthy GPUs (a snapshot). */
  unhealthy(): ReadonlySet<string> {
    return new Set(this.states.keys());
  }

  /** The last counted event of an unhealthy GPU, for logs and metrics; undefined when healthy. */
  reason(uuid: string): HealthEvent | undefined {
    return this.states.get(uuid)?.event;
  }

  /** Transition counters since start, for metrics. */
  get transitions(): Readonly<{ toUnhealthy: number; toHealthy: number }> {
    return { ...this.counters };
  }
}
