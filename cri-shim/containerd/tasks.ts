import type { Any } from '../../proto/gen/google/protobuf/any.js';
import type { Timestamp } from '../../proto/gen/google/protobuf/timestamp.js';
import type { Container } from '../../proto/gen/github.com/containerd/containerd/api/services/containers/v1/containers.js';
import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import { Status as TaskStatus, type Process } from '../../proto/gen/github.com/containerd/containerd/api/types/task/task.js';
import { isNotFound, type CallOptions, type ContainerdClient } from './client.js';

// Containers (metadata records) and tasks (the running processes) in containerd. Specs travel as
// JSON inside an Any with the runtime-spec type URL; runc options as the shim's protobuf message.

export { TaskStatus };

export const specTypeUrl = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
export const processTypeUrl = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
export const runcV2 = 'io.containerd.runc.v2';

export function jsonAny(typeUrl: string, value: unknown): Any {
  return { typeUrl, value: Buffer.from(JSON.stringify(value)) };
}

export function decodeJsonAny<T>(any: Any | undefined): T | undefined {
  return any ? (JSON.parse(Buffer.from(any.value).toString('utf8')) as T) : undefined;
}

/** containerd.runc.v1.Options, hand-encoded: only the fields berth sets. */
export interface RuncOptions {
  binaryName?: string;
  root?: string;
  systemdCgroup?: boolean;
}

function protoString(field: number, value: string): Buffer {
  const bytes = Buffer.from(value);
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

export function runcOptionsAny(options: RuncOptions): Any {
  const parts: Buffer[] = [];
  if (options.binaryName) parts.push(protoString(6, options.binaryName));
  if (options.root) parts.push(protoString(7, options.root));
  if (options.systemdCgroup) parts.push(varint((9 << 3) | 0), varint(1));
  return { typeUrl: 'containerd.runc.v1.Options', value: Buffer.concat(parts) };
}

export function timestampToNanos(ts: Timestamp | undefined): bigint {
  if (!ts) return 0n;
  return BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos);
}

// ---- containers ----

export async function createContainerRecord(client: ContainerdClient, container: Omit<Container, 'createdAt' | 'updatedAt'>, options: CallOptions = {}): Promise<Container> {
  const res = await client.unary<{ container?: Container }>('container create', (md, cb) => client.containers.create({ container }, md, cb), options);
  return res.container!;
}

export async function getContainerRecord(client: ContainerdClient, id: string): Promise<Container | undefined> {
  try {
    const res = await client.unary<{ container?: Container }>('container get', (md, cb) => client.containers.get({ id }, md, cb));
    return res.container;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Container records matching containerd filters (e.g. `labels."io.berth.kind"==sandbox`). */
export async function listContainerRecords(client: ContainerdClient, filters: string[] = []): Promise<Container[]> {
  const res = await client.unary<{ containers: Container[] }>('container list', (md, cb) => client.containers.list({ filters }, md, cb));
  return res.containers;
}

/** Replace the given labels and extensions of a container record. */
export async function updateContainerRecord(client: ContainerdClient, container: Container, fields: { labels?: Record<string, string>; extensions?: Record<string, Any> }): Promise<Container> {
  const mask = [...Object.keys(fields.labels ?? {}).map((k) => `labels.${k}`), ...Object.keys(fields.extensions ?? {}).map((k) => `extensions.${k}`)];
  const updated: Container = {
    ...container,
    labels: { ...container.labels, ...fields.labels },
    extensions: { ...container.extensions, ...fields.extensions },
  };
  const res = await client.unary<{ container?: Container }>('container update', (md, cb) => client.containers.update({ container: updated, updateMask: mask }, md, cb));
  return res.container!;
}

export async function deleteContainerRecord(client: ContainerdClient, id: string): Promise<void> {
  try {
    await client.unary('container delete', (md, cb) => client.containers.delete({ id }, md, cb));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

// ---- tasks ----

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
