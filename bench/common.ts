// What the benchmarks share: medians, and the per-step timings berth-cri logs at debug level.

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

