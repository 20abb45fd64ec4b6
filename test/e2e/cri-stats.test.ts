import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// ContainerStats, ListContainerStats and PodSandboxStats of a busy container, as kubelet's
// stats loop reads them.

let world: CriWorld;

describe.skipIf(!isRoot)('berth-cri stats', () => {
  useCriWorld(['busybox'], (w) => (world = w));

  it('reports CPU and memory stats for containers and pods', async () => {
    const c = await startContainer(world, containerConfig('c', world.image('busybox'), { command: ['sh', '-c', 'x=0; while :; do x=$((x+1)); done'] }));
    await sleep(500);
    const first = await world.runtime.containerStats({ containerId: c.id });
    await sleep(500);
    const { stats } = await world.runtime.containerStats({ containerId: c.id });
    expect(stats?.cpu?.usageCoreNanoSeconds?.value).toBeGreaterThan(first.stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n);
    expect(stats?.cpu?.usageNanoCores?.value).toBeGreaterThan(100_000_000n);
    expect(stats?.memory?.workingSetBytes?.value).toBeGreaterThan(0n);
    const list = await world.runtime.listContainerStats({ filter: { id: '', podSandboxId: c.podId, labelSelector: {} } });
    expect(list.stats.map((s) => s.attributes?.id)).toEqual([c.id]);
    const pod = await world.runtime.podSandboxStats({ podSandboxId: c.podId });
    expect(pod.stats?.linux?.containers.map((s) => s.attributes?.id)).toEqual([c.id]);
    // The pod's own eth0, not the host's: a ping from the host shows up in its counters.
    const eth0 = pod.stats?.linux?.network?.defaultInterface;
    expect(eth0?.name).toBe('eth0');
    const { status } = await world.runtime.podSandboxStatus({ podSandboxId: c.podId, verbose: false });
    execFileSync('ping', ['-c', '3', '-i', '0.2', '-s', '1000', status!.network!.ip]);
    const after = (await world.runtime.podSandboxStats({ podSandboxId: c.podId })).stats?.linux?.network?.defaultInterface;
    expect(after!.rxBytes!.value - eth0!.rxBytes!.value).toBeGreaterThanOrEqual(3000n);
    expect(after!.txBytes!.value - eth0!.txBytes!.value).toBeGreaterThanOrEqual(3000n);
    expect(pod.stats?.linux?.network?.interfaces.map((i) => i.name)).toEqual(['eth0']);
  });
});
