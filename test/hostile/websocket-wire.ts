import { randomBytes } from 'node:crypto';
import { RawWire, upgradeTo } from './raw-client.js';

// A hostile WebSocket client on raw TCP, independent of lib/stream: it upgrades a streaming URL
// with a *.channel.k8s.io subprotocol, writes whatever bytes a test builds (frame() of the
// WebSocket unit fixtures makes masked frames), and reads the server's frames: the bytes per
// channel, the text of the error channel (3), and the Close.

export class WsWire extends RawWire {
  /** Payload bytes received per channel (the first byte of each binary message). */
  readonly bytesOn = new Map<number, number>();
  /** Channel 3 (the outcome), as text. */
  status = '';
  close?: { code: number; reason: string };
  private buf: Buffer = Buffer.alloc(0);

  static upgrade(url: string, protocol = 'v5.channel.k8s.io'): Promise<WsWire> {
    return upgradeTo(
      url,
      (path, host) =>
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Protocol: ${protocol}\r\n`,
      (socket) => new WsWire(socket),
    );
  }

  /** Resolves once the server's Close arrived or the connection is gone. */
  async closeOrEnd(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.close && !this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }

  receive(chunk: Buffer): void {
    const { frames, rest } = takeServerFrames(this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk);
    this.buf = rest;
    for (const { opcode, payload } of frames) {
      if (opcode === 0x8) {
        this.close = closeOf(payload);
      } else if (opcode === 0x2 && payload.length) {
        const n = payload[0]!;
        this.bytesOn.set(n, (this.bytesOn.get(n) ?? 0) + payload.length - 1);
        if (n === 3) this.status += payload.subarray(1).toString();
      }
    }
  }

}

/**
 * The whole server frames at the start of `buf` (FIN + opcode, an unmasked 7/16/64-bit length,
 * the payload), and what is left for more bytes to complete.
 */
export function takeServerFrames(buf: Buffer): { frames: { opcode: number; payload: Buffer }[]; rest: Buffer } {
  const frames: { opcode: number; payload: Buffer }[] = [];
  for (;;) {
    if (buf.length < 2) break;
    let len = buf[1]! & 0x7f;
    let pos = 2;
    if (len === 126) {
      if (buf.length < 4) break;
      len = buf.readUInt16BE(2);
      pos = 4;
    } else if (len === 127) {
      if (buf.length < 10) break;
      len = Number(buf.readBigUInt64BE(2));
      pos = 10;
    }
    if (buf.length < pos + len) break;
    frames.push({ opcode: buf[0]! & 0x0f, payload: buf.subarray(pos, pos + len) });
    buf = buf.subarray(pos + len);
  }
  return { frames, rest: buf };
}

/** A Close frame's payload: its code (1005 when it has none) and reason. */
export function closeOf(payload: Buffer): { code: number; reason: string } {
  return { code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005, reason: payload.subarray(2).toString() };
}
