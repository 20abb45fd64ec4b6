import type { Logger } from 'pino';
import { unary } from '../../lib/grpc/unix-socket.js';
import {
  PluginCapability_Service_Type as Service,
  PluginCapability_VolumeExpansion_Type as Expansion,
  type IdentityServer,
} from '../../proto/gen/csi.js';
import { driverName } from '../config.js';
import type { Driver } from '../driver.js';
import { berthVersion } from '../../lib/version.js';

// csi.v1.Identity: who we are and which services we serve.

export function identityServer(driver: Driver, log: Logger): IdentityServer {
  return {
    getPluginInfo: unary('GetPluginInfo', async () => ({
      name: driverName,
      vendorVersion: berthVersion,
      manifest: { node: driver.config.nodeId, root: driver.config.root },
    }), log),
    getPluginCapabilities: unary('GetPluginCapabilities', async () => ({
      capabilities: [
        { service: { type: Service.CONTROLLER_SERVICE } },
        { service: { type: Service.VOLUME_ACCESSIBILITY_CONSTRAINTS } },
        { service: { type: Service.GROUP_CONTROLLER_SERVICE } },
        { volumeExpansion: { type: Expansion.ONLINE } },
        { volumeExpansion: { type: Expansion.OFFLINE } },
      ],
    }), log),
    // Ready once the state journal is loaded, which happens before the socket is served.
    probe: unary('Probe', async () => ({ ready: true }), log),
  };
}
