import type { StopPodSandboxRequest, StopPodSandboxResponse } from '../../proto/gen/runtime/v1/api.js';
import { stopSandbox } from '../pod/teardown.js';
import type { CriRuntime } from '../runtime.js';

// StopPodSandbox: idempotent; an unknown pod is a success, and every step checks what is already
// done (network torn down, task gone).

export async function stopPodSandbox(rt: CriRuntime, req: StopPodSandboxRequest): Promise<StopPodSandboxResponse> {
  const s = rt.sandboxes.find(req.podSandboxId);
  if (!s) {
    rt.log.debug({ sandbox: req.podSandboxId }, 'StopPodSandbox of an unknown pod: nothing to do');
    return {};
  }
  await stopSandbox(rt, s);
  rt.log.info({ sandbox: s.id, pod: s.name }, 'pod sandbox stopped');
  return {};
}
