import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { callUnary, serveUnix, unary, unixClient, type UnixServer } from '../lib/grpc/unix-socket.js';
import { AllocateRequest, type AllocateResponse, type Device, DevicePluginClient, type DevicePluginOptions, type ListAndWatchResponse, PreferredAllocationRequest, type PreferredAllocationResponse, type RegisterRequest, RegistrationService } from '../proto/gen/kubelet/deviceplugin/v1beta1/api.js';

// The kubelet side of the device plugin protocol, for tests and the demo: a Registration
// server on <dir>/kubelet.sock, and for every plugin that registers a DevicePlugin client that
// reads its options and follows its ListAndWatch stream, keeping each list with the time it
// arrived. restart() does what a kubelet restart does to the directory: the socket goes away,
// every plugin socket in it is deleted, and kubelet.sock comes back. Not importing vitest.

export interface SeenList {
  at: number;
  devices: Device[];
}

export interface PluginView {
  request: RegisterRequest;
  options?: DevicePluginOptions;
  client: DevicePluginClient;
  lists: SeenList[];
  stream?: ClientReadableStream<ListAndWatchResponse>;
}

export class FakeKubelet {
  private server?: UnixServer;
  readonly registrations: RegisterRequest[] = [];
  /** By resource name, the latest registration's view. */
  readonly plugins = new Map<string, PluginView>();

  constructor(readonly dir: string) {}

  get socket(): string {
    return join(this.dir, 'kubelet.sock');
  }

  async start(): Promise<void> {
    this.server = await serveUnix(this.socket, [
      [RegistrationService, { register: unary('Register', async (req: RegisterRequest) => this.onRegister(req)) }],
    ]);
  }

  private async onRegister(req: RegisterRequest): Promise<Record<string, never>> {
    if (req.version !== 'v1beta1') throw new Error(`unsupported version ${req.version}`);
    this.registrations.push(req);
    this.plugins.get(req.resourceName)?.stream?.cancel();
    this.plugins.get(req.resourceName)?.client.close();
    const client = unixClient(DevicePluginClient, join(this.dir, req.endpoint));
    const view: PluginView = { request: req, client, lists: [] };
    this.plugins.set(req.resourceName, view);
    // kubelet talks to the plugin after answering Register; so do we.
    setImmediate(() => void this.follow(view));
    return {};
  }

  private async follow(view: PluginView): Promise<void> {
    try {
      view.options = await callUnary(view.client.getDevicePluginOptions.bind(view.client), {});
    } catch {
      return;
    }
    const stream = view.client.listAndWatch({});
    view.stream = stream;
    stream.on('data', (res: ListAndWatchResponse) => view.lists.push({ at: Date.now(), devices: res.devices }));
    stream.on('error', () => undefined);
  }

  plugin(resourceName: string): PluginView {
    const p = this.plugins.get(resourceName);
    if (!p) throw new Error(`no plugin registered for ${resourceName} (registrations: ${this.registrations.map((r) => r.resourceName).join(', ') || 'none'})`);
    return p;
  }

  /** The newest device list of a plugin, once one satisfies `ok` (polls up to `timeoutMs`). */
  async waitForList(resourceName: string, ok: (devices: Device[]) => boolean, timeoutMs = 5000): Promise<SeenList> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = this.plugins.get(resourceName)?.lists.at(-1);
      if (last && ok(last.devices)) return last;
      if (Date.now() > deadline) throw new Error(`no matching device list from ${resourceName} within ${timeoutMs} ms; last: ${JSON.stringify(last?.devices ?? null)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Wait for the n-th registration (1-based). */
  async waitForRegistrations(n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.registrations.length < n) {
      if (Date.now() > deadline) throw new Error(`${this.registrations.length} registrations after ${timeoutMs} ms, wanted ${n}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  allocate(resourceName: string, containers: string[][]): Promise<AllocateResponse> {
    const c = this.plugin(resourceName).client;
    return callUnary(c.allocate.bind(c), AllocateRequest.fromPartial({ containerRequests: containers.map((devicesIds) => ({ devicesIds })) }));
  }

  preferred(resourceName: string, available: string[], mustInclude: string[], size: number): Promise<PreferredAllocationResponse> {
    const c = this.plugin(resourceName).client;
    return callUnary(
      c.getPreferredAllocation.bind(c),
      PreferredAllocationRequest.fromPartial({ containerRequests: [{ availableDeviceIDs: available, mustIncludeDeviceIDs: mustInclude, allocationSize: size }] }),
    );
  }

  /** What a kubelet restart does: its socket and every plugin socket in the directory go, then it serves again. */
  async restart(): Promise<void> {
    await this.stop();
    for (const name of readdirSync(this.dir)) if (name.endsWith('.sock')) rmSync(join(this.dir, name), { force: true });
    await this.start();
  }

  async stop(): Promise<void> {
    for (const p of this.plugins.values()) {
      p.stream?.cancel();
      p.client.close();
    }
    this.plugins.clear();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    // A plugin connection a loaded machine has not torn down yet must not hold the test's
    // cleanup for ever: after a grace period the fake kubelet drops its sessions.
    const closed = server.close().then(() => true);
    if (!(await Promise.race([closed, sleep(5000).then(() => false)]))) server.server.forceShutdown();
  }
}
