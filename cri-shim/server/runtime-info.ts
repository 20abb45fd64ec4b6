import { CgroupDriver, type RuntimeConfigResponse, type StatusRequest, type StatusResponse, type VersionResponse } from '../../proto/gen/runtime/v1/api.js';
import { errorMessage } from '../../lib/errors.js';
import { berthVersion } from '../../lib/version.js';
import type { CriRuntime } from '../runtime.js';

// Version, Status (RuntimeReady from containerd, NetworkReady from CNI STATUS) and
// RuntimeConfig (the cgroup driver, which kubelet then uses itself).

export function version(): VersionResponse {
  // The first field is the kubelet-runtime API version; it is fixed at 0.1.0 by the CRI.
  return { version: '0.1.0', runtimeName: 'berth', runtimeVersion: berthVersion, runtimeApiVersion: 'v1' };
}

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
    runtimeHandlers: Object.keys(rt.config.runtimeHandlers).map((name) => ({ name, features: { recursiveReadOnlyMounts: false, userNamespaces: false } })),
    features: { supplementalGroupsPolicy: false, userNamespacesHostNetwork: false, mountOptions: false },
  };
}

export function runtimeConfig(rt: CriRuntime): RuntimeConfigResponse {
  return { linux: { cgroupDriver: rt.config.cgroupDriver === 'systemd' ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS } };
}
