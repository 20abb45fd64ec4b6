// SPDY/3 framing without any session state: the frame types, flags and reset codes, building
// control and data frames, and cutting received bytes back into frames.

const VERSION = 3;
export const FrameType = { SynStream: 1, SynReply: 2, RstStream: 3, Settings: 4, Ping: 6, GoAway: 7, Headers: 8, WindowUpdate: 9 } as const;
export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;
export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
export const RstStatus = { ProtocolError: 1, InvalidStream: 2, RefusedStream: 3, Cancel: 5, InternalError: 6, FlowControlError: 7, StreamInUse: 8, StreamAlreadyClosed: 9 } as const;

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** A data frame as its header and the payload, unjoined: the payload is written as it is, not copied. */
export function dataFrame(streamId: number, flags: number, data: Buffer): [Buffer, Buffer] {
  const h = Buffer.allocUnsafe(8);
  h.writeUInt32BE(streamId & 0x7fffffff, 0);
  h.writeUInt32BE(((flags & 0xff) << 24) | data.length, 4);
  return [h, data];
}

export type Frame =
  | { control: true; type: number; flags: number; payload: Buffer }
  | { control: false; streamId: number; flags: number; data: Buffer };

/** Splits a byte stream into SPDY frames. */
export class FrameReader {
  /** Bytes of a frame header or of a control frame not complete yet (small). */
  private rest: Buffer = Buffer.alloc(0);
  /** The data frame whose payload is arriving. */
  private data?: { streamId: number; flags: number; remaining: number };

  /**
   * Frames in `chunk`. A data frame's payload is handed on in pieces as it arrives (views into
   * the chunk, no copy), the frame's flags on its last piece; a control frame comes whole.
   */
  push(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    const buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    let pos = 0;
    while (pos < buf.length) {
      if (this.data) {
        const take = Math.min(this.data.remaining, buf.length - pos);
        this.data.remaining -= take;
        const last = this.data.remaining === 0;
        out.push({ control: false, streamId: this.data.streamId, flags: last ? this.data.flags : 0, data: buf.subarray(pos, pos + take) });
        pos += take;
        if (last) this.data = undefined;
        continue;
      }
      if (buf.length - pos < 8) break;
      const first = buf.readUInt32BE(pos);
      const word = buf.readUInt32BE(pos + 4);
      const length = word & 0xffffff;
      const flags = word >>> 24;
      if (first & 0x80000000) {
        if (buf.length - pos < 8 + length) break;
        const version = (first >>> 16) & 0x7fff;
        if (version !== VERSION) throw new Error(`SPDY version ${version} is not supported (only 3)`);
        out.push({ control: true, type: first & 0xffff, flags, payload: Buffer.from(buf.subarray(pos + 8, pos + 8 + length)) });
        pos += 8 + length;
        continue;
      }
      pos += 8;
      if (length === 0) out.push({ control: false, streamId: first & 0x7fffffff, flags, data: Buffer.alloc(0) });
      else this.data = { streamId: first & 0x7fffffff, flags, remaining: length };
    }
    this.rest = pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
    return out;
  }
}
