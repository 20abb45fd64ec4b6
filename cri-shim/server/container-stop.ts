import type { StopContainerRequest, StopContainerResponse } from '../../proto/gen/runtime/v1/api.js';
import { stopContainerNow } from '../pod/teardown.js';
import type { CriRuntime } from '../runtime.js';

// StopContainer: the image's stop signal, then SIGKILL once the timeout passes. Returns after
// the exit is recorded (state EXITED, log drained). Stopping a stopped container is a no-op.

export async function stopContainer(rt: CriRuntime, req: StopContainerRequest): Promise<StopContainerResponse> {
  const c = rt.container(req.containerId);
  await stopContainerNow(rt, c, Number(req.timeout));
  return {};
}
