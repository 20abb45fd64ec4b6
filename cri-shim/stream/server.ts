import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { BerthError } from '../../lib/errors.js';
import type { AttachRequest, ExecRequest, PortForwardRequest } from '../../proto/gen/runtime/v1/api.js';
import type { PreparedExec } from './exec.js';

// The CRI streaming server: Exec, Attach and PortForward answer with a one-time URL on this
// HTTP server, and the client (kubelet's proxy, kubectl, crictl) upgrades that URL to a SPDY
// (or WebSocket) connection that carries the streams. A token names the cached request; it
// works once and expires after a minute, as kubelet's own streaming server does.

export type StreamRequest =
  // prepared: the exec's process, begun when the URL was issued (see url()).
  | { kind: 'exec'; request: ExecRequest; prepared?: Promise<PreparedExec> }
  | { kind: 'attach'; request: AttachRequest }
  | { kind: 'portforward'; request: PortForwardRequest };

/** Serves one upgraded request; `head` is what the client sent past the HTTP header. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, stream: StreamRequest) => void;

const defaultTokenTtlMs = 60_000;

/**
 * What a client may make the HTTP side hold before its upgrade: the request head (Node answers
 * 431 past it), and how long the head may take to arrive, byte by byte or not at all (408). The
 * upgraded connection is the streaming session's, with its own limits and idle timeout.
 */
const upgradeRequestLimits = {
  maxHeaderSize: 16 * 1024,
  headersTimeout: 10_000,
  requestTimeout: 15_000,
  // How often those deadlines are checked: a slow client is cut off at most this much late.
  connectionsCheckingInterval: 1000,
};

/** Answer an upgrade request with an HTTP error and a one-line reason, and close (not waiting for a client that lingers). */
export function refuseUpgrade(socket: Duplex, status: string, message: string): void {
  const body = `${message}\n`;
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`, () => socket.destroy());
}

export interface StreamServerOptions {
  address: string;
  port: number;
  tls?: { cert: string; key: string };
  log: Logger;
  /** How long an unused URL stays valid (default a minute). */
  tokenTtlMs?: number;
}

interface Token {
  stream: StreamRequest;
  expires: number;
  /** Undoes work begun for the URL, when it expires unused or the server stops. */
  drop?: () => void;
}

export class StreamServer {
  private readonly tokens = new Map<string, Token>();
  private readonly tokenTtlMs: number;
  private server?: Server;
  private baseUrl = '';
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly options: StreamServerOptions,
    private readonly handler: UpgradeHandler,
  ) {
    this.tokenTtlMs = options.tokenTtlMs ?? defaultTokenTtlMs;
    this.sweeper = setInterval(() => this.sweep(), Math.min(this.tokenTtlMs, defaultTokenTtlMs)).unref();
  }

  async start(): Promise<string> {
    const server = this.options.tls
      ? createHttpsServer({ ...upgradeRequestLimits, cert: this.options.tls.cert, key: this.options.tls.key })
      : createHttpServer(upgradeRequestLimits);
    server.on('request', (req, res) => {
      // Streaming needs an upgrade; a plain request gets told so (and a stale token, 404).
      const found = this.peek(req.url ?? '');
      res.writeHead(found ? 400 : 404, { 'content-type': 'text/plain' });
      res.end(found ? 'this URL must be upgraded to SPDY/3.1 or WebSocket\n' : 'unknown or expired streaming token\n');
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Node's own listeners are gone once a socket is upgraded: without this one, a client
      // that resets the connection while we answer would crash the daemon.
      socket.on('error', (err) => this.options.log.debug({ err: err.message }, 'streaming connection error'));
      const stream = this.take(req.url ?? '');
      if (!stream) {
        refuseUpgrade(socket, '404 Not Found', 'unknown or expired streaming token');
        return;
      }
      try {
        this.handler(req, socket, head, stream);
      } catch (err) {
        this.options.log.warn({ err: (err as Error).message }, 'streaming request failed');
        socket.destroy();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Failing to accept a connection (out of file descriptors) is worth a line, not the daemon.
    server.on('error', (err) => this.options.log.warn({ err: err.message }, 'streaming server error'));
    this.server = server;
    const { address, port } = server.address() as AddressInfo;
    const host = address.includes(':') ? `[${address}]` : address;
    this.baseUrl = `${this.options.tls ? 'https' : 'http'}://${host}:${port}`;
    return this.baseUrl;
  }

  /**
   * A one-time URL for a streaming request. `drop` undoes work begun for it ahead of the upgrade
   * (an exec's process): called if the URL expires unused or the server stops, never once the
   * upgrade has taken the request.
   */
  url(stream: StreamRequest, drop?: () => void): string {
    if (!this.server) throw new BerthError('not-available', 'the streaming server is not running');
    const token = randomBytes(12).toString('base64url');
    this.tokens.set(token, { stream, expires: Date.now() + this.tokenTtlMs, drop });
    return `${this.baseUrl}/${stream.kind}/${token}`;
  }

  /** URLs issued with work begun for them and not used yet (what bounds that work). */
  get pendingWork(): number {
    let n = 0;
    for (const t of this.tokens.values()) if (t.drop) n++;
    return n;
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    for (const t of this.tokens.values()) t.drop?.();
    this.tokens.clear();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private parse(url: string): { kind: string; token: string } | undefined {
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)(?:\?.*)?$/.exec(url);
    return m ? { kind: m[1]!, token: m[2]! } : undefined;
  }

  private peek(url: string): StreamRequest | undefined {
    const p = this.parse(url);
    const entry = p && this.tokens.get(p.token);
    return entry && entry.expires > Date.now() && entry.stream.kind === p.kind ? entry.stream : undefined;
  }

  private take(url: string): StreamRequest | undefined {
    const stream = this.peek(url);
    if (stream) this.tokens.delete(this.parse(url)!.token);
    return stream;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, entry] of this.tokens) {
      if (entry.expires > now) continue;
      this.tokens.delete(token);
      entry.drop?.();
    }
  }
}
