import { errorMessage } from '../../lib/errors.js';
import type { StatusRequest, StatusResponse } from '../../proto/gen/runtime/v1/api.js';
import { usernsUnsupported } from '../pod/userns.js';
import type { CriRuntime } from '../runtime.js';

// Status: RuntimeReady from containerd, NetworkReady from CNI STATUS, and the runtime handlers.

export async function status(rt: CriRuntime, req: StatusRequest): Promise<StatusResponse> {
  let runtimeReady = { status: true, reason: '', message: '' };
  try {
    await rt.client.unary('version', (md, cb) => rt.client.version.version({}, md, cb), { deadlineMs: 2000 });
  } catch (err) {
    runtimeReady = { status: false, reason: 'ContainerdUnavailable', message: errorMessage(err) };
  }
  const net = await rt.network.ready();
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.config = JSON.stringify({ ...rt.config });
    info.sandboxes = String(rt.sandboxes.all().length);
    info.containers = String(rt.containers.all().length);
  }
  return {
    status: {
      conditions: [
        { type: 'RuntimeReady', ...runtimeReady },
        { type: 'NetworkReady', status: net.ready, reason: net.reason, message: net.message },
      ],
    },
    info,
    runtimeHandlers: Object.keys(rt.config.runtimeHandlers).map((name) => ({ name, features: { recursiveReadOnlyMounts: rt.recursiveReadOnly.support.supported, userNamespaces: !usernsUnsupported(rt, name) } })),
    features: { supplementalGroupsPolicy: true, userNamespacesHostNetwork: false, mountOptions: false },
  };
}
