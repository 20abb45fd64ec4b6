import { pipeline, type Readable, Transform } from 'node:stream';
import { BerthError } from '../../lib/errors.js';

// A pull's progress watchdog (imagePullProgressTimeout, as containerd's
// image_pull_progress_timeout): while at least one registry transfer is open, every chunk that
// arrives resets the clock; when nothing has arrived for the timeout, every open transfer is
// destroyed with one error, so the pull fails (its lease then releases what it wrote). Time
// spent with no transfer open (unpacking, containerd calls) never counts: it is not the
// registry's to make progress then.

export class PullProgressWatch {
  private lastProgress = Date.now();
  /** How to cancel each open transfer. */
  private readonly open = new Set<(err: BerthError) => void>();
  private timer?: NodeJS.Timeout;
  private stalled?: BerthError;

  constructor(
    private readonly timeoutMs: number,
    private readonly what: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The error the pull failed with, once it stalled. */
  get error(): BerthError | undefined {
    return this.stalled;
  }

  /**
   * Watch a registry transfer (a blob body) until it ends: the stream returned passes its bytes
   * on, each chunk counting as progress; a stall destroys both. (A 'data' listener on the
   * source would set it flowing before its consumer is attached.)
   */
  track(source: Readable): Readable {
    if (this.timeoutMs <= 0) return source;
    const counted = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.lastProgress = this.now();
        done(null, chunk);
      },
    });
    pipeline(source, counted, () => undefined);
    if (this.stalled) {
      counted.destroy(this.stalled);
      return counted;
    }
    const cancel = (err: BerthError): void => void counted.destroy(err);
    this.opened(cancel);
    counted.once('close', () => this.closed(cancel));
    return counted;
  }

  /**
   * Run a step that opens a transfer (a request awaiting its answer): a registry that never
   * answers is a stall too. The step's result is returned; a stall rejects at once.
   */
  async guard<T>(step: () => Promise<T>): Promise<T> {
    if (this.timeoutMs <= 0) return step();
    if (this.stalled) throw this.stalled;
    let cancel!: (err: BerthError) => void;
    const stall = new Promise<never>((_, reject) => (cancel = reject));
    this.opened(cancel);
    try {
      return await Promise.race([step(), stall]);
    } finally {
      this.closed(cancel);
    }
  }

  private opened(cancel: (err: BerthError) => void): void {
    // The clock starts when the first transfer opens: idle time before it is no stall.
    if (this.open.size === 0) this.lastProgress = this.now();
    this.open.add(cancel);
    this.startTimer();
  }

  private closed(cancel: (err: BerthError) => void): void {
    this.open.delete(cancel);
    if (this.open.size === 0) this.stopTimer();
  }

  /** Check for a stall now (the timer calls this; tests may too). */
  check(): void {
    if (this.stalled || this.open.size === 0) return;
    if (this.now() - this.lastProgress < this.timeoutMs) return;
    this.stalled = new BerthError(
      'deadline-exceeded',
      `${this.what}: no data from the registry for ${formatDuration(this.timeoutMs)} (imagePullProgressTimeout); pull cancelled`,
    );
    this.stopTimer();
    for (const cancel of [...this.open]) cancel(this.stalled);
    this.open.clear();
  }

  private startTimer(): void {
    if (this.timer) return;
    // A few checks per timeout: a stall is noticed within a quarter of it (at most a second late).
    const every = Math.max(25, Math.min(1000, Math.floor(this.timeoutMs / 4)));
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stop watching (the pull ended). */
  stop(): void {
    this.stopTimer();
    this.open.clear();
  }
}

/** 300000 → "5m", 2500 → "2.5s", 250 → "250ms". */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}
