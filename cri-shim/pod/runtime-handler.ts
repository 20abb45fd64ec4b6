import type { Container_Runtime } from '../../proto/gen/github.com/containerd/containerd/api/services/containers/v1/containers.js';
import { runcOptionsAny, runcV2 } from '../containerd/containers.js';
import type { CriRuntime } from '../runtime.js';

// A CRI runtime handler (RuntimeClass) maps to the runc shim with a chosen OCI runtime binary:
// runc and crun share runc's command line, so one shim drives both.

export function runtimeOptions(rt: CriRuntime, handler: string): Container_Runtime {
  const h = rt.config.runtimeHandlers[handler];
  return {
    name: runcV2,
    options: runcOptionsAny({
      binaryName: h?.binary ?? 'runc',
      root: h?.root,
      systemdCgroup: h?.systemdCgroup ?? rt.config.cgroupDriver === 'systemd',
    }),
  };
}
