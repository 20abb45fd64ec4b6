import type { RemoveContainerRequest, RemoveContainerResponse } from '../../proto/gen/runtime/v1/api.js';
import { removeContainerNow } from '../pod/teardown.js';
import type { CriRuntime } from '../runtime.js';

// RemoveContainer: a running container is killed first (the CRI says forcibly); then its task,
// record, rootfs snapshot and FIFOs go. The log file stays: kubelet owns the log directory.
// Removing an unknown container succeeds.

export async function removeContainer(rt: CriRuntime, req: RemoveContainerRequest): Promise<RemoveContainerResponse> {
  const c = rt.containers.find(req.containerId);
  if (c) await removeContainerNow(rt, c);
  return {};
}
