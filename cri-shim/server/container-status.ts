import type { ContainerStatusRequest, ContainerStatusResponse } from '../../proto/gen/runtime/v1/api.js';
import { containerStatusOf } from '../pod/status-builders.js';
import type { CriRuntime } from '../runtime.js';

// ContainerStatus, answered from the in-memory index that exit handling and every mutation
// keep current.

export function containerStatus(rt: CriRuntime, req: ContainerStatusRequest): ContainerStatusResponse {
  const c = rt.container(req.containerId);
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({ pid: c.pid, sandboxId: c.sandboxId, cgroupsPath: c.cgroupsPath, imageName: c.imageName, name: c.name });
  }
  return { status: containerStatusOf(rt, c), info };
}
