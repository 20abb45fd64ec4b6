import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../lib/errors.js';
import { ContainerEventType, ContainerState, PodSandboxState } from '../../proto/gen/runtime/v1/api.js';
import { ContainerdError } from '../containerd/client.js';
import { deleteTask, waitTask } from '../containerd/tasks.js';
import { type CriRuntime, nowNanos } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';
import { emitContainerEvent } from './status-builders.js';

// Exit handling: one long-lived Wait per running task. When a container's task exits, its
// output is drained into the log first, then the exit (code, time, reason incl. OOMKilled) is
// recorded in containerd and the task deleted, so a restart finds the same state.

/** How long an exited container's output may keep its FIFOs open (a daemonized child can). */
const drainTimeoutMs = 2000;

async function waitWithRetry(rt: CriRuntime, id: string): Promise<{ exitStatus: number; exitedAt: bigint } | undefined> {
  for (;;) {
    try {
      return await waitTask(rt.client, id);
    } catch (err) {
      if (err instanceof ContainerdError && err.kind === 'not-found') return undefined;
      // containerd restarting: wait for it, then wait on the task again.
      rt.log.warn({ id, err: errorMessage(err) }, 'waiting for task exit failed; retrying');
      await sleep(1000);
    }
  }
}

/** Did the kernel OOM-kill a process of this cgroup? (v1 memory.oom_control, v2 memory.events) */
export function oomKilled(cgroupsPath: string): boolean {
  if (!cgroupsPath || cgroupsPath.includes(':')) return false;
  for (const file of [`/sys/fs/cgroup/memory${cgroupsPath}/memory.oom_control`, `/sys/fs/cgroup${cgroupsPath}/memory.events`]) {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(file, 'utf8'));
      if (m) return Number(m[1]) > 0;
    } catch {
      /* not this cgroup version */
    }
  }
  return false;
}

export function watchContainerExit(rt: CriRuntime, c: ContainerRecord): void {
  c.exited = (async () => {
    const exit = await waitWithRetry(rt, c.id);
    const oom = oomKilled(c.cgroupsPath);
    c.io?.taskExited();
    if (c.io) await Promise.race([c.io.waitClosed(), sleep(drainTimeoutMs)]);
    c.state = ContainerState.CONTAINER_EXITED;
    c.exitCode = exit?.exitStatus ?? 255;
    // Clocks differ by microseconds between containerd and us: never finish before starting.
    const finished = exit?.exitedAt || nowNanos();
    c.finishedAt = finished > c.startedAt ? finished : c.startedAt + 1n;
    c.reason = oom ? 'OOMKilled' : c.exitCode === 0 ? 'Completed' : 'Error';
    c.pid = 0;
    try {
      await deleteTask(rt.client, c.id);
      await rt.persistContainer(c);
    } catch (err) {
      rt.log.warn({ container: c.id, err: errorMessage(err) }, 'recording container exit failed');
    }
    rt.log.info({ container: c.id, exitCode: c.exitCode, reason: c.reason }, 'container exited');
    emitContainerEvent(rt, c, ContainerEventType.CONTAINER_STOPPED_EVENT);
  })().catch((err: unknown) => rt.log.error({ container: c.id, err: errorMessage(err) }, 'exit handling failed'));
}

/** The pause process exiting makes the pod NotReady (kubelet then recreates it). */
export function watchSandboxExit(rt: CriRuntime, s: SandboxRecord): void {
  void (async () => {
    await waitWithRetry(rt, s.id);
    if (rt.sandboxes.find(s.id) !== s) return;
    s.state = PodSandboxState.SANDBOX_NOTREADY;
    s.pid = 0;
    await rt.persistSandbox(s).catch(() => undefined);
    rt.log.info({ sandbox: s.id }, 'pod sandbox pause process exited');
  })().catch((err: unknown) => rt.log.error({ sandbox: s.id, err: errorMessage(err) }, 'sandbox exit handling failed'));
}
