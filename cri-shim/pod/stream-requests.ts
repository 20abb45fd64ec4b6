import { BerthError } from '../../lib/errors.js';
import { ContainerState } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import type { StreamServer } from '../stream/server.js';
import type { ContainerRecord } from '../store/records.js';

// The checks Exec, Attach and PortForward make before they hand out a one-time URL, so kubelet
// gets NotFound or FailedPrecondition from the RPC, not from a broken stream later.

export function streamServerOf(rt: CriRuntime): StreamServer {
  if (!rt.streamServer) throw new BerthError('not-available', 'the streaming server is not running');
  return rt.streamServer;
}

export function checkStdio(req: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }): void {
  if (!req.stdin && !req.stdout && !req.stderr) throw new BerthError('invalid-argument', 'one of stdin, stdout or stderr must be set');
  if (req.tty && req.stderr) throw new BerthError('invalid-argument', 'tty and stderr cannot both be set (a terminal has one output)');
}

/** The container, when it is running. */
export function requireRunning(rt: CriRuntime, id: string): ContainerRecord {
  const c = rt.container(id);
  if (c.state !== ContainerState.CONTAINER_RUNNING) {
    throw new BerthError('failed-precondition', `container_id: container ${c.id} is ${ContainerState[c.state]}, not CONTAINER_RUNNING`);
  }
  return c;
}
