import { readFileSync } from 'node:fs';

// What the benchmarks share: medians and percentiles, RSS, and the per-step timings berth-cri logs at debug level.

/** Medians of the per-step timings berth-cri logs at debug level ("<RPC> steps (ms)"). */
export function printStepMedians(log: string, label = 'berth-cri'): void {
  const byRpc = new Map<string, Map<string, number[]>>();
  for (const line of log.split('\n')) {
    if (!line.includes(' steps (ms)') && !line.includes('"rpc done"')) continue;
    let entry: { msg?: string; steps?: Record<string, number>; rpc?: string; ms?: number };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    // "rpc done" carries the handler's whole time as the server sees it.
    if (entry.rpc && entry.ms !== undefined) entry = { msg: entry.rpc, steps: { handler: entry.ms } };
    if (!entry.msg || !entry.steps) continue;
    const rpc = entry.msg.replace(' steps (ms)', '');
    const steps = byRpc.get(rpc) ?? new Map<string, number[]>();
    byRpc.set(rpc, steps);
    for (const [k, v] of Object.entries(entry.steps)) steps.set(k, [...(steps.get(k) ?? []), v]);
  }
  for (const [rpc, steps] of byRpc) {
    console.log(`${label} ${rpc} step medians (ms): ${[...steps].map(([k, v]) => `${k} ${median(v).toFixed(2)}`).join(', ')}`);
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2 : NaN;
}

/** The p-th percentile (nearest rank); NaN for no samples. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
}

/** A process's resident set, MiB (NaN when it is gone). */
export function rssMiB(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return NaN;
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}


/**
 * The containerd calls berth-cri made per CRI RPC, from its log at level trace: each "containerd
 * call" line counts towards the next "rpc done" (calls an RPC starts after its reply, e.g. a
 * task delete after an exit event, count towards the RPC after it). Prints, per RPC, the median
 * count and the calls of one typical instance.
 */
export function printContainerdCalls(log: string, rpcs: readonly string[], label = 'berth-cri'): void {
  const byRpc = new Map<string, string[][]>();
  let pending: string[] = [];
  for (const line of log.split('\n')) {
    if (!line.includes('"containerd call"') && !line.includes('"rpc done"')) continue;
    let entry: { msg?: string; op?: string; rpc?: string };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (entry.msg === 'containerd call' && entry.op) pending.push(entry.op);
    else if (entry.msg === 'rpc done' && entry.rpc) {
      byRpc.set(entry.rpc, [...(byRpc.get(entry.rpc) ?? []), pending]);
      pending = [];
    }
  }
  for (const rpc of rpcs) {
    const seen = byRpc.get(rpc);
    if (!seen?.length) continue;
    const m = median(seen.map((s) => s.length));
    const typical = seen.find((s) => s.length === Math.round(m)) ?? seen[0]!;
    console.log(`${label} ${rpc}: ${m} containerd calls (median of ${seen.length}): ${typical.join(', ') || 'none'}`);
  }
}
