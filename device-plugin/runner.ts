import { existsSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import { callUnary, serveUnix, unixClient, type UnixServer } from '../lib/grpc/unix-socket.js';
import { DevicePluginService, RegistrationClient } from '../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import { selectBackend } from './backend/select.js';
import { advertisedResource, type GpuConfig } from './config.js';
import { GpuPlugin } from './plugin.js';

// berth-gpu's life with kubelet: serve the DevicePlugin socket in kubelet's device-plugins
// directory, Register on kubelet.sock, and watch the directory. When kubelet restarts it
// deletes the plugin sockets and recreates kubelet.sock; berth-gpu then serves its socket again
// and registers again, keeping its devices and their health (allocations live in kubelet's
// checkpoint, so nothing is lost). A SIGHUP reload with a new configuration rebuilds the plugin.

/** How often the directory is checked besides fs.watch, which can miss events. */
const checkIntervalMs = 500;
const registerRetryMs = 1000;

export class PluginRunner {
  plugin?: GpuPlugin;
  private server?: UnixServer;
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  private kubeletIno = 0;
  private registering?: Promise<void>;
  private stopped = false;
  private checking = false;
  registered = false;
  registrations = 0;

  constructor(
    public config: GpuConfig,
    private readonly log: Logger,
  ) {}

  get socketPath(): string {
    return join(this.config.kubeletDir, this.config.socketName);
  }

  get kubeletSocket(): string {
    return join(this.config.kubeletDir, 'kubelet.sock');
  }

  async start(): Promise<void> {
    this.stopped = false;
    const backend = await selectBackend(this.config, this.log);
    this.plugin = new GpuPlugin(this.config, backend, this.log);
    await this.plugin.start();
    await this.serve();
    // Serving is enough to be started: kubelet may come up after us (it needs the CRI runtime
    // first), so registration goes on in the background and `registered` tells when it is done.
    void this.register();
    this.watcher = watch(this.config.kubeletDir, () => void this.check());
    this.watcher.on('error', () => undefined);
    this.timer = setInterval(() => void this.check(), checkIntervalMs);
  }

  /** Shut the DevicePlugin server down; a client that never lets go does not hold us past a second. */
  private async closeServer(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    this.plugin?.endStreams();
    // The close also unlinks the socket path, so it must be over before a new server binds it.
    const closing = server.close();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([closing.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 1000)))]);
    clearTimeout(timer);
    if (timedOut) server.server.forceShutdown();
    await closing;
  }

  private async serve(): Promise<void> {
    await this.closeServer();
    this.server = await serveUnix(this.socketPath, [[DevicePluginService, this.plugin!.service()]], { mode: 0o600 });
    this.log.info({ socket: this.socketPath }, 'serving the DevicePlugin service');
    this.registered = false;
  }

  /** Register with kubelet, retrying until it answers (kubelet may not be up yet). */
  private register(): Promise<void> {
    this.registering ??= (async () => {
      let warned = false;
      while (!this.stopped) {
        try {
          const client = unixClient(RegistrationClient, this.kubeletSocket);
          try {
            await callUnary(client.register.bind(client), {
              version: 'v1beta1',
              endpoint: this.config.socketName,
              resourceName: advertisedResource(this.config),
              options: { preStartRequired: this.config.preStartRequired, getPreferredAllocationAvailable: this.config.getPreferredAllocationAvailable },
            });
          } finally {
            client.close();
          }
          this.kubeletIno = inodeOf(this.kubeletSocket);
          this.registered = true;
          this.registrations++;
          this.log.info({ resource: advertisedResource(this.config), kubelet: this.kubeletSocket }, 'registered with kubelet');
          return;
        } catch (err) {
          if (!warned) this.log.warn({ kubelet: this.kubeletSocket, err: errorMessage(err) }, 'cannot register with kubelet yet; retrying');
          warned = true;
          await new Promise((r) => setTimeout(r, registerRetryMs));
        }
      }
    })().finally(() => {
      this.registering = undefined;
    });
    return this.registering;
  }

  /** kubelet restarted? Our socket deleted: serve again and register; kubelet.sock replaced: register again. */
  private async check(): Promise<void> {
    // fs.watch fires several events for one restart: one check at a time, or two would race to
    // bind the same socket path.
    if (this.stopped || this.checking || this.registering || !this.plugin) return;
    this.checking = true;
    try {
      if (!existsSync(this.socketPath)) {
        this.log.warn({ socket: this.socketPath }, 'our socket was removed (kubelet restarted?); serving again and re-registering');
        await this.serve();
        await this.register();
        return;
      }
      const ino = inodeOf(this.kubeletSocket);
      if (ino !== 0 && ino !== this.kubeletIno) {
        this.log.warn({ kubelet: this.kubeletSocket }, 'kubelet.sock was recreated; registering again');
        await this.register();
      }
    } finally {
      this.checking = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    // End the ListAndWatch streams first: the server's shutdown waits for open calls.
    await this.closeServer();
    await this.plugin?.stop();
    await this.plugin?.backend.close();
    this.plugin = undefined;
    this.registered = false;
  }

  /** SIGHUP: rebuild everything with the new configuration (as NVIDIA's plugin restarts its servers). */
  async reload(config: GpuConfig): Promise<void> {
    await this.stop();
    this.config = config;
    await this.start();
  }
}

function inodeOf(path: string): number {
  try {
    return statSync(path).ino;
  } catch {
    return 0;
  }
}
