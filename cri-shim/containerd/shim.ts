import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteRequest, ExecProcessRequest, StartRequest, StartResponse, WaitRequest, WaitResponse } from '../../proto/gen/github.com/containerd/containerd/runtime/v2/task/shim.js';
import { GrpcStatus } from '../../lib/errors.js';
import { type ContainerdClient, ContainerdError, isNotFound } from './client.js';
import { jsonAny, processTypeUrl } from './containers.js';
import { deleteProcess, execProcess, startTask, type TaskIO, timestampToNanos, waitTask } from './tasks.js';
import { TtrpcClient } from './ttrpc.js';

// An exec process's calls, straight to its container's shim. containerd's task service only
// relays them (Exec, Start, Wait, DeleteProcess) to the shim, and asks the shim for the
// process's State before each but Exec: two shim round trips and containerd's own per call.
// Measured here (a State through containerd against one straight to the shim, 10 ms apart):
// 3.2 against 0.9 ms. containerd keeps no state of exec processes (the shim has it, and sends
// their events to containerd itself), so nothing in containerd misses these calls. The task's
// own calls (create, start, kill, delete) still go through containerd, which tracks the task.
//
// A shim's address is in the task's bundle directory under containerd's state directory
// (containerd 1.6: <state>/io.containerd.runtime.v2.task/<namespace>/<id>/address). Without it
// (containerd's state elsewhere, another runtime), or when the shim cannot be reached at the
// first call, an exec goes through containerd as before.

const service = 'containerd.task.v2.Task';

/** What an exec process needs: the same four calls, through the shim or through containerd. */
export interface ExecCalls {
  readonly via: 'shim' | 'containerd';
  exec(execId: string, process: unknown, io: TaskIO): Promise<void>;
  start(execId: string): Promise<number>;
  wait(execId: string): Promise<{ exitStatus: number; exitedAt: bigint }>;
  /** Gone already is fine. */
  delete(execId: string): Promise<void>;
}

export function containerdExecCalls(client: ContainerdClient, id: string): ExecCalls {
  return {
    via: 'containerd',
    exec: (execId, process, io) => execProcess(client, id, execId, process, io),
    start: (execId) => startTask(client, id, execId),
    wait: (execId) => waitTask(client, id, execId),
    delete: (execId) => deleteProcess(client, id, execId),
  };
}

export class ShimConnections {
  /** One connection per shim (a shim may serve several containers), while it is open. */
  private readonly clients = new Map<string, TtrpcClient>();

  constructor(
    private readonly containerdState: string,
    private readonly namespace: string,
  ) {}

  /** Calls straight to the shim of container `id`'s task, or undefined when its address is not to be found. */
  execCalls(id: string): ExecCalls | undefined {
    let address: string;
    try {
      address = readFileSync(join(this.containerdState, 'io.containerd.runtime.v2.task', this.namespace, id, 'address'), 'utf8').trim();
    } catch {
      return undefined;
    }
    if (!address.startsWith('unix://')) return undefined;
    // An abstract socket ("unix://@name", containerd before 1.5) is named with a NUL in Node.
    const path = address.slice('unix://'.length).replace(/^@/, '\0');
    let client = this.clients.get(path);
    if (!client) {
      const made = new TtrpcClient(path, { 'containerd-namespace-ttrpc': this.namespace }, () => {
        if (this.clients.get(path) === made) this.clients.delete(path);
      });
      this.clients.set(path, made);
      client = made;
    }
    return shimExecCalls(client, id);
  }

  /** Shims connected to now (for tests). */
  get size(): number {
    return this.clients.size;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

function shimExecCalls(client: TtrpcClient, id: string): ExecCalls {
  return {
    via: 'shim',
    async exec(execId, process, io) {
      const request = ExecProcessRequest.encode({
        id,
        execId,
        terminal: io.terminal ?? false,
        stdin: io.stdin ?? '',
        stdout: io.stdout ?? '',
        stderr: io.stderr ?? '',
        spec: jsonAny(processTypeUrl, process),
      }).finish();
      await client.call('shim exec', service, 'Exec', request);
    },
    async start(execId) {
      const res = StartResponse.decode(await client.call('shim start', service, 'Start', StartRequest.encode({ id, execId }).finish()));
      return res.pid;
    },
    async wait(execId) {
      const res = WaitResponse.decode(await client.call('shim wait', service, 'Wait', WaitRequest.encode({ id, execId }).finish()));
      return { exitStatus: res.exitStatus, exitedAt: timestampToNanos(res.exitedAt) };
    },
    async delete(execId) {
      try {
        await client.call('shim delete', service, 'Delete', DeleteRequest.encode({ id, execId }).finish());
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    },
  };
}

/** The shim could not be reached at all (as against refusing a call): containerd may still relay. */
function isShimUnreachable(err: unknown): boolean {
  return err instanceof ContainerdError && err.grpcStatus === GrpcStatus.UNAVAILABLE;
}

/**
 * Create exec process `execId` in container `id`'s task, straight through its shim when its
 * address is known and it answers, else through containerd (`onRelayed` is told why); returns
 * the calls the process goes on with.
 */
export async function createExecProcess(
  shims: ShimConnections,
  client: ContainerdClient,
  id: string,
  execId: string,
  process: unknown,
  io: TaskIO,
  onRelayed?: (err: unknown) => void,
): Promise<ExecCalls> {
  const direct = shims.execCalls(id);
  if (direct) {
    try {
      await direct.exec(execId, process, io);
      return direct;
    } catch (err) {
      if (!isShimUnreachable(err)) throw err;
      onRelayed?.(err);
    }
  }
  const relayed = containerdExecCalls(client, id);
  await relayed.exec(execId, process, io);
  return relayed;
}
