import type { AttachRequest, AttachResponse } from '../../proto/gen/runtime/v1/api.js';
import { checkStdio, requireRunning, streamServerOf } from '../pod/stream-requests.js';
import type { CriRuntime } from '../runtime.js';

// Attach: a one-time URL on the streaming server for a running container's stdio.

export function attach(rt: CriRuntime, req: AttachRequest): AttachResponse {
  checkStdio(req);
  requireRunning(rt, req.containerId);
  return { url: streamServerOf(rt).url({ kind: 'attach', request: req }) };
}
