import { AsyncLocalStorage } from 'node:async_hooks';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { executePlugin, type CniPlugin } from '../../lib/cni/skeleton.js';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { callerMismatch, ownView, peerView, type ProcessView } from './peer.js';
import { encodeResult, encodeVerdict, FrameDecoder, parseHello, type Hello, type PluginResult, type Verdict } from '../../lib/cni/cnid-protocol.js';

// berth-cnid's core: accept connections, decide whether this process can run the request exactly
// as the standalone executable would (same build, log level, and - asked of the kernel, not the
// caller, see peer.ts - the same namespaces, root, cwd, ids, umask and capabilities),
// and if so run executePlugin - the code path of the executable - and send back what the
// executable would have printed and its exit code. When in doubt it answers "mismatch" and the
// shim runs the plugin itself: the daemon may only make things faster, never different.

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPlugin = CniPlugin<any>;

export interface DaemonOptions {
  plugins: readonly AnyPlugin[];
  buildId: string;
  log: Logger;
  /** A connection that has not delivered its request within this time is dropped. */
  requestTimeoutMs?: number;
  /** Connections open at once; past them a caller is declined and runs its plugin standalone. */
  maxConnections?: number;
}

/**
 * How many callers berth-cnid holds at once. Each may have a request of up to maxFrameBytes on
 * its way in, so this bounds what callers can make the daemon buffer; a node's runtime makes a
 * few CNI calls at a time, and one declined still gets its answer (standalone, slower).
 */
export const defaultMaxConnections = 64;

type Phase = 'hello' | 'stdin' | 'running' | 'done';

/** How long an answered client may keep its side open (the shim closes at once). */
const answeredTimeoutMs = 5_000;

interface Connection {
  socket: Socket;
  phase: Phase;
}

/** The level lib/cni/log.ts derives from BERTH_LOG_LEVEL (kept in step with its threshold()). */
export function effectiveCniLogLevel(value: string | undefined): string {
  if (value === 'silent') return 'silent';
  return value === 'error' || value === 'warn' || value === 'info' || value === 'debug' ? value : 'warn';
}

// Plugins log through process.stderr (lib/cni/log.ts). Inside the daemon each request's writes
// are routed to that request's buffer, found through the async context the request runs in, and
// sent back to the shim, which prints them on its own stderr as the executable would have.
const requestStderr = new AsyncLocalStorage<Buffer[]>();
let stderrRouted = false;

function routeStderrPerRequest(): void {
  if (stderrRouted) return;
  stderrRouted = true;
  const original = process.stderr.write.bind(process.stderr) as (...args: unknown[]) => boolean;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    const sink = requestStderr.getStore();
    if (!sink) return original(chunk, ...rest);
    const encoding = typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8';
    sink.push(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : Buffer.from(chunk));
    const done = rest.find((r): r is () => void => typeof r === 'function');
    if (done) queueMicrotask(done);
    return true;
  }) as typeof process.stderr.write;
}

export class CniDaemon {
  private readonly plugins = new Map<string, AnyPlugin>();
  private readonly connections = new Set<Connection>();
  /** The daemon as the kernel shows it, read once: what every caller is compared with. */
  private readonly own: ProcessView = ownView();
  private readonly reportedMismatches = new Set<string>();
  private server: Server | undefined;
  private stopping = false;
  private localCalls = 0;
  /** Requests served, by how they came (berthd's /metrics shows them). */
  readonly served = { socket: 0, 'in-process': 0 };
  /** Callers declined because maxConnections were open. */
  declinedBusy = 0;
  private busyLoggedAt = 0;
  private drained: (() => void) | undefined;

  constructor(private readonly options: DaemonOptions) {
    for (const p of options.plugins) this.plugins.set(p.name, p);
    routeStderrPerRequest();
  }

  get pluginNames(): string[] {
    return [...this.plugins.keys()];
  }

  /** Listen on a path: directory created, a stale socket replaced, the socket mode 0600. */
  async listenOnPath(path: string): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    await removeStaleSocket(path);
    // Nobody but root may connect, not even between bind and chmod: bind under umask 177.
    const previous = process.umask(0o177);
    try {
      await this.listen((server, done) => server.listen(path, done));
    } finally {
      process.umask(previous);
    }
    chmodSync(path, 0o600);
  }

  /** Listen on an inherited, already bound and listening socket (systemd socket activation). */
  async listenOnFd(fd: number): Promise<void> {
    await this.listen((server, done) => server.listen({ fd }, done));
  }

  private listen(start: (server: Server, done: () => void) => void): Promise<void> {
    // Half-open: a client may shut down its side after the request and still read the answer.
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      start(server, () => {
        server.off('error', reject);
        server.on('error', (err) => this.options.log.error({ err: errorMessage(err) }, 'listener error'));
        resolve();
      });
    });
  }

  /**
   * Stop accepting, let requests that already have their stdin finish, and resolve when every
   * connection is closed. Connections still before their verdict are dropped: their shims see the
   * daemon gone before it took the request, and run the plugin themselves.
   */
  stop(): Promise<void> {
    this.stopping = true;
    this.server?.close();
    for (const c of this.connections) if (c.phase === 'hello') c.socket.destroy();
    if (this.connections.size === 0 && this.localCalls === 0) return Promise.resolve();
    return new Promise((resolve) => (this.drained = resolve));
  }

  private accept(socket: Socket): void {
    const conn: Connection = { socket, phase: 'hello' };
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const max = this.options.maxConnections ?? defaultMaxConnections;
    if (this.connections.size >= max) {
      // Declined before the caller sent anything: its shim runs the plugin itself.
      this.declinedBusy++;
      if (Date.now() - this.busyLoggedAt > 10_000) {
        this.busyLoggedAt = Date.now();
        this.options.log.warn({ open: this.connections.size, declined: this.declinedBusy }, 'too many connections; declining callers, who run their plugins standalone');
      }
      socket.on('error', () => undefined);
      socket.end(encodeVerdict({ kind: 'mismatch', reason: `berth-cnid has ${max} connections open` }));
      return;
    }
    this.connections.add(conn);
    const decoder = new FrameDecoder();
    let hello: Hello | undefined;
    socket.setTimeout(this.options.requestTimeoutMs ?? 60_000, () => {
      // A client that never sends its request, or never closes after the answer, is dropped;
      // a running plugin is never interrupted.
      if (conn.phase !== 'running') socket.destroy();
    });
    socket.on('error', (err) => this.options.log.debug({ err: errorMessage(err) }, 'connection error'));
    socket.on('close', () => {
      this.connections.delete(conn);
      if (this.connections.size === 0 && this.localCalls === 0) this.drained?.();
    });
    socket.on('data', (chunk: Buffer) => {
      if (conn.phase === 'done') return; // answered or refused: the rest is of no interest
      let frames: Buffer[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        this.refuse(conn, errorMessage(err));
        return;
      }
      for (const frame of frames) {
        if (conn.phase === 'hello') {
          try {
            hello = parseHello(frame);
          } catch (err) {
            this.refuse(conn, errorMessage(err));
            return;
          }
          const verdict = this.verdictFor(hello, socket);
          socket.write(encodeVerdict(verdict));
          if (verdict.kind !== 'ok') {
            conn.phase = 'done';
            socket.end();
            return;
          }
          conn.phase = 'stdin';
        } else if (conn.phase === 'stdin') {
          conn.phase = 'running';
          socket.setTimeout(0);
          void this.run(conn, hello!, frame);
        } else {
          // A shim sends nothing after STDIN; anything else is a confused client.
          this.options.log.warn({ phase: conn.phase }, 'unexpected data after the request; ignored');
        }
      }
    });
    socket.on('end', () => {
      // The client went away before sending its whole request: nothing ran, nothing to answer.
      if (conn.phase === 'hello' || conn.phase === 'stdin') socket.destroy();
    });
  }

  private refuse(conn: Connection, reason: string): void {
    this.options.log.warn({ reason }, 'malformed request');
    conn.phase = 'done';
    const verdict: Verdict = { kind: 'error', reason: reason.slice(0, 1000) };
    conn.socket.end(encodeVerdict(verdict));
  }

  /** "ok" only when the run here would be indistinguishable from a standalone run. */
  verdictFor(hello: Hello, socket: Socket): Verdict {
    const reason = this.mismatchReason(hello, socket);
    if (reason === undefined) return { kind: 'ok' };
    if (!this.reportedMismatches.has(reason) && this.reportedMismatches.size < 100) {
      // Each distinct reason once at info: a caller that never gets accelerated should be visible.
      this.reportedMismatches.add(reason);
      this.options.log.info({ plugin: hello.plugin, reason }, 'declined a request; the plugin runs standalone');
    }
    return { kind: 'mismatch', reason };
  }

  private mismatchReason(hello: Hello, socket: Socket): string | undefined {
    if (this.stopping) return 'the daemon is stopping';
    if (hello.buildId !== this.options.buildId) return `caller build ${hello.buildId} differs from the daemon's ${this.options.buildId}`;
    if (!this.plugins.has(hello.plugin)) return `unknown plugin ${JSON.stringify(hello.plugin)}`;
    // Plugins resolve relative paths, the host namespace and file modes from the process: the
    // caller's, as the kernel shows it, must be the daemon's.
    const caller = this.callerReason(hello, socket);
    if (caller !== undefined) return caller;
    return this.environmentReason(hello);
  }

  /** What the request's environment asks that this process cannot give the plugin. */
  private environmentReason(hello: Pick<Hello, 'env'>): string | undefined {
    // lib/cni/log.ts reads the level from process.env, so only the daemon's own level can be served.
    const level = effectiveCniLogLevel(hello.env.BERTH_LOG_LEVEL);
    if (level !== effectiveCniLogLevel(process.env.BERTH_LOG_LEVEL)) return `BERTH_LOG_LEVEL=${level} is not the daemon's level`;
    // The plugins look tools up with the request's PATH (lib/netfilter.ts takes the request env),
    // but a tool found elsewhere may differ in version or backend: only callers with the
    // daemon's PATH are served - under systemd both have its default.
    if ((hello.env.PATH ?? '') !== (process.env.PATH ?? '')) return `caller PATH ${JSON.stringify(hello.env.PATH ?? '')} differs from the daemon's`;
    // These change what Node itself does at start-up (preloads, core debug output).
    for (const name of ['NODE_OPTIONS', 'NODE_DEBUG']) {
      const value = hello.env[name] ?? '';
      if (value !== '' && value !== (process.env[name] ?? '')) return `${name} is set`;
    }
    return undefined;
  }

  private callerReason(hello: Hello, socket: Socket): string | undefined {
    try {
      return callerMismatch(hello.context, peerView(socket, this.own), this.own);
    } catch (err) {
      // Gone before we looked, or a kernel without what we need: the caller runs standalone. The
      // reason names no pid or fd, so that the "log each reason once" set stays small.
      this.options.log.debug({ err: errorMessage(err) }, 'cannot inspect the caller');
      const code = (err as { code?: unknown }).code;
      return `cannot inspect the caller's process (${typeof code === 'string' ? code : errorMessage(err)})`;
    }
  }

  /**
   * A request from this very process (berthd's CRI calling the plugins of its cnid component,
   * lib/cni/in-process.ts): the caller is the daemon, so only the build, the plugin and the
   * environment are checked. Resolves to the plugin's output, or to why it is declined.
   */
  async serveLocal(plugin: string, env: Record<string, string>, stdin: string): Promise<PluginResult | string> {
    const reason = this.stopping ? 'the daemon is stopping' : !this.plugins.has(plugin) ? `unknown plugin ${JSON.stringify(plugin)}` : this.environmentReason({ env });
    if (reason !== undefined) return reason;
    this.localCalls++;
    try {
      return await this.execute(plugin, env, Buffer.from(stdin), 'in-process');
    } finally {
      this.localCalls--;
      if (this.localCalls === 0 && this.connections.size === 0) this.drained?.();
    }
  }

  private async run(conn: Connection, hello: Hello, stdin: Buffer): Promise<void> {
    const result = await this.execute(hello.plugin, hello.env, stdin, 'socket');
    conn.phase = 'done';
    if (conn.socket.destroyed) return;
    conn.socket.end(encodeResult(result));
    conn.socket.setTimeout(answeredTimeoutMs);
  }

  /** Run one request to the end; never throws (a failure is the spec's error object). */
  private async execute(name: string, env: Record<string, string>, stdin: Buffer, via: 'socket' | 'in-process'): Promise<PluginResult> {
    const plugin = this.plugins.get(name)!;
    const started = performance.now();
    const stderr: Buffer[] = [];
    let exitCode: number;
    let stdout: string;
    try {
      // Same decoding as the executable's readFileSync(0, 'utf8').
      const outcome = await requestStderr.run(stderr, () => executePlugin(plugin, { env, stdin: stdin.toString('utf8') }));
      exitCode = outcome.exitCode;
      // The executable prints the result followed by a newline, and nothing when there is none.
      stdout = outcome.stdout ? outcome.stdout + '\n' : '';
    } catch (err) {
      // executePlugin is written never to throw; should it, the runtime still gets a spec error.
      exitCode = 1;
      stdout = JSON.stringify({ cniVersion: '1.1.0', code: 999, msg: `berth-cnid: ${errorMessage(err)}` }) + '\n';
    }
    this.options.log.debug(
      { plugin: plugin.name, command: env.CNI_COMMAND, containerId: env.CNI_CONTAINERID, exitCode, via, ms: Math.round((performance.now() - started) * 10) / 10 },
      'request done',
    );
    this.served[via]++;
    return { exitCode, stdout: Buffer.from(stdout), stderr: Buffer.concat(stderr) };
  }
}

/** Remove a socket file nobody listens on; refuse to touch anything else. */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new BerthError('already-exists', `${path} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new BerthError('already-exists', `another process is listening on ${path} (is berth-cnid already running?)`);
  unlinkSync(path);
}
