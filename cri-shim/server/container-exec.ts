import { BerthError } from '../../lib/errors.js';
import type { ExecRequest, ExecResponse } from '../../proto/gen/runtime/v1/api.js';
import { checkStdio, requireRunning, streamServerOf } from '../pod/stream-requests.js';
import type { CriRuntime } from '../runtime.js';
import { prepareExec } from '../stream/exec.js';
import type { StreamRequest } from '../stream/server.js';

// Exec: a one-time URL on the streaming server for a command in a running container.
//
// The exec's process (its FIFOs, the process created in the shim, not started) is begun as the
// URL is issued, so the few milliseconds it takes pass while the client connects instead of
// after: the caller (kubelet's proxy) upgrades the URL at once. An unused URL's process is
// removed when the URL expires. At most maxPreparedExecs wait so; past them an exec is begun
// when its URL is upgraded.

export const maxPreparedExecs = 16;

export function exec(rt: CriRuntime, req: ExecRequest): ExecResponse {
  if (req.cmd.length === 0) throw new BerthError('invalid-argument', 'cmd must not be empty');
  checkStdio(req);
  const c = requireRunning(rt, req.containerId);
  const server = streamServerOf(rt);
  const stream: StreamRequest = { kind: 'exec', request: req };
  if (server.pendingWork >= maxPreparedExecs) return { url: server.url(stream) };
  // Begun on the next turn of the event loop, so the reply with the URL goes out first.
  const prepared = new Promise<void>((resolve) => setImmediate(resolve)).then(() => prepareExec(rt, c, req.cmd, { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, tty: req.tty }));
  prepared.catch(() => undefined);
  stream.prepared = prepared;
  return { url: server.url(stream, () => void prepared.then((p) => p.abandon(), () => undefined)) };
}
