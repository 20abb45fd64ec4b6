import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../lib/errors.js';
import { deleteNetns } from '../../lib/netns.js';
import { stepTimer } from '../../lib/steps.js';
import { ContainerEventType, ContainerState, PodSandboxState } from '../../proto/gen/runtime/v1/api.js';
import { deleteContainerRecord } from '../containerd/containers.js';
import { removeSnapshot } from '../containerd/snapshots.js';
import { deleteTask, getTask, killTask, TaskStatus, waitTask } from '../containerd/tasks.js';
import { ContainerIO } from '../io/container-io.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';
import { afterReply } from './after-reply.js';
import { unmountImageVolumes } from './image-volumes.js';
import { ioDir } from './io-wiring.js';
import { clearRemoved, markRemoved } from './removed.js';
import { unmountShm } from './sandbox-files.js';
import { idmapStageDir, unstageIdmapMounts } from './userns.js';
import { emitContainerEvent } from './status-builders.js';

// Stopping and removing containers and pods, shared by the RPCs that do it (StopContainer,
// RemoveContainer, StopPodSandbox, RemovePodSandbox). Each step checks what is already done, so
// all of them are idempotent.

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

export async function removeContainerNow(rt: CriRuntime, c: ContainerRecord): Promise<void> {
  const { steps, lap } = stepTimer();
  await stopContainerNow(rt, c, 0);
  lap('stop');
  // An exited container's task was deleted when its exit was recorded; a created one has none.
  if (c.state !== ContainerState.CONTAINER_EXITED && c.state !== ContainerState.CONTAINER_CREATED) await deleteTask(rt.client, c.id);
  // Marked removed, the container is gone for kubelet; its containerd record is deleted after
  // the reply (removed.ts says why that survives a kill -9).
  markRemoved(rt, c.id);
  lap('marked');
  // A user-namespaced container's staged idmapped mounts (its rootfs and volumes).
  const sandboxDir = rt.sandboxes.find(c.sandboxId)?.dir;
  const stageDir = sandboxDir ? idmapStageDir(sandboxDir, c.id) : '';
  if (stageDir && existsSync(stageDir)) unstageIdmapMounts(stageDir);
  // Read-only copies of recursive read-only volumes: the container's own mounts were cloned from
  // them when its task was created, so nothing needs them any more.
  try {
    rt.recursiveReadOnly.remove(c.id);
  } catch (err) {
    rt.log.warn({ container: c.id, err: errorMessage(err) }, 'removing staged recursive read-only mounts; the next start retries');
  }
  // The reply waits for nothing else. After it the record goes, then the rootfs snapshot:
  // nothing references it once the record is gone (its lease ended at create), so containerd's
  // garbage collector takes it even if this removal never runs; FIFOs left by a crash are
  // removed at the next start.
  const io = c.io ?? new ContainerIO({ id: c.id, dir: ioDir(rt), stdin: c.config.stdin, tty: c.config.tty });
  c.io = undefined;
  // Image volumes come off the host before the reply (a few umount2 calls); their views, like
  // the rootfs, are removed after it (the record that kept them is gone: GC takes them anyway).
  try {
    unmountImageVolumes(rt, c.id);
  } catch (err) {
    rt.log.warn({ container: c.id, err: errorMessage(err) }, 'unmounting image volumes; the next start-up retries');
  }
  // Begun after the reply is out.
  afterReply(() => void finishRemoval(rt, c.id).then(() => Promise.allSettled([
    removeSnapshot(rt.client, c.id, rt.config.snapshotter).catch((err: unknown) =>
      rt.log.warn({ container: c.id, err: errorMessage(err) }, 'removing the container rootfs snapshot; containerd will collect it'),
    ),
    ...(c.imageVolumes ?? []).map((v) =>
      removeSnapshot(rt.client, v.key, rt.config.snapshotter).catch((err: unknown) =>
        rt.log.warn({ container: c.id, snapshot: v.key, err: errorMessage(err) }, 'removing an image volume view; containerd will collect it'),
      ),
    ),
    io.close().catch((err: unknown) => rt.log.warn({ container: c.id, err: errorMessage(err) }, 'removing container FIFOs')),
  ])));
  rt.forgetContainer(c.id);
  emitContainerEvent(rt, c, ContainerEventType.CONTAINER_DELETED_EVENT);
  rt.log.debug({ container: c.id, steps }, 'RemoveContainer steps (ms)');
  rt.log.info({ container: c.id }, 'container removed');
}

/**
 * Delete the containerd record of a container marked removed, then the mark. A failure leaves
 * both for the next start (logged); it never rejects.
 */
export async function finishRemoval(rt: CriRuntime, id: string): Promise<void> {
  try {
    await deleteContainerRecord(rt.client, id);
    clearRemoved(rt, id);
  } catch (err) {
    rt.log.warn({ container: id, err: errorMessage(err) }, 'deleting the containerd record of a removed container; the next start retries');
  }
}

/**
 * The pod's netns for CNI DEL: the pinned one while it exists. (Never a /proc/<pid> path: the
 * PID of a dead pause may belong to another process by now.)
 */
function pinnedNetns(s: SandboxRecord): string {
  return s.netnsPath && !s.netnsPath.startsWith('/proc/') && existsSync(s.netnsPath) ? s.netnsPath : '';
}

export async function stopSandbox(rt: CriRuntime, s: SandboxRecord): Promise<void> {
  // Containers first, forcibly, as the CRI asks.
  await Promise.all(rt.containersOf(s.id).map((c) => stopContainerNow(rt, c, 0)));
  // Network down and pause killed at once: the namespace is pinned, so DEL does not need the pause.
  const network = async (): Promise<void> => {
    if (s.networkDown) return;
    await rt.network.tearDown({ sandboxId: s.id, netnsPath: pinnedNetns(s), config: s.config, cgroupParent: s.config.linux?.cgroupParent });
    s.networkDown = true;
    s.ips = [];
  };
  const pause = async (): Promise<void> => {
    const task = await getTask(rt.client, s.id);
    if (task && task.status !== TaskStatus.STOPPED) {
      const exited = waitTask(rt.client, s.id).catch(() => undefined);
      await killTask(rt.client, s.id, 9, { all: true });
      await exited;
    }
  };
  const [net, killed] = await Promise.allSettled([network(), pause()]);
  if (net.status === 'rejected') throw net.reason;
  if (killed.status === 'rejected') throw killed.reason;
  await deleteTask(rt.client, s.id);
  await unmountShm(s.dir);
  // The namespace goes once nothing runs in it and the network is down (containerd does the same).
  if (s.networkDown && s.netnsPath && !s.netnsPath.startsWith('/proc/')) deleteNetns(s.netnsPath);
  s.state = PodSandboxState.SANDBOX_NOTREADY;
  s.pid = 0;
  await rt.persistSandbox(s);
}
