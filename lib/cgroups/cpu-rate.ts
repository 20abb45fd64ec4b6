// CRI's usage_nano_cores is a rate (CPU nanoseconds per wall-clock second), but a cgroup only
// keeps a cumulative counter. The rate is the slope between the previous sample and this one,
// per container or sandbox key, as containerd computes it.

interface Sample {
  usageCoreNanoSeconds: bigint;
  timestampNs: bigint;
  nanoCores?: bigint;
}

export class CpuRateTracker {
  private readonly samples = new Map<string, Sample>();

  /**
   * Record a sample and return the rate since the previous one for `key`: undefined for the first
   * sample, and after the counter went backwards (the cgroup was recreated). A sample no newer
   * than the previous one changes nothing and returns the last rate.
   */
  update(key: string, usageCoreNanoSeconds: bigint, timestampNs: bigint): bigint | undefined {
    const last = this.samples.get(key);
    if (last && timestampNs <= last.timestampNs) return last.nanoCores;
    const next: Sample = { usageCoreNanoSeconds, timestampNs };
    if (last && usageCoreNanoSeconds >= last.usageCoreNanoSeconds) {
      next.nanoCores = ((usageCoreNanoSeconds - last.usageCoreNanoSeconds) * 1_000_000_000n) / (timestampNs - last.timestampNs);
    }
    this.samples.set(key, next);
    return next.nanoCores;
  }

  /** The last computed rate for `key`, without taking a sample. */
  get(key: string): bigint | undefined {
    return this.samples.get(key)?.nanoCores;
  }

  /** Forget a key (its container or sandbox was removed). */
  delete(key: string): boolean {
    return this.samples.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.samples.keys();
  }

  get size(): number {
    return this.samples.size;
  }
}
