import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

// A hostile WebSocket client on raw TCP, independent of lib/stream: it upgrades a streaming URL
// with a *.channel.k8s.io subprotocol, writes whatever bytes a test builds (frame() of the
// WebSocket unit fixtures makes masked frames), and reads the server's frames: the bytes per
// channel, the text of the error channel (3), and the Close.

export class WsWire {
  /** Payload bytes received per channel (the first byte of each binary message). */
  readonly bytesOn = new Map<number, number>();
  /** Channel 3 (the outcome), as text. */
  status = '';
  close?: { code: number; reason: string };
  ended?: { error?: string };
  readonly closed: Promise<void>;
  private buf: Buffer = Buffer.alloc(0);

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (this.ended = { error: err.code ?? err.message }));
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended ??= {};
        resolve();
      }),
    );
  }

  static async upgrade(url: string, protocol = 'v5.channel.k8s.io'): Promise<WsWire> {
    const u = new URL(url);
    const socket = connect(Number(u.port), u.hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.write(
      `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
    );
    let head: Buffer = Buffer.alloc(0);
    const rest = await new Promise<Buffer>((resolve, reject) => {
      const onData = (c: Buffer): void => {
        head = Buffer.concat([head, c]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.pause();
        const status = head.subarray(0, end).toString('latin1');
        if (!status.startsWith('HTTP/1.1 101')) reject(new Error(`upgrade refused: ${status}`));
        else resolve(head.subarray(end + 4));
      };
      socket.on('data', onData);
      socket.once('error', reject);
    });
    const wire = new WsWire(socket);
    if (rest.length) wire.onData(rest);
    socket.resume();
    return wire;
  }

  /** Resolves once the server's Close arrived or the connection is gone. */
  async closeOrEnd(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.close && !this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      let len = b[1]! & 0x7f;
      let pos = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        pos = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        pos = 10;
      }
      if (b.length < pos + len) return;
      const opcode = b[0]! & 0x0f;
      const payload = b.subarray(pos, pos + len);
      if (opcode === 0x8) {
        this.close = { code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005, reason: payload.subarray(2).toString() };
      } else if (opcode === 0x2 && payload.length) {
        const n = payload[0]!;
        this.bytesOn.set(n, (this.bytesOn.get(n) ?? 0) + payload.length - 1);
        if (n === 3) this.status += payload.subarray(1).toString();
      }
      this.buf = b.subarray(pos + len);
    }
  }
}
