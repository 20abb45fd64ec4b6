import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { FrameReader, SpdyViolation, type Frame } from './spdy-frames.js';

// The socket under a SPDY session (spdy.ts), with what it takes to keep a peer from making the
// session's memory or the event loop its own: frames come in strictly in order, a few thousand
// per event-loop turn, with the socket paused while they back up; control frames go out at
// once, but only so many while the peer does not read them; the end has a grace period.

/** How long an ending connection may take to flush before it is destroyed. */
const closeTimeoutMs = 5000;
/** Received frames waiting for a slow (threadpool) header inflate: past these the socket is paused. */
const maxBacklogBytes = 1024 * 1024;
const maxBacklogFrames = 4096;
/**
 * Frames handled before other I/O gets a turn. A socket hands over up to 2 MiB per read event,
 * which can be 170,000 PINGs: handled in one go, they would hold the event loop for a second.
 */
const framesPerTurn = 1024;
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface ConnectionHandlers {
  /** One frame, in order; a rejection (a SpdyViolation, or anything else) goes to `failed`. */
  frame(f: Frame): Promise<void> | void;
  /** Reading or handling failed: the reader's SpdyViolation, or a handler's error. */
  failed(err: unknown): void;
  /** The peer left maxUnreadControlBytes of control frames unread: the socket was destroyed. */
  abandoned(err: SpdyViolation): void;
}

export class SpdyConnection {
  private readonly reader: FrameReader;
  private inbound: Promise<void> = Promise.resolve();
  private backlogBytes = 0;
  private backlogFrames = 0;
  private framesSinceTurn = 0;
  /** Why the socket is paused: streams whose reader is full, or a backlog of frames. */
  private readonly pausedBy = new Set<object | 'backlog'>();
  /** Nothing more is handled: what the peer still sends is read and dropped. */
  private discarding = false;
  /** Control frames written since the socket last drained: a peer that does not read owes us these. */
  private unreadControlBytes = 0;
  private drained?: Promise<void>;
  private closeTimer?: NodeJS.Timeout;

  constructor(
    readonly socket: Duplex,
    private readonly limits: { maxControlFrameBytes: number; maxUnreadControlBytes: number },
    private readonly handlers: ConnectionHandlers,
  ) {
    this.reader = new FrameReader(limits.maxControlFrameBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => (this.unreadControlBytes = 0));
    socket.on('close', () => clearTimeout(this.closeTimer));
  }

  /** A socket timeout after `ms` without a byte either way (only sockets have one; a tunnel's carrier times itself). */
  setIdleTimeout(ms: number, onIdle: () => void): void {
    (this.socket as Partial<Socket>).setTimeout?.(ms);
    this.socket.on('timeout', onIdle);
  }

  get writable(): boolean {
    return !this.socket.destroyed && !this.socket.writableEnded;
  }

  /**
   * A control frame, written at once. While the socket is full, what we write is owed by a peer
   * that does not read (a PING flood's replies): past maxUnreadControlBytes the peer is dropped.
   */
  control(frame: Buffer): void {
    if (!this.writable) return;
    if (this.socket.writableNeedDrain) {
      this.unreadControlBytes += frame.length;
      if (this.unreadControlBytes > this.limits.maxUnreadControlBytes) {
        this.socket.destroy();
        this.handlers.abandoned(new SpdyViolation(`SPDY peer left ${this.unreadControlBytes} bytes of control frames unread: dropped`, {}));
        return;
      }
    }
    this.socket.write(frame);
  }

  /** A data frame's pieces, corked into one writev; resolves when the socket takes more (drain) or closes. */
  data(pieces: readonly Buffer[]): Promise<void> {
    if (!this.writable) return Promise.resolve();
    this.socket.cork();
    let ok = true;
    for (const b of pieces) if (b.length) ok = this.socket.write(b);
    this.socket.uncork();
    return ok ? Promise.resolve() : this.whenDrained();
  }

  /** End our side; a peer that does not read what is left, or never ends its side, is cut off after closeTimeoutMs. */
  end(): void {
    if (this.socket.destroyed) return;
    if (!this.socket.writableEnded) this.socket.end();
    this.closeTimer ??= setTimeout(() => this.socket.destroy(), closeTimeoutMs).unref();
  }

  /** Cut the connection now (what is unsent is lost: for a peer that floods us). */
  destroy(): void {
    this.socket.destroy();
  }

  pause(why: object | 'backlog'): void {
    this.pausedBy.add(why);
    this.socket.pause();
  }

  resume(why: object | 'backlog'): void {
    if (this.pausedBy.delete(why) && this.pausedBy.size === 0 && !this.discarding) this.socket.resume();
  }

  /** Handle nothing more, but keep reading (and dropping), so our last frames are not lost to a TCP reset over unread bytes. */
  discard(): void {
    this.discarding = true;
    this.socket.resume();
  }

  /** One wait for every writer that finds the socket full. */
  private whenDrained(): Promise<void> {
    this.drained ??= new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        this.drained = undefined;
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
    return this.drained;
  }

  private onData(chunk: Buffer): void {
    if (this.discarding) return;
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.handlers.failed(err);
      return;
    }
    for (const f of frames) {
      const size = f.control ? f.payload.length : f.data.length;
      this.backlogBytes += size;
      this.backlogFrames += 1;
      if (++this.framesSinceTurn >= framesPerTurn) {
        this.framesSinceTurn = 0;
        this.inbound = this.inbound.then(nextTurn);
      }
      this.inbound = this.inbound
        .then(() => (this.discarding ? undefined : this.handlers.frame(f)))
        .catch((err: unknown) => this.handlers.failed(err))
        .finally(() => {
          this.backlogBytes -= size;
          this.backlogFrames -= 1;
          if (this.backlogBytes <= maxBacklogBytes && this.backlogFrames <= framesPerTurn) this.resume('backlog');
        });
    }
    if (this.backlogBytes > maxBacklogBytes || this.backlogFrames > maxBacklogFrames) this.pause('backlog');
  }
}
