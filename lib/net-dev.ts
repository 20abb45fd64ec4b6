// /proc/<pid>/net/dev: the counters of every interface in that process's network namespace,
// one line each after two header lines: "name: " then 8 receive and 8 transmit fields (bytes
// packets errs drop fifo frame compressed multicast | bytes packets errs drop fifo colls carrier
// compressed).

export interface NetDevCounters {
  name: string;
  rxBytes: bigint;
  rxPackets: bigint;
  rxErrors: bigint;
  rxDropped: bigint;
  txBytes: bigint;
  txPackets: bigint;
  txErrors: bigint;
  txDropped: bigint;
}

export function parseNetDevCounters(text: string): NetDevCounters[] {
  const out: NetDevCounters[] = [];
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const f = line.slice(colon + 1).trim().split(/\s+/);
    // The header lines have no colon; anything else short or not numeric is not an interface.
    if (f.length < 16 || !f.every((v) => /^\d+$/.test(v))) continue;
    out.push({
      name: line.slice(0, colon).trim(),
      rxBytes: BigInt(f[0]!),
      rxPackets: BigInt(f[1]!),
      rxErrors: BigInt(f[2]!),
      rxDropped: BigInt(f[3]!),
      txBytes: BigInt(f[8]!),
      txPackets: BigInt(f[9]!),
      txErrors: BigInt(f[10]!),
      txDropped: BigInt(f[11]!),
    });
  }
  return out;
}
