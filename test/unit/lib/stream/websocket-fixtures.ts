import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, expect } from 'vitest';
import { acceptWebSocket, connectWebSocket, type AcceptOptions, type ConnectOptions } from '../../../../lib/stream/websocket-handshake.js';
import type { WebSocket } from '../../../../lib/stream/websocket.js';

// Shared by the WebSocket and the WebSocket handshake tests: a raw TCP peer that reads what
// lib/stream sends byte for byte, and servers and clients over 127.0.0.1 that are closed after each test.

export const Op = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const;

/** A frame as a client (masked) or server (unmasked) puts it on the wire, built independently of lib/stream/websocket. */
export function frame(opcode: number, payload: Buffer | string, o: { fin?: boolean; mask?: boolean; rsv?: number } = {}): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = body.length;
  const ext = len < 126 ? [] : len < 65536 ? [126, len >> 8, len & 0xff] : [127, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff];
  const mask = o.mask === false ? undefined : randomBytes(4);
  const head = [((o.fin ?? true) ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | opcode, (mask ? 0x80 : 0) | (ext.length ? ext[0]! : len), ...ext.slice(1)];
  const out = Buffer.concat([Buffer.from(head), mask ?? Buffer.alloc(0), body]);
  if (mask) for (let i = 0; i < body.length; i++) out[head.length + 4 + i] = body[i]! ^ mask[i % 4]!;
  return out;
}

export const closePayload = (code: number, reason = ''): Buffer => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);

export type WireFrame = { fin: boolean; opcode: number; payload: Buffer };

/** A raw TCP peer: reads an HTTP head, then frames (unmasking them if masked). */
export class RawPeer {
  private buf = Buffer.alloc(0);
  private wake: () => void = () => undefined;
  private closedFlag = false;
  readonly closed: Promise<void>;

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.closedFlag = true;
        this.wake();
        resolve();
      }),
    );
  }

  private async until<T>(parse: () => T | undefined): Promise<T> {
    for (;;) {
      const got = parse();
      if (got !== undefined) return got;
      if (this.closedFlag) throw new Error(`connection closed with ${this.buf.length} unparsed bytes`);
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Bytes received and not parsed yet. */
  rest(): Buffer {
    return this.buf;
  }

  head(): Promise<string> {
    return this.until(() => {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const text = this.buf.subarray(0, end).toString('latin1');
      this.buf = this.buf.subarray(end + 4);
      return text;
    });
  }

  frame(): Promise<WireFrame> {
    return this.until(() => {
      const b = this.buf;
      if (b.length < 2) return undefined;
      let len = b[1]! & 0x7f;
      let pos = 2;
      if (len === 126) {
        if (b.length < 4) return undefined;
        len = b.readUInt16BE(2);
        pos = 4;
      } else if (len === 127) {
        if (b.length < 10) return undefined;
        len = Number(b.readBigUInt64BE(2));
        pos = 10;
      }
      const masked = (b[1]! & 0x80) !== 0;
      const mask = masked ? b.subarray(pos, pos + 4) : undefined;
      if (mask) pos += 4;
      if (b.length < pos + len) return undefined;
      const payload = Buffer.from(b.subarray(pos, pos + len));
      if (mask) for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ mask[i % 4]!;
      this.buf = b.subarray(pos + len);
      return { fin: (b[0]! & 0x80) !== 0, opcode: b[0]! & 0x0f, payload };
    });
  }
}

/** Call inside a describe: what the returned helpers open is closed after each of its tests. */
export function webSocketHarness() {
  const servers: Server[] = [];
  const sockets: { destroy(): void }[] = [];
  const clients: WebSocket[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.terminate();
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  /** An HTTP server whose upgrades go through acceptWebSocket; returns its port. */
  async function wsServer(protocols: readonly string[], onSocket: (ws: WebSocket, req: IncomingMessage) => void, options?: AcceptOptions): Promise<number> {
    return listen((server) =>
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        const ws = acceptWebSocket(req, socket, head, protocols, options);
        if (ws) onSocket(ws, req);
      }),
    );
  }

  async function listen(setup: (server: Server) => void): Promise<number> {
    const server = createServer((_req, res) => res.writeHead(404).end());
    server.on('connection', (s) => sockets.push(s));
    setup(server);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  async function client(port: number, protocols: readonly string[] = [], options?: ConnectOptions): Promise<WebSocket> {
    const ws = await connectWebSocket(`ws://127.0.0.1:${port}/stream`, protocols, options);
    clients.push(ws);
    return ws;
  }

  /** A raw TCP client that has completed the opening handshake. */
  async function rawClient(port: number): Promise<RawPeer> {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.setNoDelay(true);
    const peer = new RawPeer(socket);
    socket.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(await peer.head()).toMatch(/^HTTP\/1\.1 101 .*\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/s);
    return peer;
  }

  return { sockets, wsServer, listen, client, rawClient };
}
