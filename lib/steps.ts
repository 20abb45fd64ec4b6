// Step timings for the slow paths of a request: each lap records the time since the previous
// one, and the whole record goes to a debug log line, so an operator can see where a slow pod
// start or container create spent its time without a profiler.

export interface StepTimer {
  /** Milliseconds per named step, in the order the steps ran. */
  readonly steps: Record<string, number>;
  lap(name: string): void;
}

export function stepTimer(): StepTimer {
  const steps: Record<string, number> = {};
  let mark = process.hrtime.bigint();
  return {
    steps,
    lap(name: string): void {
      const now = process.hrtime.bigint();
      steps[name] = Math.round(Number(now - mark) / 1e4) / 100;
      mark = now;
    },
  };
}
