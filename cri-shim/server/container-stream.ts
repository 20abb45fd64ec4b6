import { BerthError } from '../../lib/errors.js';
import {
  ContainerState,
  PodSandboxState,
  type AttachRequest,
  type AttachResponse,
  type ExecRequest,
  type ExecResponse,
  type PortForwardRequest,
  type PortForwardResponse,
} from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import type { StreamServer } from '../stream/server.js';

// Exec, Attach and PortForward: check the request now (so kubelet gets NotFound or
// FailedPrecondition from the RPC, not from a broken stream later) and hand out a one-time URL
// on the streaming server.

function server(rt: CriRuntime): StreamServer {
  if (!rt.streamServer) throw new BerthError('not-available', 'the streaming server is not running');
  return rt.streamServer;
}

function checkStdio(req: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }): void {
  if (!req.stdin && !req.stdout && !req.stderr) throw new BerthError('invalid-argument', 'one of stdin, stdout or stderr must be set');
  if (req.tty && req.stderr) throw new BerthError('invalid-argument', 'tty and stderr cannot both be set (a terminal has one output)');
}

function runningContainer(rt: CriRuntime, id: string): void {
  const c = rt.container(id);
  if (c.state !== ContainerState.CONTAINER_RUNNING) {
    throw new BerthError('failed-precondition', `container_id: container ${c.id} is ${ContainerState[c.state]}, not CONTAINER_RUNNING`);
  }
}

export function exec(rt: CriRuntime, req: ExecRequest): ExecResponse {
  if (req.cmd.length === 0) throw new BerthError('invalid-argument', 'cmd must not be empty');
  checkStdio(req);
  runningContainer(rt, req.containerId);
  return { url: server(rt).url({ kind: 'exec', request: req }) };
}

export function attach(rt: CriRuntime, req: AttachRequest): AttachResponse {
  checkStdio(req);
  runningContainer(rt, req.containerId);
  return { url: server(rt).url({ kind: 'attach', request: req }) };
}

export function portForward(rt: CriRuntime, req: PortForwardRequest): PortForwardResponse {
  const s = rt.sandbox(req.podSandboxId);
  if (s.state !== PodSandboxState.SANDBOX_READY) throw new BerthError('failed-precondition', `pod_sandbox_id: pod sandbox ${s.id} is not ready`);
  for (const p of req.port) if (p < 1 || p > 65535) throw new BerthError('invalid-argument', `port: ${p} is not a TCP port`);
  return { url: server(rt).url({ kind: 'portforward', request: req }) };
}
