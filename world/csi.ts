import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { detachLoop, loopsBackedBy } from '../lib/loop.js';
import { readMountInfo, unmount } from '../lib/mount.js';
import * as csi from '../proto/gen/csi.js';
import { repoRoot } from './cni.js';
import { daemonNodeFlags } from '../lib/node-flags.js';

// berth-csi as the tests, the demo and the benchmark see it: the built daemon started on a
// fresh root, with typed gRPC callers for its four services. Not importing vitest: the demo
// and the benchmark bundle this file.

type Method = { path: string; requestSerialize: (v: never) => Buffer; responseDeserialize: (b: Buffer) => unknown };
type RequestOf<M> = M extends { requestSerialize: (v: infer R) => Buffer } ? R : never;
type ResponseOf<M> = M extends { responseDeserialize: (b: Buffer) => infer R } ? R : never;
/** Every RPC of a service as `(partial request) => Promise<response>`. */
export type Caller<S> = { [K in keyof S]: (req?: csi.DeepPartial<RequestOf<S[K]>>) => Promise<ResponseOf<S[K]>> };

/** A caller over one connection; requests are completed with the message's defaults (fromPartial). */
export function csiCaller<S extends Record<string, Method>>(client: Client, service: S): Caller<S> {
  const messages = csi as unknown as Record<string, { fromPartial(v: unknown): unknown }>;
  const caller: Record<string, (req?: unknown) => Promise<unknown>> = {};
  for (const [name, def] of Object.entries(service)) {
    const rpc = def.path.slice(def.path.lastIndexOf('/') + 1);
    const message = messages[`${rpc}Request`];
    if (!message) throw new Error(`no request message for ${rpc}`);
    caller[name] = (req = {}) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          def.path,
          (v: unknown) => (def.requestSerialize as (x: unknown) => Buffer)(message.fromPartial(v)),
          def.responseDeserialize,
          req,
          (err: ServiceError | null, res?: unknown) => (err ? reject(err) : resolve(res)),
        );
      });
  }
  return caller as Caller<S>;
}

export interface CsiDriverOptions {
  nodeId?: string;
  /** Use this root instead of a fresh one (a restart test, or a root on a special filesystem). */
  root?: string;
  args?: string[];
  /** Flags for node itself, e.g. --cpu-prof to profile the driver. */
  nodeArgs?: string[];
  /** Extra environment, e.g. BERTH_CSI_CRASH_AT for the crash tests; changeable between restarts. */
  env?: Record<string, string>;
}

const testBase = '/var/lib/berth-test';

/** Unmount everything mounted under `dir` (deepest first) and detach loop devices backed by files under it. */
export function releaseUnder(dir: string): void {
  const under = (p: string): boolean => p === dir || p.startsWith(`${dir}/`);
  const points = readMountInfo().map((m) => m.mountPoint).filter(under).sort((a, b) => b.length - a.length);
  for (const p of points) unmount(p, 2);
  for (const loop of loopsBackedBy(dir)) detachLoop(loop.device);
}

/** Whether something listens on a unix socket (a stale file left by a kill -9 refuses). */
function accepts(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(socket);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export class CsiDriver {
  identity!: Caller<typeof csi.IdentityService>;
  controller!: Caller<typeof csi.ControllerService>;
  group!: Caller<typeof csi.GroupControllerService>;
  node!: Caller<typeof csi.NodeService>;
  private client?: Client;
  private proc?: ChildProcess;
  private output: string[] = [];
  readonly socket: string;
  /** Where tests put staging and target paths (what kubelet's pods dir is on a node). */
  readonly hostDir: string;

  env: Record<string, string> = {};
  nodeArgs: string[] = [];

  private constructor(readonly dir: string, readonly root: string, readonly nodeId: string, private readonly args: string[]) {
    this.socket = join(dir, 'csi.sock');
    this.hostDir = join(dir, 'host');
    mkdirSync(this.hostDir, { recursive: true });
  }

  static async start(options: CsiDriverOptions = {}): Promise<CsiDriver> {
    mkdirSync(testBase, { recursive: true });
    const dir = mkdtempSync(join(testBase, 'csi-'));
    const driver = new CsiDriver(dir, options.root ?? join(dir, 'root'), options.nodeId ?? 'node-a', options.args ?? []);
    driver.env = { ...options.env };
    driver.nodeArgs = options.nodeArgs ?? [];
    try {
      await driver.launch();
    } catch (err) {
      await driver.stop();
      throw err;
    }
    return driver;
  }

  /** Start (or start again) the daemon and connect. */
  async launch(): Promise<void> {
    const bin = join(repoRoot, 'dist/bin/berth-csi');
    // Earlier runs' lines stay in log() for failure reports; readiness looks at this run's only.
    this.output.push('\n--- berth-csi start ---\n');
    this.proc = spawn(process.execPath, [...daemonNodeFlags, ...this.nodeArgs, bin, '--node-id', this.nodeId, '--root', this.root, '--endpoint', `unix://${this.socket}`, ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BERTH_LOG_LEVEL: process.env.BERTH_LOG_LEVEL ?? 'debug', ...this.env },
    });
    const keep = (b: Buffer): void => {
      this.output.push(b.toString());
      if (this.output.length > 4000) this.output.splice(0, 2000);
    };
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    const exited = new Promise<never>((_, reject) => this.proc!.once('exit', (code) => reject(new Error(`berth-csi exited (${code}): ${this.log().slice(-2000)}`))));
    const ready = (async () => {
      for (let i = 0; i < 200; i++) {
        if (existsSync(this.socket) && (await accepts(this.socket))) return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`berth-csi did not serve ${this.socket} within 5 s: ${this.log().slice(-2000)}`);
    })();
    await Promise.race([ready, exited]);
    this.proc.removeAllListeners('exit');
    this.client = new Client(`unix://${this.socket}`, credentials.createInsecure());
    this.identity = csiCaller(this.client, csi.IdentityService);
    this.controller = csiCaller(this.client, csi.ControllerService);
    this.group = csiCaller(this.client, csi.GroupControllerService);
    this.node = csiCaller(this.client, csi.NodeService);
  }

  log(): string {
    return this.output.join('');
  }

  /** The running daemon's pid (hostile tests sample it; pause-point tests send it SIGCONT). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** A path under the test's host dir, as kubelet would pass for staging or a pod's target. */
  path(name: string): string {
    return join(this.hostDir, name);
  }

  /** Stop the daemon: SIGTERM (clean) or SIGKILL (a crash). */
  async halt(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    this.client?.close();
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await done;
  }

  async restart(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    await this.halt(signal);
    await this.launch();
  }

  /** Stop and remove everything: mounts, loop devices, files. */
  async stop(): Promise<void> {
    await this.halt();
    releaseUnder(this.dir);
    if (!this.root.startsWith(this.dir)) releaseUnder(this.root);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The driver's journal lines, for tests about what was persisted. */
  journalText(): string {
    const state = join(this.root, 'state');
    return existsSync(state) ? readFileSync(join(state, 'state.json'), 'utf8') : '';
  }
}

/** Capability shorthands. */
export const Mode = csi.VolumeCapability_AccessMode_Mode;
export function mountCap(mode = Mode.SINGLE_NODE_WRITER, mount: Partial<csi.VolumeCapability_MountVolume> = {}): csi.DeepPartial<csi.VolumeCapability> {
  return { mount: { fsType: '', mountFlags: [], volumeMountGroup: '', ...mount }, accessMode: { mode } };
}
export function blockCap(mode = Mode.SINGLE_NODE_WRITER): csi.DeepPartial<csi.VolumeCapability> {
  return { block: {}, accessMode: { mode } };
}

export const MiB = 1 << 20;
