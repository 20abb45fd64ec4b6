import { readFileSync, renameSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { ContainerConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// Container logs once kubelet rotates them: ReopenContainerLog.

let world: CriWorld;

function container(command: string[]): ContainerConfig {
  return containerConfig('main', world.image('busybox'), { command });
}

const start = (config: ContainerConfig): Promise<{ id: string; podId: string }> => startContainer(world, config);

describe.skipIf(!isRoot)('berth-cri container logs', () => {
  useCriWorld(['busybox'], (w) => (world = w));

  it('ReopenContainerLog continues in a new file after kubelet renamed the old one', async () => {
    const c = await start(container(['sh', '-c', 'i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done']));
    const { status } = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
    await sleep(500);
    renameSync(status!.logPath, `${status!.logPath}.1`);
    await world.runtime.reopenContainerLog({ containerId: c.id });
    await sleep(500);
    await world.runtime.stopContainer({ containerId: c.id, timeout: 0n });
    const numbers = (file: string) => readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => Number(l.split(' ').at(-1)));
    const rotated = numbers(`${status!.logPath}.1`);
    const current = numbers(status!.logPath);
    expect(current.length).toBeGreaterThan(0);
    expect([...rotated, ...current]).toEqual([...rotated, ...current].map((_, i) => i + 1));
    await expect(world.runtime.reopenContainerLog({ containerId: c.id })).rejects.toMatchObject({ code: grpcStatus.FAILED_PRECONDITION });
  });
});
