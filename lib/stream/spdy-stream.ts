import { Duplex } from 'node:stream';
import { RstStatus } from './spdy-frames.js';
import type { SpdyHeaders } from './spdy-headers.js';

// One stream of a SpdySession (spdy.ts): its half-close state and send window live here, while
// every frame it sends goes out through the session, which also feeds it what the peer sends.

/** What a stream asks of its session; SpdySession (spdy.ts) is the one implementation. */
export interface StreamSession {
  readonly peerInitialWindow: number;
  sendReply(stream: SpdyStream, headers: SpdyHeaders, fin: boolean): void;
  sendReset(stream: SpdyStream, status: number): void;
  allowedToSend(stream: SpdyStream, wanted: number): number;
  sendData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void>;
  streamWantsData(stream: SpdyStream): void;
  forget(stream: SpdyStream, err: Error | null): void;
}

const maxDataFrame = 64 * 1024;

/** One SPDY stream: what the peer sends is read, what is written goes to the peer. */
export class SpdyStream extends Duplex {
  /** Headers of the SYN_STREAM (ours or the peer's). */
  headers: SpdyHeaders;
  /** Resolves when the peer answered our SYN_STREAM (SYN_REPLY), rejects on RST_STREAM. */
  readonly replied: Promise<SpdyHeaders>;
  resolveReply!: (h: SpdyHeaders) => void;
  rejectReply!: (err: Error) => void;
  remoteFinished = false;
  localFinished = false;
  /** Bytes we may still send (the peer's window for this stream). */
  sendWindow: number;
  /** Bytes received since our last WINDOW_UPDATE. */
  unacked = 0;
  /** Bytes the peer may still send before our next WINDOW_UPDATE (set by the session). */
  recvWindow = 0;
  /** Inflated bytes of this stream's header blocks, counted against the session's limit. */
  headerBytes = 0;
  private waitingForWindow?: () => void;

  constructor(
    readonly session: StreamSession,
    readonly id: number,
    headers: SpdyHeaders,
  ) {
    // Room for a whole socket read (64 KiB) and more, so a pipe from a socket does not pause
    // and resume its source around every chunk.
    super({ allowHalfOpen: true, writableHighWaterMark: 256 * 1024, readableHighWaterMark: 256 * 1024 });
    this.headers = headers;
    this.sendWindow = session.peerInitialWindow;
    this.replied = new Promise((resolve, reject) => {
      this.resolveReply = resolve;
      this.rejectReply = reject;
    });
    this.replied.catch(() => undefined);
    // A stream the peer resets or breaks is destroyed with an error: that must not crash a
    // daemon whose code did not listen for it (listeners added later still see it).
    this.on('error', () => undefined);
  }

  /** Answer a stream the peer opened (SYN_REPLY). */
  reply(headers: SpdyHeaders = {}, fin = false): void {
    this.session.sendReply(this, headers, fin);
  }

  /** Abort the stream (RST_STREAM); CANCEL unless a status is given. */
  reset(status: number = RstStatus.Cancel): void {
    this.session.sendReset(this, status);
  }

  override _read(): void {
    this.session.streamWantsData(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    void this.writeChunked(chunk).then(() => callback(), callback);
  }

  private async writeChunked(chunk: Buffer): Promise<void> {
    let rest = chunk;
    while (rest.length) {
      if (this.destroyed) throw new Error('SPDY stream closed');
      const allowed = this.session.allowedToSend(this, Math.min(rest.length, maxDataFrame));
      if (allowed <= 0) {
        await new Promise<void>((resolve) => (this.waitingForWindow = resolve));
        continue;
      }
      await this.session.sendData(this, rest.subarray(0, allowed), false);
      rest = rest.subarray(allowed);
    }
  }

  /** The peer granted more window (or flow control was lifted). */
  windowOpened(): void {
    const wake = this.waitingForWindow;
    this.waitingForWindow = undefined;
    wake?.();
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.localFinished) return callback();
    this.localFinished = true;
    void this.session.sendData(this, Buffer.alloc(0), true).then(() => callback(), callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.windowOpened();
    this.session.forget(this, err);
    callback(err);
  }
}
