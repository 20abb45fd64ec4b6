import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// The list stats RPCs as kubelet's stats loop calls them, answered from one pass over the
// cgroups and a cache of the writable layers' usage: each pod and container still gets its own
// numbers, a container's new writes show up once containerd's usage is refreshed, and a removed
// container leaves the lists.

let world: CriWorld;

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await sleep(100);
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe.skipIf(!isRoot)('berth-cri list stats', () => {
  useCriWorld(['busybox'], (w) => (world = w));

  it('gives each pod and container its own numbers from one pass', async () => {
    // One container holds ~24 MiB in a tmpfs (counted as its memory), the other sleeps.
    const big = await startContainer(world, containerConfig('big', world.image('busybox'), { command: ['sh', '-c', 'mkdir -p /dev/shm/x; head -c 25165824 /dev/zero > /dev/shm/x/f; sleep 3600'] }));
    const small = await startContainer(world, containerConfig('small', world.image('busybox'), { command: ['sleep', '3600'] }));
    const memoryOf = async (id: string) => (await world.runtime.containerStats({ containerId: id })).stats?.memory?.usageBytes?.value ?? 0n;
    await until('the big container to fill its tmpfs', async () => ((await memoryOf(big.id)) > 20n << 20n ? true : undefined));

    const { stats } = await world.runtime.listContainerStats({ filter: undefined });
    const byId = new Map(stats.map((s) => [s.attributes!.id, s]));
    expect([...byId.keys()].sort()).toEqual([big.id, small.id].sort());
    expect(byId.get(big.id)!.memory!.usageBytes!.value).toBeGreaterThan(20n << 20n);
    expect(byId.get(small.id)!.memory!.usageBytes!.value).toBeLessThan(20n << 20n);
    expect(byId.get(small.id)!.cpu!.usageCoreNanoSeconds!.value).toBeGreaterThan(0n);

    const pods = (await world.runtime.listPodSandboxStats({ filter: undefined })).stats;
    const podById = new Map(pods.map((p) => [p.attributes!.id, p]));
    expect([...podById.keys()].sort()).toEqual([big.podId, small.podId].sort());
    const bigPod = podById.get(big.podId)!.linux!;
    expect(bigPod.containers.map((c) => c.attributes!.id)).toEqual([big.id]);
    expect(bigPod.containers[0]!.memory!.usageBytes!.value).toBeGreaterThan(20n << 20n);
    expect(podById.get(small.podId)!.linux!.containers.map((c) => c.attributes!.id)).toEqual([small.id]);
    expect(podById.get(small.podId)!.linux!.containers[0]!.memory!.usageBytes!.value).toBeLessThan(20n << 20n);
    expect(bigPod.process?.processCount?.value).toBeGreaterThan(0n);

    // A filter picks one pod, with only its container.
    const one = await world.runtime.listPodSandboxStats({ filter: { id: small.podId, labelSelector: {} } });
    expect(one.stats.map((p) => p.attributes!.id)).toEqual([small.podId]);

    // Removed, a container leaves both lists at once.
    await world.runtime.stopContainer({ containerId: big.id, timeout: 0n });
    await world.runtime.removeContainer({ containerId: big.id });
    expect((await world.runtime.listContainerStats({ filter: undefined })).stats.map((s) => s.attributes!.id)).toEqual([small.id]);
    const after = await world.runtime.listPodSandboxStats({ filter: undefined });
    expect(after.stats.find((p) => p.attributes!.id === big.podId)!.linux!.containers).toEqual([]);
  }, 60_000);

  it("reports a container's writes to its writable layer once containerd's usage is refreshed", async () => {
    const c = await startContainer(world, containerConfig('writer', world.image('busybox'), { command: ['sh', '-c', 'head -c 4194304 /dev/zero > /big; sleep 3600'] }));
    // The first answer waits (boundedly) for containerd; later ones come from the cache, which
    // is refreshed when found old, so the 4 MiB show up after a while without any call waiting.
    const used = await until('the written file in the layer usage', async () => {
      const { stats } = await world.runtime.listContainerStats({ filter: { id: c.id, podSandboxId: '', labelSelector: {} } });
      const v = stats[0]?.writableLayer?.usedBytes?.value ?? 0n;
      return v >= 4n << 20n ? v : undefined;
    });
    expect(used).toBeGreaterThanOrEqual(4n << 20n);
  }, 60_000);
});
