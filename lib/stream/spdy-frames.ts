// SPDY/3 framing without any session state: the frame types, flags and status codes, building
// control and data frames, and cutting received bytes back into frames.

const VERSION = 3;
export const FrameType = { SynStream: 1, SynReply: 2, RstStream: 3, Settings: 4, Ping: 6, GoAway: 7, Headers: 8, WindowUpdate: 9 } as const;
export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 4;
export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
/** RST_STREAM status codes (SPDY/3.1 section 2.6.3). */
export const RstStatus = {
  ProtocolError: 1,
  InvalidStream: 2,
  RefusedStream: 3,
  UnsupportedVersion: 4,
  Cancel: 5,
  InternalError: 6,
  FlowControlError: 7,
  StreamInUse: 8,
  StreamAlreadyClosed: 9,
  FrameTooLarge: 11,
} as const;
/** GOAWAY status codes (section 2.6.6); the spec's drafts disagree on INTERNAL_ERROR's number, so it is not sent. */
export const GoAwayStatus = { Ok: 0, ProtocolError: 1 } as const;

/** Control frames whose payload starts with a stream ID and carries a header block. */
const headerFrameTypes: ReadonlySet<number> = new Set([FrameType.SynStream, FrameType.SynReply, FrameType.Headers]);

/**
 * A peer broke the protocol or one of our limits. `stream` set: that stream is reset with its
 * status; `goAway` set: the session ends with a GOAWAY of that status (after the reset, if any).
 */
export class SpdyViolation extends Error {
  constructor(
    message: string,
    /** abrupt: a flood; the connection is cut at once instead of closed gracefully. */
    readonly refusal: { stream?: { id: number; status: number }; goAway?: number; abrupt?: boolean },
  ) {
    super(message);
    this.name = 'SpdyViolation';
  }
}

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** A control frame whose payload is 32-bit words (RST_STREAM, PING, GOAWAY, WINDOW_UPDATE). */
export function wordsFrame(type: number, ...words: number[]): Buffer {
  const p = Buffer.alloc(4 * words.length);
  words.forEach((w, i) => p.writeUInt32BE(w >>> 0, 4 * i));
  return controlFrame(type, 0, p);
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
  /** Bytes of a frame header or of a control frame not complete yet (at most maxControlFrameBytes + 8). */
  private rest: Buffer[] = [];
  private restBytes = 0;
  /** How many bytes `rest` must hold before a frame can be read from it. */
  private need = 0;
  /** The data frame whose payload is arriving. */
  private data?: { streamId: number; flags: number; remaining: number };

  /**
   * @param maxControlFrameBytes a control frame's largest payload. A larger one is refused as
   * soon as its header arrives (a control frame is only handed on whole, so it would be held).
   */
  constructor(private readonly maxControlFrameBytes = 0xffffff) {}

  /**
   * Frames in `chunk`. A data frame's payload is handed on in pieces as it arrives (views into
   * the chunk, no copy), the frame's flags on its last piece; a control frame comes whole.
   * Throws a SpdyViolation for a frame it will not read; the reader is unusable after that.
   */
  push(chunk: Buffer): Frame[] {
    // A frame arriving in small pieces is joined once, not once per piece.
    if (this.restBytes + chunk.length < this.need) {
      this.rest.push(chunk);
      this.restBytes += chunk.length;
      return [];
    }
    const out: Frame[] = [];
    const buf = this.restBytes ? Buffer.concat([...this.rest, chunk]) : chunk;
    let pos = 0;
    this.need = 0;
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
      if (buf.length - pos < 8) {
        this.need = 8;
        break;
      }
      const first = buf.readUInt32BE(pos);
      const word = buf.readUInt32BE(pos + 4);
      const length = word & 0xffffff;
      const flags = word >>> 24;
      if (first & 0x80000000) {
        const version = (first >>> 16) & 0x7fff;
        if (version !== VERSION) throw new SpdyViolation(`SPDY version ${version} is not supported (only 3)`, { goAway: GoAwayStatus.ProtocolError });
        const type = first & 0xffff;
        if (length > this.maxControlFrameBytes) {
          // The stream it opens or answers is reset too; its ID is the payload's first word.
          if (headerFrameTypes.has(type) && buf.length - pos < 12) {
            this.need = 12;
            break;
          }
          const id = headerFrameTypes.has(type) ? buf.readUInt32BE(pos + 8) & 0x7fffffff : 0;
          throw new SpdyViolation(`SPDY control frame (type ${type}) of ${length} bytes is larger than the limit of ${this.maxControlFrameBytes}`, {
            stream: id ? { id, status: RstStatus.FrameTooLarge } : undefined,
            goAway: GoAwayStatus.ProtocolError,
          });
        }
        if (buf.length - pos < 8 + length) {
          this.need = 8 + length;
          break;
        }
        out.push({ control: true, type, flags, payload: Buffer.from(buf.subarray(pos + 8, pos + 8 + length)) });
        pos += 8 + length;
        continue;
      }
      pos += 8;
      if (length === 0) out.push({ control: false, streamId: first & 0x7fffffff, flags, data: Buffer.alloc(0) });
      else this.data = { streamId: first & 0x7fffffff, flags, remaining: length };
    }
    this.rest = pos < buf.length ? [Buffer.from(buf.subarray(pos))] : [];
    this.restBytes = buf.length - pos;
    return out;
  }
}
