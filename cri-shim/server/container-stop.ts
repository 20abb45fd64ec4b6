import { setTimeout as sleep } from 'node:timers/promises';
import { ContainerState, type StopContainerRequest, type StopContainerResponse } from '../../proto/gen/runtime/v1/api.js';
import { killTask } from '../containerd/tasks.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';

// StopContainer: the image's stop signal, then SIGKILL once the timeout passes. Returns after
// the exit is recorded (state EXITED, log drained). Stopping a stopped container is a no-op.

const SIGKILL = 9;

export async function stopContainerNow(rt: CriRuntime, c: ContainerRecord, timeoutSeconds: number): Promise<void> {
  if (c.state !== ContainerState.CONTAINER_RUNNING || !c.exited) return;
  const exited = c.exited.then(() => true);
  if (timeoutSeconds > 0) {
    await killTask(rt.client, c.id, c.stopSignal);
    const inTime = await Promise.race([exited, sleep(timeoutSeconds * 1000).then(() => false)]);
    if (inTime) return;
    rt.log.info({ container: c.id, timeoutSeconds }, 'container ignored its stop signal; killing it');
  }
  // all: also the processes a container left behind in its cgroup (e.g. exec'd shells).
  await killTask(rt.client, c.id, SIGKILL, { all: true });
  await c.exited;
}

export async function stopContainer(rt: CriRuntime, req: StopContainerRequest): Promise<StopContainerResponse> {
  const c = rt.container(req.containerId);
  await stopContainerNow(rt, c, Number(req.timeout));
  return {};
}
