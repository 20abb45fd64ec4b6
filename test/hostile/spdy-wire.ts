import { deflateRawSync, deflateSync, constants as zc } from 'node:zlib';
import { RawWire, upgradeTo } from './raw-client.js';

// A hostile SPDY/3.1 client, written from the spec and independent of lib/stream: it upgrades a
// streaming URL over raw TCP, writes whatever frames a test builds, and reads back the frames
// the server answers with. Header blocks are compressed here without the SPDY dictionary (a
// zlib stream that does not ask for one is valid for any inflater that has one).

export const Type = { SynStream: 1, SynReply: 2, RstStream: 3, Settings: 4, Ping: 6, GoAway: 7, Headers: 8, WindowUpdate: 9 } as const;
export const Rst = { ProtocolError: 1, RefusedStream: 3, Cancel: 5, FlowControlError: 7, StreamAlreadyClosed: 9, FrameTooLarge: 11 } as const;
export const GoAway = { Ok: 0, ProtocolError: 1 } as const;

/** A control frame: version 3, `type`, `flags`, and the payload. */
export function control(type: number, payload: Buffer, flags = 0): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(((0x8003 << 16) | type) >>> 0, 0);
  h.writeUInt32BE(((flags << 24) | payload.length) >>> 0, 4);
  return Buffer.concat([h, payload]);
}

/** A control frame of 32-bit words (RST_STREAM, PING, WINDOW_UPDATE, GOAWAY). */
export function words(type: number, ...ws: number[]): Buffer {
  const p = Buffer.alloc(4 * ws.length);
  ws.forEach((w, i) => p.writeUInt32BE(w >>> 0, 4 * i));
  return control(type, p);
}

export function data(streamId: number, payload: Buffer, fin = false): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(streamId, 0);
  h.writeUInt32BE((((fin ? 1 : 0) << 24) | payload.length) >>> 0, 4);
  return Buffer.concat([h, payload]);
}

/** A name/value block, uncompressed. */
export function nameValues(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  parts.push(u32(Object.keys(headers).length));
  for (const [k, v] of Object.entries(headers)) parts.push(u32(Buffer.byteLength(k)), Buffer.from(k), u32(Buffer.byteLength(v)), Buffer.from(v));
  return Buffer.concat(parts);
}

/**
 * The client's side of the session's header compression: the first block starts the zlib
 * stream, later ones continue it. Each block is deflated on its own (no back references into
 * earlier ones) and ends with a sync flush, so it can be made without keeping zlib state.
 */
export class HeaderCompressor {
  /** `continuing`: blocks for a stream another compressor started (made ahead of time). */
  constructor(private started = false) {}

  block(raw: Buffer): Buffer {
    if (this.started) return deflateRawSync(raw, { finishFlush: zc.Z_SYNC_FLUSH, level: 9 });
    this.started = true;
    return deflateSync(raw, { finishFlush: zc.Z_SYNC_FLUSH, level: 9 });
  }
}

export function synStream(id: number, block: Buffer, fin = false): Buffer {
  const head = Buffer.alloc(10);
  head.writeUInt32BE(id, 0);
  return control(Type.SynStream, Buffer.concat([head, block]), fin ? 1 : 0);
}

export type ServerFrame = { control: true; type: number; flags: number; words: number[] } | { control: false; streamId: number; flags: number; length: number; payload: Buffer };

/** A raw connection upgraded to SPDY/3.1, with the frames the server sent so far. */
export class SpdyWire extends RawWire {
  readonly frames: ServerFrame[] = [];
  private buf: Buffer = Buffer.alloc(0);
  /** Keep data payloads (default): off for floods whose content does not matter. */
  keepData = true;

  /** POST the upgrade to `url` offering `protocol`; resolves once the server answered 101. */
  static upgrade(url: string, protocol = 'v4.channel.k8s.io'): Promise<SpdyWire> {
    return upgradeTo(url, (path, host) => `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n`, (socket) => new SpdyWire(socket));
  }

  /** Control frames of `type` so far, as 32-bit words. */
  control(type: number): number[][] {
    return this.frames.filter((f): f is Extract<ServerFrame, { control: true }> => f.control && f.type === type).map((f) => f.words);
  }

  /** Bytes of data frames received on `streamId`. */
  dataOn(streamId: number): Buffer {
    return Buffer.concat(this.frames.filter((f): f is Extract<ServerFrame, { control: false }> => !f.control && f.streamId === streamId).map((f) => f.payload));
  }

  async waitFor(type: number, match: (w: number[]) => boolean = () => true, timeoutMs = 10_000): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.control(type).find(match);
      if (found) return found;
      if (this.ended || Date.now() > deadline) throw new Error(`no frame of type ${type} from the server (${this.ended ? 'connection closed' : 'timed out'}); got types ${this.frames.map((f) => (f.control ? f.type : 'data')).join(',')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * Play a well-behaved client up to here and open `types` as streams 1, 3, ... With
   * `flowControl` (the default) it first answers the server's PING and sends a WINDOW_UPDATE,
   * as an implementation that keeps to windows does; without, it acts as spdystream (kubectl),
   * which does neither. Resolves with the stream IDs by type once the server replied to each.
   */
  async openStreams(types: readonly string[], options: { compressor?: HeaderCompressor; flowControl?: boolean } = {}): Promise<Record<string, number>> {
    const compressor = options.compressor ?? new HeaderCompressor();
    const frames: Buffer[] = [];
    if (options.flowControl ?? true) {
      const ping = await this.waitFor(Type.Ping);
      frames.push(words(Type.WindowUpdate, 0, 1), words(Type.Ping, ping[0]!));
    }
    const ids: Record<string, number> = {};
    types.forEach((type, i) => {
      ids[type] = 2 * i + 1;
      frames.push(synStream(2 * i + 1, compressor.block(nameValues({ streamtype: type })), type === 'error'));
    });
    this.socket.write(Buffer.concat(frames));
    for (const id of Object.values(ids)) await this.waitForReply(id);
    return ids;
  }

  /** Resolves when the server has finished stream `id` (a data frame with FIN) or the connection is gone. */
  async finished(id: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && Date.now() < deadline && !this.frames.some((f) => !f.control && f.streamId === id && f.flags & 1)) await new Promise((r) => setTimeout(r, 10));
  }

  async waitForReply(id: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!this.frames.some((f) => f.control && f.type === Type.SynReply && f.words[0] === id)) {
      if (this.ended || Date.now() > deadline) throw new Error(`no SYN_REPLY for stream ${id}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  receive(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 8) {
      const first = this.buf.readUInt32BE(0);
      const word = this.buf.readUInt32BE(4);
      const length = word & 0xffffff;
      if (this.buf.length < 8 + length) return;
      const payload = this.buf.subarray(8, 8 + length);
      if (first & 0x80000000) {
        this.frames.push({ control: true, type: first & 0xffff, flags: word >>> 24, words: Array.from({ length: length >> 2 }, (_, i) => payload.readUInt32BE(4 * i)) });
      } else {
        this.frames.push({ control: false, streamId: first & 0x7fffffff, flags: word >>> 24, length, payload: this.keepData ? Buffer.from(payload) : Buffer.alloc(0) });
      }
      this.buf = this.buf.subarray(8 + length);
    }
  }
}
