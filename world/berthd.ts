import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, credentials } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import type { ComponentName } from '../lib/component.js';
import { daemonNodeFlags } from '../lib/node-flags.js';
import * as csi from '../proto/gen/csi.js';
import { berthPlugin, repoRoot, runCni, type CniOutcome } from './cni.js';
import type { CriWorld } from './cri.js';
import { csiCaller, releaseUnder, type Caller } from './csi.js';
import { FakeKubelet } from './fake-kubelet.js';
import { fakeGpus, type FakeGpu } from './gpu.js';
import { sh, trySh, uniqueName } from './netns.js';

// berthd as the tests see it: the built executable started on a berth.yaml written from the
// sections a test gives, its JSON log collected, its one HTTP endpoint found from the log, and
// kill -9 / SIGTERM / SIGHUP / a restart on the same file. BerthdWorld puts next to it what each
// component needs (the CRI world's containerd, a CSI root, fake GPUs and a fake kubelet, an
// overlay underlay and network, a cnid socket) and removes all of it at the end. Not importing
// vitest.

export const berthdBinary = join(repoRoot, 'dist/bin/berthd');

/** One JSON line of berthd's log. */
export interface LogLine {
  level?: string;
  msg?: string;
  component?: string;
  [key: string]: unknown;
}

/** A berthd that ran to its end (config errors, --help). */
export interface BerthdOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment berthd runs with: the test's, without what would override the file. */
function berthdEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.BERTH_LOG_LEVEL;
  delete env.BERTH_CONFIG;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Run berthd with these arguments until it exits (at most `timeoutMs`, then it is killed). */
export function runBerthd(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 20_000): BerthdOutcome {
  const r = spawnSync(process.execPath, [berthdBinary, ...args], { encoding: 'utf8', env: berthdEnv(env), timeout: timeoutMs, killSignal: 'SIGKILL' });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export class BerthdProcess {
  /** Every log line of every run, oldest first; `runs` marks where each run begins. */
  readonly log: LogLine[] = [];
  readonly runs: number[] = [];
  private stderrText = '';
  private proc?: ChildProcess;
  private exited?: Promise<void>;
  port = 0;

  constructor(
    readonly configFile: string,
    private readonly env: Record<string, string | undefined> = {},
  ) {}

  /** Write berth.yaml from a document (sections and top-level settings). */
  writeConfig(doc: Record<string, unknown>): void {
    // Whole or not at all: a SIGHUP must never read half a file.
    writeFileSync(`${this.configFile}.tmp`, stringify(doc));
    renameSync(`${this.configFile}.tmp`, this.configFile);
  }

  /** Start berthd on the file; resolves once its HTTP endpoint is bound (its port known). */
  async launch(timeoutMs = 20_000): Promise<void> {
    if (this.running) throw new Error('berthd is already running');
    this.runs.push(this.log.length);
    this.port = 0;
    const proc = spawn(process.execPath, [...daemonNodeFlags, berthdBinary, '--config', this.configFile, '--http', '127.0.0.1:0'], {
      // The shims berthd's cnid serves must share its cwd (and PATH, umask): the test's.
      cwd: process.cwd(),
      env: berthdEnv(this.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    let partial = '';
    proc.stdout!.on('data', (b: Buffer) => {
      const lines = (partial + b.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        try {
          this.log.push(JSON.parse(line) as LogLine);
        } catch {
          this.log.push({ msg: line, raw: true });
        }
      }
    });
    proc.stderr!.on('data', (b: Buffer) => (this.stderrText += b.toString()));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const bound = this.thisRun().find((l) => l.msg === 'serving /metrics, /healthz and /readyz');
      if (bound) {
        this.port = Number(bound.port);
        return;
      }
      if (!this.running) throw new Error(`berthd exited (${proc.exitCode ?? proc.signalCode}) before serving HTTP: ${this.stderrText.slice(-2000)} ${this.logText().slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`berthd did not serve HTTP within ${timeoutMs} ms: ${this.logText().slice(-2000)}`);
      await sleep(20);
    }
  }

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get exitCode(): number | null | undefined {
    return this.proc?.exitCode;
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** The log lines of the current (or last) run. */
  thisRun(): LogLine[] {
    return this.log.slice(this.runs.at(-1) ?? 0);
  }

  logText(): string {
    return this.log.map((l) => JSON.stringify(l)).join('\n');
  }

  /** Log lines of the current run with this message (and component, if given). */
  lines(msg: string | RegExp, component?: ComponentName): LogLine[] {
    return this.thisRun().filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg ?? '')) && (component === undefined || l.component === component));
  }

  /** Wait for a log line of the current run with this message (and component). */
  async waitForLog(msg: string | RegExp, component?: ComponentName, timeoutMs = 15_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines(msg, component)[0];
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no log line ${String(msg)}${component ? ` from ${component}` : ''} within ${timeoutMs} ms: ${this.logText().slice(-3000)}`);
      await sleep(20);
    }
  }

  private url(path: string): string {
    if (!this.port) throw new Error('berthd has no HTTP port (not launched?)');
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async get(path: string): Promise<{ status: number; text: string }> {
    const res = await fetch(this.url(path), { signal: AbortSignal.timeout(5000) });
    return { status: res.status, text: await res.text() };
  }

  /** /readyz or /readyz/<component>. */
  readyz(component?: ComponentName): Promise<{ status: number; text: string }> {
    return this.get(component ? `/readyz/${component}` : '/readyz');
  }

  /** Poll until /readyz (or one component's) answers 200; throws with the last answer. */
  async waitReady(component?: ComponentName, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: { status: number; text: string };
    for (;;) {
      if (!this.running) throw new Error(`berthd exited (${this.proc?.exitCode ?? this.proc?.signalCode}): ${this.stderrText.slice(-2000)} ${this.logText().slice(-3000)}`);
      last = await this.readyz(component).catch((err: Error) => ({ status: 0, text: err.message }));
      if (last.status === 200) return;
      if (Date.now() > deadline) throw new Error(`berthd /readyz${component ? `/${component}` : ''} is ${last.status} after ${timeoutMs} ms:\n${last.text}\n${this.logText().slice(-3000)}`);
      await sleep(50);
    }
  }

  async metrics(): Promise<string> {
    return (await this.get('/metrics')).text;
  }

  /** A sample's value from /metrics text (undefined when absent): `name{component="csi"} 1`. */
  static sample(text: string, name: string, component?: ComponentName): number | undefined {
    const labels = component ? `{component="${component}"}` : '';
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.running) throw new Error(`cannot send ${sig}: berthd is not running`);
    this.proc!.kill(sig);
  }

  /** SIGHUP and wait until berthd logged that it applied (or refused) the file. */
  async reload(timeoutMs = 15_000): Promise<void> {
    const before = this.lines(/^SIGHUP: /).length;
    this.signal('SIGHUP');
    const deadline = Date.now() + timeoutMs;
    while (this.lines(/^SIGHUP: /).length === before) {
      if (Date.now() > deadline) throw new Error(`berthd did not act on SIGHUP within ${timeoutMs} ms: ${this.logText().slice(-3000)}`);
      await sleep(20);
    }
  }

  /** kill -9 (or another signal) and wait for the process to be gone. */
  async kill(sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.proc!.kill(sig);
    await this.exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null if killed). */
  async stop(graceMs = 20_000): Promise<number | null> {
    if (this.running) {
      this.proc!.kill('SIGTERM');
      const timer = setTimeout(() => this.proc?.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.proc?.exitCode ?? null;
  }

  /** kill -9 (or stop with SIGTERM) and start again on the same file. */
  async restart(sig: 'SIGKILL' | 'SIGTERM' = 'SIGKILL'): Promise<void> {
    if (sig === 'SIGKILL') await this.kill();
    else await this.stop();
    await this.launch();
  }
}

/** The overlay's single-node network: an underlay link of its own, a network and VNI of its own. */
export interface OverlaySetup {
  underlay: string;
  underlayAddress: string;
  vni: number;
  device: string;
  network: string;
  networkConfigFile: string;
  leaseFile: string;
  subnetFile: string;
}

export interface BerthdWorldOptions {
  /** The CRI world (started with berthCri: false) whose containerd the cri section uses; the caller stops it. */
  cri?: CriWorld;
  /** Fake GPUs for the gpu section (default 2), and a fake kubelet they register with. */
  gpus?: FakeGpu[];
}

/**
 * The files, links and helper services of a berthd test, with a berth.yaml section for each
 * component: cri (the CRI world's containerd), csi (a root and a host dir for staging and
 * targets), gpu (fake backend, fake kubelet), overlay (file lease store on a veth underlay),
 * cnid (a socket that berthd's own CRI and the shims reach through BERTH_CNI_SOCKET).
 */
export class BerthdWorld {
  readonly dir: string;
  readonly configFile: string;
  readonly csiSocket: string;
  readonly csiRoot: string;
  /** Where tests put CSI staging and target paths (kubelet's pods dir on a node). */
  readonly csiHostDir: string;
  readonly cnidSocket: string;
  readonly kubeletDir: string;
  readonly fakeDir: string;
  readonly gpus: FakeGpu[];
  readonly kubelet: FakeKubelet;
  readonly cri?: CriWorld;
  private overlaySetup?: OverlaySetup;
  private readonly processes: BerthdProcess[] = [];
  private readonly clients: Client[] = [];
  private readonly cleanups: (() => unknown)[] = [];

  private constructor(options: BerthdWorldOptions) {
    mkdirSync('/var/lib/berth-test', { recursive: true });
    this.dir = mkdtempSync('/var/lib/berth-test/berthd-');
    this.configFile = join(this.dir, 'berth.yaml');
    this.csiSocket = join(this.dir, 'csi.sock');
    this.csiRoot = join(this.dir, 'csi-root');
    this.csiHostDir = join(this.dir, 'host');
    this.cnidSocket = join(this.dir, 'cni.sock');
    this.kubeletDir = join(this.dir, 'device-plugins');
    this.fakeDir = join(this.dir, 'fake-gpu');
    this.gpus = options.gpus ?? fakeGpus(2);
    this.kubelet = new FakeKubelet(this.kubeletDir);
    this.cri = options.cri;
    for (const d of [this.csiHostDir, this.kubeletDir, this.fakeDir]) mkdirSync(d, { recursive: true });
    this.writeGpus(JSON.stringify(this.gpus, null, 2));
    writeFileSync(join(this.fakeDir, 'events'), '');
  }

  static async start(options: BerthdWorldOptions = {}): Promise<BerthdWorld> {
    const world = new BerthdWorld(options);
    try {
      await world.kubelet.start();
    } catch (err) {
      await world.stop();
      throw err;
    }
    return world;
  }

  /** Replace the fake backend's gpus.json (a broken one makes the gpu component fail to start). */
  writeGpus(text: string): void {
    writeFileSync(join(this.fakeDir, 'gpus.json'), text);
  }

  /** Where the overlay writes the node's subnet (subnet.env). */
  get subnetFile(): string {
    return join(this.dir, 'overlay', 'subnet.env');
  }

  /** The overlay's underlay and network, made on first use (root namespace: a dummy link, a VNI and /16 of its own). */
  get overlay(): OverlaySetup {
    if (this.overlaySetup) return this.overlaySetup;
    const underlay = uniqueName('bdu');
    const octet = 1 + Math.floor(Math.random() * 250);
    const underlayAddress = `10.216.${octet}.1`;
    const vni = 2000 + Math.floor(Math.random() * 7000);
    const network = `10.${230 + Math.floor(Math.random() * 20)}.0.0/16`;
    // A veth pair (this kernel may lack the dummy driver) whose one end holds the underlay address.
    sh('ip', ['link', 'add', underlay, 'type', 'veth', 'peer', 'name', `${underlay}p`]);
    this.cleanups.push(() => trySh('ip', ['link', 'del', underlay]));
    // The VXLAN device the overlay makes (a crash leaves it; it is the kernel's state).
    this.cleanups.push(() => trySh('ip', ['link', 'del', `berth.${vni}`]));
    sh('ip', ['addr', 'add', `${underlayAddress}/24`, 'dev', underlay]);
    sh('ip', ['link', 'set', `${underlay}p`, 'up']);
    sh('ip', ['link', 'set', underlay, 'up']);
    const dir = join(this.dir, 'overlay');
    mkdirSync(dir, { recursive: true });
    const networkConfigFile = join(dir, 'net-conf.json');
    writeFileSync(networkConfigFile, JSON.stringify({ Network: network, SubnetLen: 24, Backend: { Type: 'vxlan', VNI: vni } }));
    this.overlaySetup = {
      underlay,
      underlayAddress,
      vni,
      device: `berth.${vni}`,
      network,
      networkConfigFile,
      leaseFile: join(dir, 'lease.json'),
      subnetFile: this.subnetFile,
    };
    return this.overlaySetup;
  }

  /** The berth.yaml section of one component in this world. */
  section(name: ComponentName): Record<string, unknown> {
    switch (name) {
      case 'cri':
        if (!this.cri) throw new Error('this BerthdWorld has no CRI world');
        return this.cri.criSettings(join(this.dir, 'cri.sock'));
      case 'csi':
        return { nodeId: 'berthd-node', root: this.csiRoot, endpoint: `unix://${this.csiSocket}` };
      case 'gpu':
        return { backend: 'fake', fakeDir: this.fakeDir, kubeletDir: this.kubeletDir, cdiSpecDir: join(this.dir, 'cdi') };
      case 'overlay': {
        const o = this.overlay;
        return { leaseStore: 'file', networkConfig: o.networkConfigFile, leaseFile: o.leaseFile, subnetFile: o.subnetFile, iface: [o.underlay], resyncInterval: '1s' };
      }
      case 'cnid':
        return { socket: this.cnidSocket };
    }
  }

  /** A whole berth.yaml: these components' sections, a short restart backoff, debug logs; `extra` overrides. */
  document(names: readonly ComponentName[], extra: Record<string, unknown> = {}): Record<string, unknown> {
    const doc: Record<string, unknown> = { logLevel: 'debug', restartBackoffMaxMs: 500 };
    for (const name of names) doc[name] = this.section(name);
    return { ...doc, ...extra };
  }

  /** The socket (file) each component serves in this world. */
  socketOf(name: ComponentName): string {
    switch (name) {
      case 'cri':
        return join(this.dir, 'cri.sock');
      case 'csi':
        return this.csiSocket;
      case 'gpu':
        return join(this.kubeletDir, 'berth-gpu.sock');
      case 'overlay':
        return this.subnetFile;
      case 'cnid':
        return this.cnidSocket;
    }
  }

  /**
   * A berthd on this world's berth.yaml (written from `doc`), launched; stopped by stop().
   * BERTH_CNI_SOCKET points the CRI's plugin calls at this world's cnid.
   */
  async berthd(doc: Record<string, unknown>, env: Record<string, string | undefined> = {}): Promise<BerthdProcess> {
    const p = new BerthdProcess(this.configFile, { BERTH_CNI_SOCKET: this.cnidSocket, ...env });
    this.processes.push(p);
    p.writeConfig(doc);
    await p.launch();
    return p;
  }

  /** CSI callers on the world's CSI socket (a fresh connection each call). */
  csi(): { identity: Caller<typeof csi.IdentityService>; controller: Caller<typeof csi.ControllerService>; node: Caller<typeof csi.NodeService> } {
    const client = new Client(`unix://${this.csiSocket}`, credentials.createInsecure());
    this.clients.push(client);
    return { identity: csiCaller(client, csi.IdentityService), controller: csiCaller(client, csi.ControllerService), node: csiCaller(client, csi.NodeService) };
  }

  /** A CNI call through a plugin executable (the C shim) with BERTH_CNI_SOCKET at this world's cnid. */
  cni(plugin: string, call: Parameters<typeof runCni>[1], stdin: string | object): Promise<CniOutcome> {
    return runCni(berthPlugin(plugin), { ...call, env: { BERTH_CNI_SOCKET: this.cnidSocket, BERTH_LOG_LEVEL: undefined, ...call.env } }, stdin);
  }

  /** CNI VERSION through dist/cni/berth-bridge. */
  cniVersion(): Promise<CniOutcome> {
    return this.cni('berth-bridge', { command: 'VERSION' }, { cniVersion: '1.0.0' });
  }

  /** Requests berthd's cnid served itself (debug log), by command. */
  static cnidServed(p: BerthdProcess, command?: string): LogLine[] {
    return p.thisRun().filter((l) => l.component === 'cnid' && l.msg === 'request done' && (command === undefined || l.command === command));
  }

  /** Kill every berthd, then remove every mount, loop device, link and file the world made. */
  async stop(): Promise<void> {
    for (const p of this.processes.splice(0)) await p.kill().catch(() => undefined);
    for (const c of this.clients.splice(0)) c.close();
    await this.kubelet.stop().catch(() => undefined);
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // keep cleaning
      }
    }
    releaseUnder(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
