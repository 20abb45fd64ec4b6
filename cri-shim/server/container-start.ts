import { BerthError, errorMessage } from '../../lib/errors.js';
import { stepTimer } from '../../lib/steps.js';
import { ContainerEventType, ContainerState, type StartContainerRequest, type StartContainerResponse } from '../../proto/gen/runtime/v1/api.js';
import { snapshotMounts } from '../containerd/snapshots.js';
import { createTask, deleteTask, killTask, startTask } from '../containerd/tasks.js';
import { podUserns } from '../oci/userns.js';
import { containerIO } from '../pod/io-wiring.js';
import { emitContainerEvent } from '../pod/status-builders.js';
import { watchContainerExit } from '../pod/task-exit.js';
import { type CriRuntime, nowNanos } from '../runtime.js';

// StartContainer: the runc task on the prepared rootfs with the stdio FIFOs CreateContainer
// opened (read into the CRI log), then start. A failed start leaves the container EXITED with
// the reason, as kubelet expects, and nothing running.

export async function startContainer(rt: CriRuntime, req: StartContainerRequest): Promise<StartContainerResponse> {
  const c = rt.container(req.containerId);
  if (c.state !== ContainerState.CONTAINER_CREATED) {
    throw new BerthError('failed-precondition', `container_id: container ${c.id} is ${ContainerState[c.state]}, not CONTAINER_CREATED`);
  }
  const s = rt.sandbox(c.sandboxId);
  if (s.pid === 0) throw new BerthError('failed-precondition', `container ${c.id}: its pod sandbox ${s.id} is not running`);
  const { client } = rt;
  // CreateContainer opened the I/O; after a restart in between, it is opened here.
  const io = c.io ?? containerIO(rt, c);
  const { steps, lap } = stepTimer();
  try {
    if (!c.io) await io.create();
    lap('io');
    // A user-namespaced container's rootfs was staged at create; runc finds it through root.path.
    const staged = podUserns(s.config.linux?.securityContext?.namespaceOptions, 'pod sandbox config.linux.security_context') !== undefined;
    const rootfs = staged ? [] : (c.rootfs ?? (await snapshotMounts(client, c.id, rt.config.snapshotter)));
    c.pid = await createTask(client, c.id, rootfs, { ...io.fifos, terminal: c.config.tty });
    lap('task');
    c.io = io;
    const startedAt = nowNanos();
    await startTask(client, c.id);
    c.startedAt = startedAt;
    lap('start');
  } catch (err) {
    // kubelet reads the failure from ContainerStatus: EXITED with the runtime's message.
    await killTask(client, c.id, 9, { all: true }).catch(() => undefined);
    await deleteTask(client, c.id).catch(() => undefined);
    await io.close().catch(() => undefined);
    c.io = undefined;
    c.state = ContainerState.CONTAINER_EXITED;
    c.exitCode = 128;
    c.finishedAt = nowNanos();
    c.reason = 'StartError';
    c.message = errorMessage(err);
    await rt.persistContainer(c).catch(() => undefined);
    throw err;
  }
  c.state = ContainerState.CONTAINER_RUNNING;
  // Waiting on a task that already exited returns at once, so no exit is missed here.
  watchContainerExit(rt, c);
  // Not awaited: writes of one record are ordered, and a restart that finds a task for a record
  // still saying CREATED takes the task's word for it (recover.ts).
  rt.persistContainer(c).catch((err: unknown) => rt.log.warn({ container: c.id, err: errorMessage(err) }, 'recording the container start'));
  emitContainerEvent(rt, c, ContainerEventType.CONTAINER_STARTED_EVENT);
  rt.log.debug({ container: c.id, steps }, 'StartContainer steps (ms)');
  rt.log.info({ container: c.id, pid: c.pid }, 'container started');
  return {};
}
