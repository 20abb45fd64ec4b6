import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../cri-shim/config.js';
import type { ContainerdClient } from '../../../cri-shim/containerd/client.js';
import { CriRuntime } from '../../../cri-shim/runtime.js';
import type { ContainerRecord, SandboxRecord } from '../../../cri-shim/store/records.js';

// The runtime object holds all of berth-cri's in-memory state: what a removed container or pod
// leaves behind there grows with every pod a node has ever run.

function runtime(): CriRuntime {
  // No call reaches containerd here: the client is never used.
  return new CriRuntime(parseConfig({}), {} as ContainerdClient, pino({ level: 'silent' }));
}

describe('CriRuntime', () => {
  it('forgets a removed container: its record and its CPU-rate sample', () => {
    const rt = runtime();
    rt.containers.add({ id: 'c1' } as ContainerRecord);
    rt.containers.add({ id: 'c2' } as ContainerRecord);
    rt.cpuRates.containers.update('c1', 1_000n, 1n);
    rt.cpuRates.containers.update('c2', 1_000n, 1n);
    rt.forgetContainer('c1');
    expect(rt.containers.find('c1')).toBeUndefined();
    expect([...rt.cpuRates.containers.keys()]).toEqual(['c2']);
  });

  it('forgets a removed pod: its record and its CPU-rate sample', () => {
    const rt = runtime();
    rt.sandboxes.add({ id: 'p1' } as SandboxRecord);
    rt.cpuRates.sandboxes.update('p1', 1_000n, 1n);
    rt.cpuRates.containers.update('p1', 1_000n, 1n);
    rt.forgetSandbox('p1');
    expect(rt.sandboxes.find('p1')).toBeUndefined();
    expect(rt.cpuRates.sandboxes.size).toBe(0);
    // A container's sample under the same ID is not the pod's.
    expect(rt.cpuRates.containers.size).toBe(1);
  });
});
