// berth-csi: a CSI driver (Identity, Controller, GroupController, Node) for node-local volumes.
import { dirname } from 'node:path';
import { runDaemon, type Daemon } from '../lib/daemon.js';
import { serveUnix } from '../lib/grpc/unix-socket.js';
import { unixPath } from '../lib/config-file.js';
import { ControllerService, GroupControllerService, IdentityService, NodeService } from '../proto/gen/csi.js';
import { driverName, type CsiConfig } from './config.js';
import { Driver } from './driver.js';
import { parseArgs, usage } from './main-args.js';
import { recover } from './recover.js';
import { serveRegistration } from './registration.js';
import { identityServer } from './server/identity.js';
import { controllerServer, groupControllerServer, nodeServer } from './server/services.js';
import { berthVersion } from '../lib/version.js';

async function serve(config: CsiConfig, daemon: Daemon): Promise<void> {
  const log = daemon.logger(config.logLevel);
  const socketPath = unixPath(config.endpoint, 'endpoint');
  const driver = new Driver(config, log);
  const report = recover(driver);
  log.info({ ...report, root: config.root, quota: driver.storage.quotaFs ?? 'none' }, 'state recovered');

  const server = await serveUnix(socketPath, [
    [IdentityService, identityServer(driver, log)],
    [ControllerService, controllerServer(driver, log)],
    [GroupControllerService, groupControllerServer(driver, log)],
    [NodeService, nodeServer(driver, log)],
  ], { onConnectionError: (err) => log.warn({ err: err.message }, 'dropped a client connection that is not valid HTTP/2') });
  log.info({ socket: socketPath, driver: driverName, node: config.nodeId, version: berthVersion }, 'berth-csi serving');
  const registration = config.kubeletRegistration ? await serveRegistration(config.registrationDir, socketPath, log) : undefined;
  if (registration) log.info({ socket: registration.socketPath, csiDir: dirname(socketPath) }, 'serving kubelet plugin registration');

  daemon.onStop(async () => {
    await registration?.close();
    await server.close();
    driver.journal.close();
  });
  daemon.ready();
}

runDaemon({ name: 'berth-csi', usage, parseArgs, serve });
