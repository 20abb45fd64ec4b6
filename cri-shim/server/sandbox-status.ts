import type { PodSandboxStatusRequest, PodSandboxStatusResponse } from '../../proto/gen/runtime/v1/api.js';
import { sandboxStatusOf } from '../pod/status-builders.js';
import { type CriRuntime, nowNanos } from '../runtime.js';

// PodSandboxStatus, answered from the in-memory index that exit handling and every mutation
// keep current.

export function podSandboxStatus(rt: CriRuntime, req: PodSandboxStatusRequest): PodSandboxStatusResponse {
  const s = rt.sandbox(req.podSandboxId);
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      pid: s.pid,
      netns: s.netnsPath,
      runtimeHandler: s.runtimeHandler,
      cgroupsPath: s.cgroupsPath,
      sandboxDir: s.dir,
      networkDown: s.networkDown,
      containers: rt.containersOf(s.id).map((c) => c.id),
    });
  }
  return { status: sandboxStatusOf(s), info, containersStatuses: [], timestamp: nowNanos() };
}
