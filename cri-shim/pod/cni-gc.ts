import { errorMessage } from '../../lib/errors.js';
import type { CriRuntime } from '../runtime.js';

// CNI GC from berth-cri (CNI spec 1.1, as containerd 2 does): once at start and then every
// cniGcInterval, the pod network's plugins are told which attachments are valid (the pods
// berth-cri knows, and those being created), so what a crash, a kill -9 in the middle of a
// RunPodSandbox or a reboot left behind (IP leases, veths, port mappings, cached results) is
// released without waiting for a DEL that will never come.

export class CniGarbageCollector {
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly rt: CriRuntime) {}

  start(): void {
    const interval = this.rt.config.cniGcInterval;
    if (interval === 0) return;
    void this.runOnce();
    this.timer = setInterval(() => void this.runOnce(), interval);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** One GC; never throws (a network not configured yet, or a plugin failing, is logged). */
  async runOnce(): Promise<boolean> {
    if (this.stopped) return false;
    const { rt } = this;
    const started = Date.now();
    try {
      const done = await rt.network.gc(() => new Set([...rt.sandboxes.all().map((s) => s.id), ...rt.sandboxes.names.ids()]));
      if (done) rt.log.debug({ ms: Date.now() - started }, 'CNI GC done');
      else rt.log.debug('CNI GC skipped: pod networks being set up; next round');
      return done;
    } catch (err) {
      rt.log.warn({ err: errorMessage(err) }, 'CNI GC failed');
      return false;
    }
  }
}
