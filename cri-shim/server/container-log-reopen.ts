import { BerthError } from '../../lib/errors.js';
import { ContainerState, type ReopenContainerLogRequest, type ReopenContainerLogResponse } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';

// ReopenContainerLog: after kubelet rotated a running container's log file.

export async function reopenContainerLog(rt: CriRuntime, req: ReopenContainerLogRequest): Promise<ReopenContainerLogResponse> {
  const c = rt.container(req.containerId);
  if (c.state !== ContainerState.CONTAINER_RUNNING || !c.io) {
    throw new BerthError('failed-precondition', `container_id: container ${c.id} is not running`);
  }
  await c.io.reopenLog();
  return {};
}
