// berth-csi as a component: Identity, Controller, GroupController and Node for node-local
// volumes, and kubelet's plugin registration when asked. Its state is the journal under root,
// reconciled with the mount table at every start (recover.ts).
import { dirname } from 'node:path';
import type { Component, ComponentContext } from '../lib/component.js';
import { unixPath } from '../lib/config-file.js';
import { serveUnix, type UnixServer } from '../lib/grpc/unix-socket.js';
import { berthVersion } from '../lib/version.js';
import { ControllerService, GroupControllerService, IdentityService, NodeService } from '../proto/gen/csi.js';
import { driverName, type CsiConfig } from './config.js';
import { Driver } from './driver.js';
import { recover } from './recover.js';
import { serveRegistration } from './registration.js';
import { identityServer } from './server/identity.js';
import { controllerServer, groupControllerServer, nodeServer } from './server/services.js';

export function csiComponent(config: CsiConfig, { log }: ComponentContext): Component<CsiConfig> {
  let driver: Driver | undefined;
  let server: UnixServer | undefined;
  let registration: Awaited<ReturnType<typeof serveRegistration>> | undefined;

  async function start(): Promise<void> {
    const socketPath = unixPath(config.endpoint, 'endpoint');
    driver = new Driver(config, log);
    const report = recover(driver);
    log.info({ ...report, root: config.root, quota: driver.storage.quotaFs ?? 'none' }, 'state recovered');
    server = await serveUnix(socketPath, [
      [IdentityService, identityServer(driver, log)],
      [ControllerService, controllerServer(driver, log)],
      [GroupControllerService, groupControllerServer(driver, log)],
      [NodeService, nodeServer(driver, log)],
    ], { onConnectionError: (err) => log.warn({ err: err.message }, 'dropped a client connection that is not valid HTTP/2') });
    log.info({ socket: socketPath, driver: driverName, node: config.nodeId, version: berthVersion }, 'berth-csi serving');
    if (config.kubeletRegistration) {
      registration = await serveRegistration(config.registrationDir, socketPath, log);
      log.info({ socket: registration.socketPath, csiDir: dirname(socketPath) }, 'serving kubelet plugin registration');
    }
  }

  async function stop(): Promise<void> {
    await registration?.close();
    await server?.close();
    driver?.journal.close();
    registration = server = driver = undefined;
  }

  return { start, stop };
}
