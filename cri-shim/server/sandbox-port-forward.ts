import { BerthError } from '../../lib/errors.js';
import { PodSandboxState, type PortForwardRequest, type PortForwardResponse } from '../../proto/gen/runtime/v1/api.js';
import { streamServerOf } from '../pod/stream-requests.js';
import { checkPorts, portForwardLimits } from '../stream/portforward.js';
import type { CriRuntime } from '../runtime.js';

// PortForward: a one-time URL on the streaming server for TCP ports of a ready pod (at most
// maxPortForwardPorts of them).

export function portForward(rt: CriRuntime, req: PortForwardRequest): PortForwardResponse {
  const s = rt.sandbox(req.podSandboxId);
  if (s.state !== PodSandboxState.SANDBOX_READY) throw new BerthError('failed-precondition', `pod_sandbox_id: pod sandbox ${s.id} is not ready`);
  checkPorts(req.port, portForwardLimits(rt.config));
  return { url: streamServerOf(rt).url({ kind: 'portforward', request: req }) };
}
