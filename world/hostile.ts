import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

// What every hostile-client test asks of the daemon under attack, measured while the attack
// runs: the process stays alive, its memory stays bounded, and an unrelated call on its main
// socket keeps answering quickly (the event loop is not frozen by the attacker).

/** Resident memory of a process, in bytes (VmRSS). */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface AttackReport {
  /** Peak RSS during the attack minus RSS before it, in MiB. */
  rssGrowthMiB: number;
  /** The slowest answer of the probe call while the attack ran, in ms. */
  slowestProbeMs: number;
  /** Probe calls that failed outright (not counting the one still in flight at the end). */
  failedProbes: number;
  probes: number;
  alive: boolean;
}

export interface AttackOptions {
  /** The daemon's pid. */
  pid: number;
  /** A cheap call on the daemon's own socket (e.g. CRI Version). */
  probe: () => Promise<unknown>;
  /** Keep probing this long after the attack returned (for effects that come late). */
  settleMs?: number;
}

/**
 * Run `attack` while sampling the daemon's RSS every 50 ms and timing `probe` back to back. The
 * report says what a test then asserts with expectSurvived.
 */
export async function underAttack(options: AttackOptions, attack: () => Promise<void>): Promise<AttackReport> {
  const { pid, probe, settleMs = 300 } = options;
  const before = rssOf(pid);
  let peak = before;
  let slowest = 0;
  let probes = 0;
  let failed = 0;
  let done = false;
  const sampler = (async () => {
    while (!done && isAlive(pid)) {
      peak = Math.max(peak, rssOf(pid));
      await sleep(50);
    }
  })();
  const prober = (async () => {
    while (!done) {
      const t0 = performance.now();
      try {
        await probe();
      } catch {
        failed += 1;
      }
      slowest = Math.max(slowest, performance.now() - t0);
      probes += 1;
      await sleep(20);
    }
  })();
  try {
    await attack();
    await sleep(settleMs);
  } finally {
    done = true;
    await Promise.all([sampler, prober]);
  }
  return { rssGrowthMiB: (peak - before) / (1024 * 1024), slowestProbeMs: slowest, failedProbes: failed, probes, alive: isAlive(pid) };
}
