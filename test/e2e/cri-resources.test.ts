import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ContainerState, type ContainerConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// A container's resources: UpdateContainerResources changes the limits of a running one, and a
// memory limit that kills one is reported as OOMKilled.

let world: CriWorld;

function container(command: string[], extra: Partial<ContainerConfig> = {}): ContainerConfig {
  return containerConfig('main', world.image('busybox'), { command, ...extra });
}

const start = (config: ContainerConfig): Promise<{ id: string; podId: string }> => startContainer(world, config);

async function exited(id: string): Promise<{ exitCode: number; reason: string }> {
  for (let i = 0; i < 100; i++) {
    const { status } = await world.runtime.containerStatus({ containerId: id, verbose: false });
    if (status?.state === ContainerState.CONTAINER_EXITED) return { exitCode: status.exitCode, reason: status.reason };
    await sleep(100);
  }
  throw new Error(`container ${id} did not exit`);
}

const resources = { cpuPeriod: 0n, cpuQuota: 0n, cpuShares: 0n, memoryLimitInBytes: 0n, oomScoreAdj: 0n, cpusetCpus: '', cpusetMems: '', hugepageLimits: [], unified: {}, memorySwapLimitInBytes: 0n };

describe.skipIf(!isRoot)('berth-cri container resources', () => {
  useCriWorld(['busybox'], (w) => (world = w));

  it('UpdateContainerResources changes the limits of a running container', async () => {
    const c = await start(container(['sleep', '3600']));
    await world.runtime.updateContainerResources({ containerId: c.id, linux: { ...resources, memoryLimitInBytes: 64n * 1024n * 1024n, cpuShares: 512n }, windows: undefined, annotations: {} });
    const r = await world.runtime.execSync({ containerId: c.id, cmd: ['sh', '-c', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'], timeout: 5n });
    expect(r.stdout.toString().trim()).toBe(String(64 * 1024 * 1024));
    const { status } = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
    expect(status?.resources?.linux?.memoryLimitInBytes).toBe(64n * 1024n * 1024n);
  });

  it('reports OOMKilled when the memory limit kills the container', async () => {
    const c = await start(
      container(['sh', '-c', 'x=a; while true; do x="$x$x"; done'], { linux: { resources: { ...resources, memoryLimitInBytes: 16n * 1024n * 1024n }, securityContext: undefined } }),
    );
    const result = await exited(c.id);
    expect(result.reason).toBe('OOMKilled');
    expect(result.exitCode).toBe(137);
  });
});
