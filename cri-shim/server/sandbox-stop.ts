import { errorMessage } from '../../lib/errors.js';
import { PodSandboxState, type RemovePodSandboxRequest, type RemovePodSandboxResponse, type StopPodSandboxRequest, type StopPodSandboxResponse } from '../../proto/gen/runtime/v1/api.js';
import { removeSnapshot } from '../containerd/snapshots.js';
import { TaskStatus, deleteContainerRecord, deleteTask, getTask, killTask, waitTask } from '../containerd/tasks.js';
import { deleteNetns } from '../../lib/netns.js';
import { existsSync } from 'node:fs';
import type { CriRuntime } from '../runtime.js';
import type { SandboxRecord } from '../store/records.js';
import { removeContainerNow } from './container-remove.js';
import { stopContainerNow } from './container-stop.js';
import { removeSandboxFiles, unmountShm } from './sandbox-files.js';

// StopPodSandbox and RemovePodSandbox. Both are idempotent: an unknown pod is a success, and
// every step checks what is already done (network torn down, task gone, record gone).

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

export async function stopPodSandbox(rt: CriRuntime, req: StopPodSandboxRequest): Promise<StopPodSandboxResponse> {
  const s = rt.sandboxes.find(req.podSandboxId);
  if (!s) {
    rt.log.debug({ sandbox: req.podSandboxId }, 'StopPodSandbox of an unknown pod: nothing to do');
    return {};
  }
  await stopSandbox(rt, s);
  rt.log.info({ sandbox: s.id, pod: s.name }, 'pod sandbox stopped');
  return {};
}

export async function removePodSandbox(rt: CriRuntime, req: RemovePodSandboxRequest): Promise<RemovePodSandboxResponse> {
  const s = rt.sandboxes.find(req.podSandboxId);
  if (!s) return {};
  await stopSandbox(rt, s);
  for (const c of rt.containersOf(s.id)) await removeContainerNow(rt, c);
  await deleteContainerRecord(rt.client, s.id);
  await removeSnapshot(rt.client, s.id, rt.config.snapshotter);
  try {
    await removeSandboxFiles(s.dir);
  } catch (err) {
    rt.log.warn({ sandbox: s.id, err: errorMessage(err) }, 'removing sandbox files');
  }
  rt.sandboxes.delete(s.id);
  rt.log.info({ sandbox: s.id, pod: s.name }, 'pod sandbox removed');
  return {};
}
