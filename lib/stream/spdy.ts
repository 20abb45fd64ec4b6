import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { controlFrame, dataFrame, FLAG_FIN, FLAG_UNIDIRECTIONAL, FrameReader, FrameType, RstStatus, SETTINGS_INITIAL_WINDOW_SIZE, type Frame } from './spdy-frames.js';
import { decodeNameValues, encodeNameValues, HeaderInflater, StoredDeflate, u32, type SpdyHeaders } from './spdy-headers.js';
import { SpdyStream, type StreamSession } from './spdy-stream.js';

// SPDY/3.1, the framing Kubernetes still uses for exec, attach and port-forward (client-go's
// remotecommand and portforward over moby/spdystream). One session multiplexes many streams
// over one upgraded HTTP/1.1 connection; each stream is a Duplex here.
// This file is the session; the stream is in spdy-stream.ts, the frame codec in spdy-frames.ts
// and the header-block codec in spdy-headers.ts.
//
// What the peers actually do shapes this code more than the spec does:
// - spdystream ignores SETTINGS and WINDOW_UPDATE and never sends either, so a sender that
//   waited for window updates would stall after 64 KiB. We keep the spec's windows, send
//   WINDOW_UPDATE for what the application reads, and hold our own sends to the peer's window
//   only once the peer has shown it speaks flow control (sent a WINDOW_UPDATE). Data past our
//   window is accepted. Backpressure towards a peer without flow control is TCP's: the socket
//   is paused while a stream's reader is full; towards one with flow control it is the window.
// - Header blocks are zlib streams with the SPDY/3 dictionary, one context per direction for
//   the whole session, so incoming ones are inflated strictly in frame order. Ours go out as
//   stored deflate blocks, which any inflater accepts and which cost no zlib call.

const defaultWindow = 64 * 1024;

export interface SpdySessionOptions {
  /** 'server': accepts odd stream IDs from the client and opens even ones. */
  role: 'server' | 'client';
  /**
   * Our receive window per stream and for the session. Above the spec's 64 KiB it is announced
   * at once (SETTINGS INITIAL_WINDOW_SIZE and a session WINDOW_UPDATE), so a peer that keeps to
   * windows can have that much in flight instead of stalling every 64 KiB for a round trip.
   */
  receiveWindow?: number;
}

/**
 * A SPDY/3.1 session over an upgraded connection. Events: 'stream' (SpdyStream) for each
 * SYN_STREAM from the peer, 'close' when the connection ends, 'error'.
 */
export class SpdySession extends EventEmitter implements StreamSession {
  readonly streams = new Map<number, SpdyStream>();
  peerInitialWindow = defaultWindow;
  /** Set once the peer sends a WINDOW_UPDATE: from then on our sends keep to its windows. */
  peerDoesFlowControl = false;
  private sessionSendWindow = defaultWindow;
  private sessionUnacked = 0;
  private readonly receiveWindow: number;
  private nextId: number;
  private lastPeerId = 0;
  private readonly reader = new FrameReader();
  private readonly inflater = new HeaderInflater();
  private readonly deflater = new StoredDeflate();
  private inbound: Promise<void> = Promise.resolve();
  private goneAway = false;
  private closed = false;
  private pausedBy = new Set<SpdyStream>();
  private nextPingId: number;
  private readonly pings = new Map<number, () => void>();

  constructor(
    readonly socket: Duplex,
    readonly options: SpdySessionOptions,
  ) {
    super();
    this.nextId = options.role === 'server' ? 2 : 1;
    this.nextPingId = options.role === 'server' ? 2 : 1;
    this.receiveWindow = Math.max(defaultWindow, options.receiveWindow ?? defaultWindow);
    if (this.receiveWindow > defaultWindow) {
      const settings = Buffer.alloc(12);
      settings.writeUInt32BE(1, 0);
      settings.writeUInt32BE(SETTINGS_INITIAL_WINDOW_SIZE, 4);
      settings.writeUInt32BE(this.receiveWindow, 8);
      this.write(controlFrame(FrameType.Settings, 0, settings));
      const update = Buffer.alloc(8);
      update.writeUInt32BE(this.receiveWindow - defaultWindow, 4);
      this.write(controlFrame(FrameType.WindowUpdate, 0, update));
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.shutdown());
    socket.on('close', () => this.shutdown());
    socket.on('error', (err) => {
      this.emit('error', err);
      this.shutdown();
    });
  }

  /** Open a stream (SYN_STREAM). `stream.replied` resolves on the peer's SYN_REPLY. */
  openStream(headers: SpdyHeaders, options: { fin?: boolean } = {}): SpdyStream {
    if (this.goneAway || this.closed) throw new Error('SPDY session is closing');
    const id = this.nextId;
    this.nextId += 2;
    const stream = new SpdyStream(this, id, headers);
    this.streams.set(id, stream);
    if (options.fin) stream.localFinished = true;
    const head = Buffer.alloc(10);
    head.writeUInt32BE(id, 0);
    head.writeUInt32BE(0, 4);
    head[8] = 0;
    head[9] = 0;
    this.sendHeaderFrame(FrameType.SynStream, options.fin ? FLAG_FIN : 0, head, headers);
    return stream;
  }

  sendReply(stream: SpdyStream, headers: SpdyHeaders, fin: boolean): void {
    if (fin) stream.localFinished = true;
    this.sendHeaderFrame(FrameType.SynReply, fin ? FLAG_FIN : 0, u32(stream.id), headers);
  }

  sendReset(stream: SpdyStream, status: number): void {
    if (this.streams.get(stream.id) !== stream) return;
    const p = Buffer.alloc(8);
    p.writeUInt32BE(stream.id, 0);
    p.writeUInt32BE(status, 4);
    this.write(controlFrame(FrameType.RstStream, 0, p));
    this.streams.delete(stream.id);
    stream.destroy();
  }

  /** Round trip time to the peer (PING). */
  ping(): Promise<number> {
    const id = this.nextPingId;
    this.nextPingId += 2;
    const started = process.hrtime.bigint();
    return new Promise((resolve) => {
      this.pings.set(id, () => resolve(Number(process.hrtime.bigint() - started) / 1e6));
      this.write(controlFrame(FrameType.Ping, 0, u32(id)));
    });
  }

  /** GOAWAY, then end the connection once the open streams are done (or at once with `force`). */
  close(force = false): void {
    if (!this.goneAway && !this.closed) {
      this.goneAway = true;
      const p = Buffer.alloc(8);
      p.writeUInt32BE(this.lastPeerId, 0);
      p.writeUInt32BE(0, 4);
      this.write(controlFrame(FrameType.GoAway, 0, p));
    }
    if (force || this.streams.size === 0) this.socket.end();
  }

  // ---- used by SpdyStream ----

  allowedToSend(stream: SpdyStream, wanted: number): number {
    if (!this.peerDoesFlowControl) return wanted;
    return Math.max(0, Math.min(wanted, stream.sendWindow, this.sessionSendWindow));
  }

  sendData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void> {
    stream.sendWindow -= data.length;
    this.sessionSendWindow -= data.length;
    const frame = dataFrame(stream.id, fin ? FLAG_FIN : 0, data);
    return this.enqueue(() => this.writeRaw(frame)).then(() => {
      if (fin) this.maybeForget(stream);
    });
  }

  streamWantsData(stream: SpdyStream): void {
    this.acknowledge(stream);
    if (this.pausedBy.delete(stream) && this.pausedBy.size === 0) this.socket.resume();
  }

  forget(stream: SpdyStream, err: Error | null): void {
    if (this.streams.get(stream.id) === stream) {
      // Destroyed before both sides finished: tell the peer.
      if (!(stream.localFinished && stream.remoteFinished) && !this.closed) {
        const p = Buffer.alloc(8);
        p.writeUInt32BE(stream.id, 0);
        p.writeUInt32BE(err ? RstStatus.InternalError : RstStatus.Cancel, 4);
        this.write(controlFrame(FrameType.RstStream, 0, p));
      }
      this.streams.delete(stream.id);
    }
    if (this.pausedBy.delete(stream) && this.pausedBy.size === 0) this.socket.resume();
    if (this.goneAway && this.streams.size === 0) this.socket.end();
  }

  // ---- internals ----

  private maybeForget(stream: SpdyStream): void {
    if (stream.localFinished && stream.remoteFinished) {
      this.streams.delete(stream.id);
      if (this.goneAway && this.streams.size === 0) this.socket.end();
    }
  }

  /**
   * Frames leave in the order they were made: written at once, unless a write is still waiting
   * for the socket to drain, then queued behind it.
   */
  private outbound: Promise<void> = Promise.resolve();
  private queued = 0;
  private drained?: Promise<void>;

  private enqueue(fn: () => Promise<void> | void): Promise<void> {
    if (this.queued === 0) {
      const direct = fn();
      if (!(direct instanceof Promise)) return Promise.resolve();
      // A write waiting for drain: later frames may go ahead of its completion, not of its bytes.
      return direct;
    }
    this.queued += 1;
    const run = this.outbound.then(fn).finally(() => {
      this.queued -= 1;
    });
    this.outbound = run.catch((err: unknown) => this.fail(err as Error));
    return run;
  }

  /** Write a frame; resolves when the socket takes more (drain) or the session is gone. */
  private writeRaw(buf: Buffer | Buffer[]): Promise<void> | void {
    if (this.closed) return;
    let ok: boolean;
    if (Array.isArray(buf)) {
      // Corked, the pieces leave in one writev.
      this.socket.cork();
      ok = true;
      for (const b of buf) if (b.length) ok = this.socket.write(b);
      this.socket.uncork();
    } else {
      ok = this.socket.write(buf);
    }
    if (ok) return;
    // One wait for every writer that finds the socket full.
    this.drained ??= new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.off('close', done);
        this.drained = undefined;
        resolve();
      };
      this.socket.once('drain', done);
      this.once('close', done);
    });
    return this.drained;
  }

  private write(buf: Buffer): void {
    void this.enqueue(() => void this.writeRaw(buf));
  }

  /** Control frames with a header block: the block is made at once, the frame written in call order. */
  private sendHeaderFrame(type: number, flags: number, head: Buffer, headers: SpdyHeaders): void {
    const frame = controlFrame(type, flags, Buffer.concat([head, this.deflater.process(encodeNameValues(headers))]));
    void this.enqueue(() => this.writeRaw(frame));
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const f of frames) this.inbound = this.inbound.then(() => this.handle(f)).catch((err: unknown) => this.fail(err as Error));
  }

  private async handle(f: Frame): Promise<void> {
    if (this.closed) return;
    if (!f.control) return this.onDataFrame(f.streamId, f.flags, f.data);
    const p = f.payload;
    switch (f.type) {
      case FrameType.SynStream: {
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const headers = decodeNameValues(await this.inflater.process(p.subarray(10)));
        if (this.goneAway || id <= this.lastPeerId || (id % 2 === 1) !== (this.options.role === 'server')) {
          const r = Buffer.alloc(8);
          r.writeUInt32BE(id, 0);
          r.writeUInt32BE(this.goneAway ? RstStatus.RefusedStream : RstStatus.ProtocolError, 4);
          this.write(controlFrame(FrameType.RstStream, 0, r));
          return;
        }
        this.lastPeerId = id;
        const stream = new SpdyStream(this, id, headers);
        this.streams.set(id, stream);
        if (f.flags & FLAG_FIN) {
          stream.remoteFinished = true;
          stream.push(null);
        }
        if (f.flags & FLAG_UNIDIRECTIONAL) stream.localFinished = true;
        this.emit('stream', stream);
        return;
      }
      case FrameType.SynReply: {
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const headers = decodeNameValues(await this.inflater.process(p.subarray(4)));
        const stream = this.streams.get(id);
        if (!stream) return;
        stream.resolveReply(headers);
        if (f.flags & FLAG_FIN) this.remoteFin(stream);
        return;
      }
      case FrameType.Headers: {
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const headers = decodeNameValues(await this.inflater.process(p.subarray(4)));
        const stream = this.streams.get(id);
        if (!stream) return;
        Object.assign(stream.headers, headers);
        stream.emit('headers', headers);
        if (f.flags & FLAG_FIN) this.remoteFin(stream);
        return;
      }
      case FrameType.RstStream: {
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const status = p.readUInt32BE(4);
        const stream = this.streams.get(id);
        if (!stream) return;
        this.streams.delete(id);
        const err = Object.assign(new Error(`SPDY stream ${id} reset by the peer (status ${status})`), { status });
        stream.rejectReply(err);
        stream.destroy(status === RstStatus.Cancel ? undefined : err);
        return;
      }
      case FrameType.Settings: {
        const n = p.readUInt32BE(0);
        for (let i = 0; i < n; i++) {
          const id = p.readUInt32BE(4 + i * 8) & 0xffffff;
          const value = p.readUInt32BE(8 + i * 8);
          if (id === SETTINGS_INITIAL_WINDOW_SIZE) {
            const delta = value - this.peerInitialWindow;
            this.peerInitialWindow = value;
            for (const s of this.streams.values()) {
              s.sendWindow += delta;
              s.windowOpened();
            }
          }
        }
        return;
      }
      case FrameType.Ping: {
        const id = p.readUInt32BE(0);
        if ((id % 2 === 0) === (this.options.role === 'server')) {
          this.pings.get(id)?.();
          this.pings.delete(id);
        } else {
          this.write(controlFrame(FrameType.Ping, 0, p));
        }
        return;
      }
      case FrameType.GoAway:
        this.goneAway = true;
        if (this.streams.size === 0) this.socket.end();
        return;
      case FrameType.WindowUpdate: {
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const delta = p.readUInt32BE(4) & 0x7fffffff;
        this.peerDoesFlowControl = true;
        if (id === 0) {
          this.sessionSendWindow += delta;
          for (const s of this.streams.values()) s.windowOpened();
        } else {
          const s = this.streams.get(id);
          if (s) {
            s.sendWindow += delta;
            s.windowOpened();
          }
        }
        return;
      }
      default:
        // Unknown control frames are ignored, as the spec asks.
        return;
    }
  }

  private onDataFrame(id: number, flags: number, data: Buffer): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    if (data.length) {
      stream.unacked += data.length;
      this.sessionUnacked += data.length;
      if (stream.push(data)) {
        this.acknowledge(stream);
      } else if (!this.peerDoesFlowControl) {
        // Only TCP can hold back a peer that ignores windows.
        this.pausedBy.add(stream);
        this.socket.pause();
      }
      // A peer that keeps to windows is held back by ours: this stream's window is not
      // reopened until its reader asks for more (streamWantsData). Pausing the socket would
      // also stop the WINDOW_UPDATEs our own writes wait for, and both sides would stall.
    }
    if (flags & FLAG_FIN) this.remoteFin(stream);
  }

  /** WINDOW_UPDATE for what was delivered, in half-window steps. */
  private acknowledge(stream: SpdyStream): void {
    if (stream.unacked >= this.receiveWindow / 2 && !stream.remoteFinished) {
      const p = Buffer.alloc(8);
      p.writeUInt32BE(stream.id, 0);
      p.writeUInt32BE(stream.unacked, 4);
      this.write(controlFrame(FrameType.WindowUpdate, 0, p));
      stream.unacked = 0;
    }
    if (this.sessionUnacked >= this.receiveWindow / 2) {
      const p = Buffer.alloc(8);
      p.writeUInt32BE(0, 0);
      p.writeUInt32BE(this.sessionUnacked, 4);
      this.write(controlFrame(FrameType.WindowUpdate, 0, p));
      this.sessionUnacked = 0;
    }
  }

  private remoteFin(stream: SpdyStream): void {
    if (stream.remoteFinished) return;
    stream.remoteFinished = true;
    stream.push(null);
    this.maybeForget(stream);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.emit('error', err);
    this.socket.destroy();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams.values()) {
      s.rejectReply(new Error('SPDY connection closed'));
      if (!s.remoteFinished) s.push(null);
      s.destroy();
    }
    this.streams.clear();
    this.inflater.close();
    for (const resolve of this.pings.values()) resolve();
    this.pings.clear();
    this.emit('close');
  }
}
