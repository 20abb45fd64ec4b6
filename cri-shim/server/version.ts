import { berthVersion } from '../../lib/version.js';
import type { VersionResponse } from '../../proto/gen/runtime/v1/api.js';

// Version: berth's name and version, and the CRI API it speaks.

export function version(): VersionResponse {
  // The first field is the kubelet-runtime API version; it is fixed at 0.1.0 by the CRI.
  return { version: '0.1.0', runtimeName: 'berth', runtimeVersion: berthVersion, runtimeApiVersion: 'v1' };
}
