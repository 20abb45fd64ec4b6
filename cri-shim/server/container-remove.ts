import { errorMessage } from '../../lib/errors.js';
import { stepTimer } from '../../lib/steps.js';
import { ContainerEventType, ContainerState, type RemoveContainerRequest, type RemoveContainerResponse } from '../../proto/gen/runtime/v1/api.js';
import { removeSnapshot } from '../containerd/snapshots.js';
import { deleteContainerRecord, deleteTask } from '../containerd/tasks.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';
import { emitContainerEvent } from './status-builders.js';
import { stopContainerNow } from './container-stop.js';
import { ContainerIO } from '../io/container-io.js';
import { ioDir } from './container-start.js';

// RemoveContainer: a running container is killed first (the CRI says forcibly); then its task,
// record, rootfs snapshot and FIFOs go. The log file stays: kubelet owns the log directory.
// Removing an unknown container succeeds.

export async function removeContainerNow(rt: CriRuntime, c: ContainerRecord): Promise<void> {
  const { steps, lap } = stepTimer();
  await stopContainerNow(rt, c, 0);
  lap('stop');
  // An exited container's task was deleted when its exit was recorded; a created one has none.
  if (c.state !== ContainerState.CONTAINER_EXITED && c.state !== ContainerState.CONTAINER_CREATED) await deleteTask(rt.client, c.id);
  await deleteContainerRecord(rt.client, c.id);
  lap('containerd');
  // The reply waits for nothing else. Nothing references the rootfs snapshot once the record
  // is gone (its lease ended at create), so containerd's garbage collector takes it even if
  // this removal never runs; FIFOs left by a crash are removed at the next start.
  const io = c.io ?? new ContainerIO({ id: c.id, dir: ioDir(rt), stdin: c.config.stdin, tty: c.config.tty });
  c.io = undefined;
  void Promise.allSettled([
    removeSnapshot(rt.client, c.id, rt.config.snapshotter).catch((err: unknown) =>
      rt.log.warn({ container: c.id, err: errorMessage(err) }, 'removing the container rootfs snapshot; containerd will collect it'),
    ),
    io.close().catch((err: unknown) => rt.log.warn({ container: c.id, err: errorMessage(err) }, 'removing container FIFOs')),
  ]);
  rt.containers.delete(c.id);
  emitContainerEvent(rt, c, ContainerEventType.CONTAINER_DELETED_EVENT);
  rt.log.debug({ container: c.id, steps }, 'RemoveContainer steps (ms)');
  rt.log.info({ container: c.id }, 'container removed');
}

export async function removeContainer(rt: CriRuntime, req: RemoveContainerRequest): Promise<RemoveContainerResponse> {
  const c = rt.containers.find(req.containerId);
  if (c) await removeContainerNow(rt, c);
  return {};
}
