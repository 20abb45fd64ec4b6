import { readFileSync } from 'node:fs';

// Linux capabilities of this process (capabilities(7)), for the few operations the kernel gates
// on one that a container or a sandbox may have dropped.

export const Capability = { sysAdmin: 21, sysResource: 24 } as const;

/** Whether `bit` is in this process's effective set. */
export function hasCapability(bit: number): boolean {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'));
  return line ? (BigInt(`0x${line.split(/\s+/)[1]}`) & (1n << BigInt(bit))) !== 0n : false;
}
