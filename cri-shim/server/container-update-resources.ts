import { BerthError } from '../../lib/errors.js';
import { ContainerState, type UpdateContainerResourcesRequest, type UpdateContainerResourcesResponse } from '../../proto/gen/runtime/v1/api.js';
import { updateTaskResources } from '../containerd/tasks.js';
import { linuxResources } from '../oci/resources.js';
import type { CriRuntime } from '../runtime.js';

// UpdateContainerResources: live cgroup limits through the task, remembered for restarts.

export async function updateContainerResources(rt: CriRuntime, req: UpdateContainerResourcesRequest): Promise<UpdateContainerResourcesResponse> {
  const c = rt.container(req.containerId);
  if (!req.linux) throw new BerthError('invalid-argument', 'linux: resources are required');
  if (c.state === ContainerState.CONTAINER_RUNNING) {
    await updateTaskResources(rt.client, c.id, linuxResources(req.linux, rt.minOomScoreAdj).resources);
  }
  c.config = { ...c.config, linux: { ...(c.config.linux ?? { securityContext: undefined, resources: undefined }), resources: req.linux } } as typeof c.config;
  await rt.persistContainer(c);
  return {};
}
