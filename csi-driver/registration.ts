import { join } from 'node:path';
import type { Logger } from 'pino';
import { serveUnix, unary, type UnixServer } from '../lib/grpc/unix-socket.js';
import { RegistrationService, type RegistrationServer } from '../proto/gen/kubelet/pluginregistration/v1/api.js';
import { driverName } from './config.js';

// kubelet's plugin watcher (pluginregistration v1): kubelet notices a socket appearing in its
// plugins_registry directory, asks it GetInfo (who are you, where is your CSI socket) and
// reports the outcome through NotifyRegistrationStatus. Serving this ourselves replaces the
// node-driver-registrar sidecar.

/** CSI versions kubelet may speak to us. */
const supportedVersions = ['1.0.0'];

export function registrationSocketPath(registrationDir: string): string {
  return join(registrationDir, `${driverName}-reg.sock`);
}

export async function serveRegistration(registrationDir: string, csiSocketPath: string, log: Logger): Promise<UnixServer> {
  const impl: RegistrationServer = {
    getInfo: unary('GetInfo', async () => ({ type: 'CSIPlugin', name: driverName, endpoint: csiSocketPath, supportedVersions }), log),
    notifyRegistrationStatus: unary('NotifyRegistrationStatus', async (req) => {
      if (req.pluginRegistered) log.info({ driver: driverName }, 'registered with kubelet');
      else log.error({ driver: driverName, err: req.error }, 'kubelet refused the registration');
      return {};
    }, log),
  };
  return serveUnix(registrationSocketPath(registrationDir), [[RegistrationService, impl]], { mode: 0o600 });
}
