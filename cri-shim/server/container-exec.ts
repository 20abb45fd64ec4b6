import { BerthError } from '../../lib/errors.js';
import type { ExecRequest, ExecResponse } from '../../proto/gen/runtime/v1/api.js';
import { checkStdio, requireRunning, streamServerOf } from '../pod/stream-requests.js';
import type { CriRuntime } from '../runtime.js';

// Exec: a one-time URL on the streaming server for a command in a running container.

export function exec(rt: CriRuntime, req: ExecRequest): ExecResponse {
  if (req.cmd.length === 0) throw new BerthError('invalid-argument', 'cmd must not be empty');
  checkStdio(req);
  requireRunning(rt, req.containerId);
  return { url: streamServerOf(rt).url({ kind: 'exec', request: req }) };
}
