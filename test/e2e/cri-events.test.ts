import { setTimeout as sleep } from 'node:timers/promises';
import { credentials, type ClientReadableStream } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ContainerEventType, type ContainerEventResponse, RuntimeServiceClient } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// GetContainerEvents: the lifecycle events kubelet's evented PLEG follows.

let world: CriWorld;

describe.skipIf(!isRoot)('berth-cri container events', () => {
  useCriWorld(['busybox'], (w) => (world = w));

  it('streams container events: created, started, stopped, deleted', async () => {
    const client = new RuntimeServiceClient(`unix://${world.cri.socket}`, credentials.createInsecure());
    const events: ContainerEventResponse[] = [];
    const stream: ClientReadableStream<ContainerEventResponse> = client.getContainerEvents({});
    stream.on('data', (e: ContainerEventResponse) => events.push(e));
    stream.on('error', () => undefined);
    try {
      await sleep(200);
      const c = await startContainer(world, containerConfig('c', world.image('busybox'), { command: ['sleep', '3600'] }));
      await world.runtime.stopContainer({ containerId: c.id, timeout: 0n });
      await world.runtime.removeContainer({ containerId: c.id });
      await sleep(200);
      const mine = events.filter((e) => e.containerId === c.id).map((e) => e.containerEventType);
      expect(mine).toEqual([
        ContainerEventType.CONTAINER_CREATED_EVENT,
        ContainerEventType.CONTAINER_STARTED_EVENT,
        ContainerEventType.CONTAINER_STOPPED_EVENT,
        ContainerEventType.CONTAINER_DELETED_EVENT,
      ]);
    } finally {
      stream.cancel();
      client.close();
    }
  });
});
