import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { SpdyConnection } from './spdy-connection.js';
import {
  controlFrame,
  dataFrame,
  FLAG_FIN,
  FLAG_UNIDIRECTIONAL,
  FrameType,
  GoAwayStatus,
  RstStatus,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SpdyViolation,
  wordsFrame,
  type Frame,
} from './spdy-frames.js';
import { decodeNameValues, encodeNameValues, HeaderBlockTooLarge, HeaderInflater, StoredDeflate, u32, type SpdyHeaders } from './spdy-headers.js';
import { defaultSpdyLimits, type SpdyLimits } from './spdy-limits.js';
import { SpdyStream, type StreamSession } from './spdy-stream.js';

// SPDY/3.1, the framing Kubernetes still uses for exec, attach and port-forward (client-go's
// remotecommand and portforward over moby/spdystream). One session multiplexes many streams
// over one upgraded HTTP/1.1 connection; each stream is a Duplex here.
// This file is the session; the stream is in spdy-stream.ts, the socket's reading and writing in
// spdy-connection.ts, the frame codec in spdy-frames.ts, the header-block codec in
// spdy-headers.ts and what a peer may send in spdy-limits.ts.
//
// What the peers actually do shapes this code more than the spec does:
// - spdystream ignores SETTINGS and WINDOW_UPDATE and never sends either, so a sender that
//   waited for window updates would stall after 64 KiB. We keep the spec's windows, send
//   WINDOW_UPDATE for what the application reads, and hold our own sends to the peer's window
//   only once the peer has shown it speaks flow control (sent a WINDOW_UPDATE). The other way,
//   a peer that speaks flow control and sends past our window gets FLOW_CONTROL_ERROR, once it
//   has answered the PING we send right behind our first WINDOW_UPDATE (a peer like us keeps
//   to windows only from that WINDOW_UPDATE on; what it sent before may overshoot). A peer
//   that does not (spdystream) is held back by TCP instead: the socket is paused while a
//   stream's reader is full.
// - Header blocks are zlib streams with the SPDY/3 dictionary, one context per direction for
//   the whole session, so incoming ones are inflated strictly in frame order. Ours go out as
//   stored deflate blocks, which any inflater accepts and which cost no zlib call.
// - Every byte a peer sends is bounded (spdy-limits.ts): a refused stream gets RST_STREAM, a
//   refused session GOAWAY, and nothing a peer sends makes memory grow past the limits.

const defaultWindow = 64 * 1024;
/** The session window we announce at least: many streams at once need more than one stream's window in flight. */
const minSessionWindow = 1024 * 1024;

export interface SpdySessionOptions {
  /** 'server': accepts odd stream IDs from the client and opens even ones. */
  role: 'server' | 'client';
  /**
   * Our receive window per stream (and for the session, at least 1 MiB). Above the spec's 64 KiB
   * it is announced at once (SETTINGS INITIAL_WINDOW_SIZE and a session WINDOW_UPDATE), so a peer
   * that keeps to windows can have that much in flight instead of stalling every 64 KiB for a
   * round trip.
   */
  receiveWindow?: number;
  /** What the peer may send; defaults in spdy-limits.ts. */
  limits?: Partial<SpdyLimits>;
  /** Close the session (GOAWAY) after this long without a byte either way, as kubelet's streamingConnectionIdleTimeout. */
  idleTimeoutMs?: number;
}

/**
 * A SPDY/3.1 session over an upgraded connection. Events: 'stream' (SpdyStream) for each
 * SYN_STREAM from the peer (one nobody listens for is refused), 'close' when the connection
 * ends, 'error' (only when listened to, so a misbehaving peer cannot crash the process).
 */
export class SpdySession extends EventEmitter implements StreamSession {
  readonly streams = new Map<number, SpdyStream>();
  readonly limits: SpdyLimits;
  peerInitialWindow = defaultWindow;
  /** Set once the peer sends a WINDOW_UPDATE: from then on our sends keep to its windows. */
  peerDoesFlowControl = false;
  /** The PING sent behind our first WINDOW_UPDATE; its answer says the peer has seen our windows. */
  private readonly windowPing: number;
  private peerSawOurWindows = false;
  private sessionSendWindow = defaultWindow;
  private sessionRecvWindow: number;
  private sessionUnacked = 0;
  private readonly receiveWindow: number;
  private readonly sessionWindow: number;
  private nextId: number;
  private lastPeerId = 0;
  private readonly connection: SpdyConnection;
  private readonly inflater = new HeaderInflater();
  private readonly deflater = new StoredDeflate();
  /** Inflated header bytes the open streams hold. */
  private headerBytes = 0;
  private goneAway = false;
  private closed = false;
  private nextPingId: number;
  private readonly pings = new Map<number, () => void>();
  /** The peer's PINGs in the current one-second window (maxPingsPerSecond). */
  private pingsInWindow = 0;
  private pingWindowStart = 0;

  constructor(
    readonly socket: Duplex,
    readonly options: SpdySessionOptions,
  ) {
    super();
    this.limits = { ...defaultSpdyLimits, ...options.limits };
    this.connection = new SpdyConnection(socket, this.limits, {
      frame: (f) => this.handle(f),
      failed: (err) => this.refuse(err),
      abandoned: (err) => {
        this.raise(err);
        this.shutdown();
      },
    });
    this.nextId = options.role === 'server' ? 2 : 1;
    this.nextPingId = options.role === 'server' ? 2 : 1;
    this.receiveWindow = Math.max(defaultWindow, options.receiveWindow ?? defaultWindow);
    this.sessionWindow = Math.max(this.receiveWindow, minSessionWindow);
    this.sessionRecvWindow = this.sessionWindow;
    const settings: [number, number][] = [];
    // Informative: spdystream ignores SETTINGS; REFUSED_STREAM is what holds a peer to it.
    if (options.role === 'server') settings.push([SETTINGS_MAX_CONCURRENT_STREAMS, this.limits.maxConcurrentStreams]);
    if (this.receiveWindow > defaultWindow) settings.push([SETTINGS_INITIAL_WINDOW_SIZE, this.receiveWindow]);
    if (settings.length) this.writeControl(controlFrame(FrameType.Settings, 0, Buffer.concat([u32(settings.length), ...settings.flatMap(([id, v]) => [u32(id), u32(v)])])));
    // Always sent, first thing: it also tells a peer like us that we keep to windows, before it
    // sends anything we would hold it to.
    this.writeControl(wordsFrame(FrameType.WindowUpdate, 0, this.sessionWindow - defaultWindow));
    this.windowPing = this.nextPingId;
    this.nextPingId += 2;
    this.writeControl(wordsFrame(FrameType.Ping, this.windowPing));
    socket.on('end', () => {
      this.shutdown();
      this.connection.end();
    });
    socket.on('close', () => this.shutdown());
    socket.on('error', (err) => {
      this.raise(err);
      this.shutdown();
    });
    const idleMs = options.idleTimeoutMs;
    if (idleMs) {
      this.connection.setIdleTimeout(idleMs, () => {
        this.raise(new Error(`SPDY session idle for ${idleMs} ms: closed`));
        this.close(true);
      });
    }
  }

  /** Open a stream (SYN_STREAM). `stream.replied` resolves on the peer's SYN_REPLY. */
  openStream(headers: SpdyHeaders, options: { fin?: boolean } = {}): SpdyStream {
    if (this.goneAway || this.closed) throw new Error('SPDY session is closing');
    const id = this.nextId;
    this.nextId += 2;
    const stream = new SpdyStream(this, id, headers);
    stream.recvWindow = this.receiveWindow;
    this.streams.set(id, stream);
    if (options.fin) stream.localFinished = true;
    const head = Buffer.alloc(10);
    head.writeUInt32BE(id, 0);
    this.sendHeaderFrame(FrameType.SynStream, options.fin ? FLAG_FIN : 0, head, headers);
    return stream;
  }

  sendReply(stream: SpdyStream, headers: SpdyHeaders, fin: boolean): void {
    if (fin) stream.localFinished = true;
    this.sendHeaderFrame(FrameType.SynReply, fin ? FLAG_FIN : 0, u32(stream.id), headers);
  }

  sendReset(stream: SpdyStream, status: number): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.writeControl(wordsFrame(FrameType.RstStream, stream.id, status));
    this.drop(stream);
    stream.destroy();
  }

  /** Round trip time to the peer (PING). */
  ping(): Promise<number> {
    const id = this.nextPingId;
    this.nextPingId += 2;
    const started = process.hrtime.bigint();
    return new Promise((resolve) => {
      this.pings.set(id, () => resolve(Number(process.hrtime.bigint() - started) / 1e6));
      this.writeControl(wordsFrame(FrameType.Ping, id));
    });
  }

  /** GOAWAY, then end the connection once the open streams are done (or at once with `force`). */
  close(force = false): void {
    this.goAway(GoAwayStatus.Ok);
    if (force || this.streams.size === 0) this.connection.end();
  }

  // ---- used by SpdyStream ----

  allowedToSend(stream: SpdyStream, wanted: number): number {
    if (!this.peerDoesFlowControl) return wanted;
    return Math.max(0, Math.min(wanted, stream.sendWindow, this.sessionSendWindow));
  }

  /** Written at once; resolves when the socket takes more (drain) or the session is gone. */
  sendData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void> {
    stream.sendWindow -= data.length;
    this.sessionSendWindow -= data.length;
    if (this.closed) return Promise.resolve();
    const written = this.connection.data(dataFrame(stream.id, fin ? FLAG_FIN : 0, data));
    return fin ? written.then(() => this.maybeForget(stream)) : written;
  }

  streamWantsData(stream: SpdyStream): void {
    this.acknowledge(stream);
    this.connection.resume(stream);
  }

  forget(stream: SpdyStream, err: Error | null): void {
    if (this.streams.get(stream.id) === stream) {
      // Destroyed before both sides finished: tell the peer.
      if (!(stream.localFinished && stream.remoteFinished)) this.writeControl(wordsFrame(FrameType.RstStream, stream.id, err ? RstStatus.InternalError : RstStatus.Cancel));
      this.drop(stream);
    }
    this.connection.resume(stream);
    if (this.goneAway && this.streams.size === 0) this.connection.end();
  }

  // ---- writing ----

  private writeControl(frame: Buffer): void {
    if (!this.closed) this.connection.control(frame);
  }

  /** Control frames with a header block: the block is made at once, the frame written in call order. */
  private sendHeaderFrame(type: number, flags: number, head: Buffer, headers: SpdyHeaders): void {
    this.writeControl(controlFrame(type, flags, Buffer.concat([head, this.deflater.process(encodeNameValues(headers))])));
  }

  private goAway(status: number): void {
    if (this.goneAway || this.closed) return;
    this.goneAway = true;
    this.writeControl(wordsFrame(FrameType.GoAway, this.lastPeerId, status));
  }

  // ---- reading ----

  private async handle(f: Frame): Promise<void> {
    if (this.closed) return;
    if (!f.control) return this.onDataFrame(f.streamId, f.flags, f.data);
    const p = f.payload;
    const malformed = (what: string): SpdyViolation => new SpdyViolation(`malformed SPDY ${what} frame (${p.length} bytes)`, { goAway: GoAwayStatus.ProtocolError });
    switch (f.type) {
      case FrameType.SynStream: {
        if (p.length < 10) throw malformed('SYN_STREAM');
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const { headers, bytes } = await this.readHeaders(id, p.subarray(10));
        const why = this.refusalOf(id);
        if (why) {
          if (id > this.lastPeerId && why.status !== RstStatus.ProtocolError) this.lastPeerId = id;
          this.writeControl(wordsFrame(FrameType.RstStream, id, why.status));
          return;
        }
        if (this.headerBytes + bytes > this.limits.maxSessionHeaderBytes) {
          this.lastPeerId = id;
          this.writeControl(wordsFrame(FrameType.RstStream, id, RstStatus.RefusedStream));
          return;
        }
        this.lastPeerId = id;
        const stream = new SpdyStream(this, id, headers);
        stream.headerBytes = bytes;
        this.headerBytes += bytes;
        stream.recvWindow = this.receiveWindow;
        this.streams.set(id, stream);
        if (f.flags & FLAG_FIN) {
          stream.remoteFinished = true;
          stream.push(null);
        }
        if (f.flags & FLAG_UNIDIRECTIONAL) stream.localFinished = true;
        this.emit('stream', stream);
        return;
      }
      case FrameType.SynReply:
      case FrameType.Headers: {
        if (p.length < 4) throw malformed(f.type === FrameType.SynReply ? 'SYN_REPLY' : 'HEADERS');
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const { headers, bytes } = await this.readHeaders(id, p.subarray(4));
        const stream = this.streams.get(id);
        if (!stream) return;
        if (this.headerBytes + bytes > this.limits.maxSessionHeaderBytes) {
          throw new SpdyViolation(`SPDY stream ${id}: headers past the session's ${this.limits.maxSessionHeaderBytes} bytes`, { stream: { id, status: RstStatus.FrameTooLarge } });
        }
        stream.headerBytes += bytes;
        this.headerBytes += bytes;
        if (f.type === FrameType.SynReply) {
          stream.resolveReply(headers);
        } else {
          Object.assign(stream.headers, headers);
          stream.emit('headers', headers);
        }
        if (f.flags & FLAG_FIN) this.remoteFin(stream);
        return;
      }
      case FrameType.RstStream: {
        if (p.length !== 8) throw malformed('RST_STREAM');
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const status = p.readUInt32BE(4);
        const stream = this.streams.get(id);
        if (!stream) return;
        this.drop(stream);
        const err = Object.assign(new Error(`SPDY stream ${id} reset by the peer (status ${status})`), { status });
        stream.rejectReply(err);
        stream.destroy(status === RstStatus.Cancel ? undefined : err);
        return;
      }
      case FrameType.Settings: {
        const n = p.length >= 4 ? p.readUInt32BE(0) : -1;
        if (n < 0 || p.length !== 4 + 8 * n) throw malformed('SETTINGS');
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
        if (p.length !== 4) throw malformed('PING');
        const id = p.readUInt32BE(0);
        if ((id % 2 === 0) === (this.options.role === 'server')) {
          if (id === this.windowPing) this.peerSawOurWindows = true;
          this.pings.get(id)?.();
          this.pings.delete(id);
        } else {
          const now = Date.now();
          if (now - this.pingWindowStart >= 1000) {
            this.pingWindowStart = now;
            this.pingsInWindow = 0;
          }
          if (++this.pingsInWindow > this.limits.maxPingsPerSecond) {
            throw new SpdyViolation(`SPDY peer sent more than ${this.limits.maxPingsPerSecond} PINGs in a second: dropped`, { goAway: GoAwayStatus.ProtocolError, abrupt: true });
          }
          this.writeControl(controlFrame(FrameType.Ping, 0, p));
        }
        return;
      }
      case FrameType.GoAway:
        this.goneAway = true;
        if (this.streams.size === 0) this.connection.end();
        return;
      case FrameType.WindowUpdate: {
        if (p.length !== 8) throw malformed('WINDOW_UPDATE');
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
        // Unknown control frames are ignored, as the spec asks (maxControlFrameBytes bounds them).
        return;
    }
  }

  /**
   * A header block, inflated up to maxHeaderBlockBytes. Past it the session's zlib context is
   * lost (inflating stopped mid-block), so the stream is reset and the session ends; a block
   * that inflates but will not decode costs the stream only.
   */
  private async readHeaders(id: number, block: Buffer): Promise<{ headers: SpdyHeaders; bytes: number }> {
    let raw: Buffer;
    try {
      raw = await this.inflater.process(block, this.limits.maxHeaderBlockBytes);
    } catch (err) {
      if (err instanceof HeaderBlockTooLarge) throw new SpdyViolation(`SPDY stream ${id}: ${err.message}`, { stream: { id, status: RstStatus.FrameTooLarge }, goAway: GoAwayStatus.ProtocolError });
      throw new SpdyViolation(`SPDY stream ${id}: header block does not inflate: ${(err as Error).message}`, { goAway: GoAwayStatus.ProtocolError });
    }
    try {
      return { headers: decodeNameValues(raw, this.limits.maxHeaderCount), bytes: raw.length };
    } catch (err) {
      throw new SpdyViolation(`SPDY stream ${id}: ${(err as Error).message}`, { stream: { id, status: RstStatus.ProtocolError } });
    }
  }

  /** Why a SYN_STREAM for `id` is refused, if it is. */
  private refusalOf(id: number): { status: number } | undefined {
    if (id === 0 || id <= this.lastPeerId || (id % 2 === 1) !== (this.options.role === 'server')) return { status: RstStatus.ProtocolError };
    if (this.goneAway) return { status: RstStatus.RefusedStream };
    if (this.streams.size >= this.limits.maxConcurrentStreams) return { status: RstStatus.RefusedStream };
    // Nobody would ever read it or answer it.
    if (this.listenerCount('stream') === 0) return { status: RstStatus.RefusedStream };
    return undefined;
  }

  private onDataFrame(id: number, flags: number, data: Buffer): void {
    const held = this.peerDoesFlowControl && this.peerSawOurWindows;
    this.sessionRecvWindow -= data.length;
    if (held && this.sessionRecvWindow < 0) {
      throw new SpdyViolation(`SPDY peer sent ${-this.sessionRecvWindow} bytes past the session's window`, { goAway: GoAwayStatus.ProtocolError });
    }
    const stream = this.streams.get(id);
    if (!stream) {
      // A stream reset or refused a moment ago: its bytes still count for the session's window.
      this.sessionUnacked += data.length;
      this.acknowledgeSession();
      return;
    }
    if (stream.remoteFinished) throw new SpdyViolation(`SPDY stream ${id}: data after its FIN`, { stream: { id, status: RstStatus.StreamAlreadyClosed } });
    if (data.length) {
      stream.recvWindow -= data.length;
      if (held && stream.recvWindow < 0) {
        throw new SpdyViolation(`SPDY stream ${id}: ${-stream.recvWindow} bytes past its window`, { stream: { id, status: RstStatus.FlowControlError } });
      }
      stream.unacked += data.length;
      this.sessionUnacked += data.length;
      if (stream.push(data)) {
        this.acknowledge(stream);
      } else if (!this.peerDoesFlowControl) {
        // Only TCP can hold back a peer that ignores windows.
        this.connection.pause(stream);
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
      this.writeControl(wordsFrame(FrameType.WindowUpdate, stream.id, stream.unacked));
      stream.recvWindow += stream.unacked;
      stream.unacked = 0;
    }
    this.acknowledgeSession();
  }

  private acknowledgeSession(): void {
    if (this.sessionUnacked < this.sessionWindow / 2) return;
    this.writeControl(wordsFrame(FrameType.WindowUpdate, 0, this.sessionUnacked));
    this.sessionRecvWindow += this.sessionUnacked;
    this.sessionUnacked = 0;
  }

  private remoteFin(stream: SpdyStream): void {
    if (stream.remoteFinished) return;
    stream.remoteFinished = true;
    stream.push(null);
    this.maybeForget(stream);
  }

  // ---- ending ----

  /** The stream leaves the session: its headers no longer count against the session's. */
  private drop(stream: SpdyStream): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.headerBytes -= stream.headerBytes;
  }

  private maybeForget(stream: SpdyStream): void {
    if (stream.localFinished && stream.remoteFinished) {
      this.drop(stream);
      if (this.goneAway && this.streams.size === 0) this.connection.end();
    }
  }

  /**
   * Answer a peer that broke the protocol or a limit: reset the stream concerned, and for a
   * session-level violation (or any unexpected error while reading) send GOAWAY, stop reading,
   * and end the connection (what the peer still sends is read and dropped).
   */
  private refuse(err: unknown): void {
    if (this.closed) return;
    const v = err instanceof SpdyViolation ? err : new SpdyViolation(`SPDY session failed: ${(err as Error).message}`, { goAway: GoAwayStatus.ProtocolError });
    const { stream: rst, goAway } = v.refusal;
    if (rst) {
      this.writeControl(wordsFrame(FrameType.RstStream, rst.id, rst.status));
      const stream = this.streams.get(rst.id);
      if (stream) {
        this.drop(stream);
        stream.rejectReply(v);
        stream.destroy(v);
      }
    }
    if (goAway === undefined) return;
    this.goAway(goAway);
    // A flooding peer gets no graceful close: reading on would only parse more of its flood.
    if (v.refusal.abrupt) this.connection.destroy();
    else {
      this.connection.discard();
      this.connection.end();
    }
    this.raise(v);
    this.shutdown();
  }

  private raise(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
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
    this.headerBytes = 0;
    this.inflater.close();
    for (const resolve of this.pings.values()) resolve();
    this.pings.clear();
    this.emit('close');
  }
}
