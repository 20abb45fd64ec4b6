import { CgroupDriver, type RuntimeConfigResponse } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';

// RuntimeConfig: the cgroup driver, which kubelet then uses itself.

export function runtimeConfig(rt: CriRuntime): RuntimeConfigResponse {
  return { linux: { cgroupDriver: rt.config.cgroupDriver === 'systemd' ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS } };
}
