import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './registry.js';

// A real single-member etcd (Debian's etcd-server, 3.4) for tests and benchmarks: its own data
// directory and free ports, optionally also listening on addresses other network namespaces
// reach (an underlay bridge). restart() keeps data and ports, as a real etcd restart would.

export const etcdBinary = '/usr/bin/etcd';

export interface EtcdTls {
  certFile: string;
  keyFile: string;
  /** The CA clients are checked against; set to require client certificates. */
  clientCaFile?: string;
}

export interface EtcdWorldOptions {
  /** More addresses to serve clients on (same port as 127.0.0.1), e.g. a bridge address. */
  extraListenAddresses?: string[];
  /** Serve clients over TLS with this certificate. */
  tls?: EtcdTls;
  /** Compact history automatically (etcd's --auto-compaction-retention, revision mode). */
  autoCompactionRevisions?: number;
}

/** Why etcd tests cannot run here, or undefined. */
export function etcdSkipReason(): string | undefined {
  return existsSync(etcdBinary) ? undefined : `${etcdBinary} is missing (apt-get install etcd-server)`;
}

// Every etcd started and not yet stopped, so a test run that dies still leaves no process behind.
const running = new Set<EtcdWorld>();
process.once('exit', () => {
  for (const world of running) world.killSync();
});

export class EtcdWorld {
  readonly dir: string;
  private readonly name = 'berth-test';
  private clientPort = 0;
  private peerPort = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  private constructor(private readonly options: EtcdWorldOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'berth-etcd-'));
  }

  /** Start a fresh etcd and wait until it answers /health. */
  static async start(options: EtcdWorldOptions = {}): Promise<EtcdWorld> {
    const world = new EtcdWorld(options);
    running.add(world);
    try {
      world.clientPort = await freePort();
      world.peerPort = await freePort();
      await world.launch();
      return world;
    } catch (err) {
      await world.stop();
      throw err;
    }
  }

  private get scheme(): string {
    return this.options.tls ? 'https' : 'http';
  }

  /** Client URLs, 127.0.0.1 first. */
  get endpoints(): string[] {
    return ['127.0.0.1', ...(this.options.extraListenAddresses ?? [])].map((a) => `${this.scheme}://${a.includes(':') ? `[${a}]` : a}:${this.clientPort}`);
  }

  get logFile(): string {
    return join(this.dir, 'etcd.log');
  }

  /** The last lines etcd logged, for error messages. */
  logTail(chars = 3000): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').slice(-chars) : '';
  }

  private async launch(): Promise<void> {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const tls = this.options.tls;
    const args = [
      `--name=${this.name}`,
      `--data-dir=${join(this.dir, 'data')}`,
      `--listen-client-urls=${this.endpoints.join(',')}`,
      `--advertise-client-urls=${this.endpoints[0]}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${this.name}=${peer}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-outputs=stderr',
      ...(this.options.autoCompactionRevisions ? ['--auto-compaction-mode=revision', `--auto-compaction-retention=${this.options.autoCompactionRevisions}`] : []),
      ...(tls ? [`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`] : []),
      ...(tls?.clientCaFile ? ['--client-cert-auth', `--trusted-ca-file=${tls.clientCaFile}`] : []),
    ];
    const log = openSync(this.logFile, 'a');
    const child = spawn(etcdBinary, args, { stdio: ['ignore', log, log] });
    closeSync(log);
    this.child = child;
    let gone = false;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        gone = true;
        resolve();
      });
      child.once('error', () => {
        gone = true;
        resolve();
      });
    });
    for (let i = 0; i < 200 && !gone; i++) {
      if (await this.healthy()) return;
      await sleep(50);
    }
    const why = gone ? 'exited' : 'did not become healthy in 10 s';
    await this.halt('SIGKILL');
    throw new Error(`etcd on ${this.endpoints[0]} ${why}:\n${this.logTail()}`);
  }

  /** Whether etcd answers GET /health with {"health":"true"}. */
  healthy(): Promise<boolean> {
    const url = `${this.endpoints[0]}/health`;
    const tls = this.options.tls;
    return new Promise((resolve) => {
      const answered = (res: http.IncomingMessage): void => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
      };
      // The probe presents the server's own certificate, which client-cert-auth accepts (same CA).
      const req = tls
        ? https.get(url, { rejectUnauthorized: false, agent: false, cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, answered)
        : http.get(url, { agent: false }, answered);
      req.on('error', () => resolve(false));
      req.setTimeout(1000, () => req.destroy());
    });
  }

  private async halt(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timedOut = await Promise.race([this.exited.then(() => false), sleep(5000).then(() => true)]);
      if (timedOut) {
        child.kill('SIGKILL');
        await this.exited;
      }
    }
  }

  /** Stop etcd gracefully (SIGTERM) but keep its data, for restart(). */
  async pause(): Promise<void> {
    await this.halt('SIGTERM');
  }

  /** Stop and start again on the same data directory and ports. */
  async restart(): Promise<void> {
    await this.halt('SIGTERM');
    await this.launch();
  }

  /** SIGKILL etcd (a crash); start it again with resume(). */
  async kill(): Promise<void> {
    await this.halt('SIGKILL');
  }

  /** Start a paused or killed etcd again on the same data and ports. */
  async resume(): Promise<void> {
    if (!this.child) await this.launch();
  }

  /** Stop etcd and remove its data directory. Safe to call twice. */
  async stop(): Promise<void> {
    await this.halt('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
    running.delete(this);
  }

  /** Last-resort cleanup from a process 'exit' handler. */
  killSync(): void {
    this.child?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
