import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import { type Process, Status as TaskStatus } from '../../proto/gen/github.com/containerd/containerd/api/types/task/task.js';
import type { Any } from '../../proto/gen/google/protobuf/any.js';
import type { Timestamp } from '../../proto/gen/google/protobuf/timestamp.js';
import { type ContainerdClient, isNotFound } from './client.js';
import { jsonAny, processTypeUrl } from './containers.js';

// containerd's Tasks service: the running processes of containers (init and exec processes).

export { TaskStatus };

export function timestampToNanos(ts: Timestamp | undefined): bigint {
  if (!ts) return 0n;
  return BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos);
}

export interface TaskIO {
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
}

export async function createTask(client: ContainerdClient, id: string, rootfs: Mount[], io: TaskIO, runtimeOptions?: Any): Promise<number> {
  const res = await client.unary<{ pid: number }>('task create', (md, cb) =>
    client.tasks.create(
      { containerId: id, rootfs, stdin: io.stdin ?? '', stdout: io.stdout ?? '', stderr: io.stderr ?? '', terminal: io.terminal ?? false, options: runtimeOptions, runtimePath: '' },
      md,
      cb,
    ),
  );
  return res.pid;
}

export async function startTask(client: ContainerdClient, id: string, execId = ''): Promise<number> {
  const res = await client.unary<{ pid: number }>('task start', (md, cb) => client.tasks.start({ containerId: id, execId }, md, cb));
  return res.pid;
}

export async function getTask(client: ContainerdClient, id: string, execId = ''): Promise<Process | undefined> {
  try {
    const res = await client.unary<{ process?: Process }>('task get', (md, cb) => client.tasks.get({ containerId: id, execId }, md, cb));
    return res.process;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function listTasks(client: ContainerdClient): Promise<Process[]> {
  const res = await client.unary<{ tasks: Process[] }>('task list', (md, cb) => client.tasks.list({ filter: '' }, md, cb));
  return res.tasks;
}

/** Signal a task (or exec); a task that is gone or already stopped is not an error. */
export async function killTask(client: ContainerdClient, id: string, signal: number, options: { execId?: string; all?: boolean } = {}): Promise<void> {
  try {
    await client.unary('task kill', (md, cb) => client.tasks.kill({ containerId: id, execId: options.execId ?? '', signal, all: options.all ?? false }, md, cb));
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
}

export async function waitTask(client: ContainerdClient, id: string, execId = '', deadlineMs?: number): Promise<{ exitStatus: number; exitedAt: bigint }> {
  const res = await client.unary<{ exitStatus: number; exitedAt?: Timestamp }>('task wait', (md, cb) =>
    client.tasks.wait({ containerId: id, execId }, md, deadlineMs ? { deadline: Date.now() + deadlineMs } : {}, cb),
  );
  return { exitStatus: res.exitStatus, exitedAt: timestampToNanos(res.exitedAt) };
}

/** Delete a stopped task; gone already is fine. Returns its exit status when it existed. */
export async function deleteTask(client: ContainerdClient, id: string): Promise<{ exitStatus: number; exitedAt: bigint } | undefined> {
  try {
    const res = await client.unary<{ exitStatus: number; exitedAt?: Timestamp }>('task delete', (md, cb) => client.tasks.delete({ containerId: id }, md, cb));
    return { exitStatus: res.exitStatus, exitedAt: timestampToNanos(res.exitedAt) };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function execProcess(client: ContainerdClient, id: string, execId: string, process: unknown, io: TaskIO): Promise<void> {
  await client.unary('task exec', (md, cb) =>
    client.tasks.exec(
      { containerId: id, execId, stdin: io.stdin ?? '', stdout: io.stdout ?? '', stderr: io.stderr ?? '', terminal: io.terminal ?? false, spec: jsonAny(processTypeUrl, process) },
      md,
      cb,
    ),
  );
}

export async function deleteProcess(client: ContainerdClient, id: string, execId: string): Promise<void> {
  try {
    await client.unary('process delete', (md, cb) => client.tasks.deleteProcess({ containerId: id, execId }, md, cb));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

export async function listPids(client: ContainerdClient, id: string): Promise<number[]> {
  const res = await client.unary<{ processes: { pid: number }[] }>('task pids', (md, cb) => client.tasks.listPids({ containerId: id }, md, cb));
  return res.processes.map((p) => p.pid);
}

export async function updateTaskResources(client: ContainerdClient, id: string, resources: unknown): Promise<void> {
  await client.unary('task update', (md, cb) =>
    client.tasks.update({ containerId: id, resources: jsonAny('types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', resources), annotations: {} }, md, cb),
  );
}

/** Resize the terminal of a task's init process (execId '') or of an exec'd process. */
export async function resizePty(client: ContainerdClient, id: string, execId: string, width: number, height: number): Promise<void> {
  await client.unary('task resize pty', (md, cb) => client.tasks.resizePty({ containerId: id, execId, width, height }, md, cb));
}

/** Close a process's stdin in the shim (the FIFO's writers alone cannot make it see EOF). */
export async function closeStdin(client: ContainerdClient, id: string, execId: string): Promise<void> {
  await client.unary('task close io', (md, cb) => client.tasks.closeIo({ containerId: id, execId, stdin: true }, md, cb));
}
