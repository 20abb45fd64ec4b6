import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { constants as zc, createInflate, inflateSync, type Inflate } from 'node:zlib';

// SPDY/3.1, the framing Kubernetes still uses for exec, attach and port-forward (client-go's
// remotecommand and portforward over moby/spdystream). One session multiplexes many streams
// over one upgraded HTTP/1.1 connection; each stream is a Duplex here.
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

const VERSION = 3;
export const FrameType = { SynStream: 1, SynReply: 2, RstStream: 3, Settings: 4, Ping: 6, GoAway: 7, Headers: 8, WindowUpdate: 9 } as const;
const FLAG_FIN = 0x01;
const FLAG_UNIDIRECTIONAL = 0x02;
const SETTINGS_INITIAL_WINDOW_SIZE = 7;
export const RstStatus = { ProtocolError: 1, InvalidStream: 2, RefusedStream: 3, Cancel: 5, InternalError: 6, FlowControlError: 7, StreamInUse: 8, StreamAlreadyClosed: 9 } as const;
const defaultWindow = 64 * 1024;
const maxDataFrame = 64 * 1024;

/** The zlib dictionary of SPDY/3 header blocks: 65 length-prefixed header words, then a run of common values. */
export const headerDictionary: Buffer = (() => {
  const words = [
    'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language',
    'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding',
    'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'etag',
    'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since',
    'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
    'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning',
    'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin',
  ];
  const tail =
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
    '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
    '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
    'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
    'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
    'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
  const parts: Buffer[] = [];
  for (const w of words) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    parts.push(len, Buffer.from(w, 'latin1'));
  }
  parts.push(Buffer.from(tail, 'latin1'));
  return Buffer.concat(parts);
})();

/** Header names are lower case; a value with several entries joins them with NUL. */
export type SpdyHeaders = Record<string, string>;

export function encodeNameValues(headers: SpdyHeaders): Buffer {
  const entries = Object.entries(headers);
  const parts: Buffer[] = [u32(entries.length)];
  for (const [name, value] of entries) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(value, 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

export function decodeNameValues(block: Buffer): SpdyHeaders {
  const out: SpdyHeaders = {};
  let pos = 0;
  const need = (n: number): void => {
    if (pos + n > block.length) throw new Error('SPDY header block ends early');
  };
  need(4);
  const count = block.readUInt32BE(pos);
  pos += 4;
  for (let i = 0; i < count; i++) {
    need(4);
    const nl = block.readUInt32BE(pos);
    pos += 4;
    need(nl);
    const name = block.subarray(pos, pos + nl).toString('utf8');
    pos += nl;
    need(4);
    const vl = block.readUInt32BE(pos);
    pos += 4;
    need(vl);
    const value = block.subarray(pos, pos + vl).toString('utf8');
    pos += vl;
    if (!name) throw new Error('SPDY header with an empty name');
    out[name] = name in out ? `${out[name]}\0${value}` : value;
  }
  return out;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/**
 * Our side of the header compression: a zlib stream made of stored (uncompressed) deflate
 * blocks. It is a valid continuation of one zlib stream for any inflater, with or without the
 * dictionary (the header announces it, as a compressor using it would), and needs no zlib call,
 * so a header frame is ready at once instead of after a round trip through the threadpool.
 * Header blocks are a few hundred bytes; compressing them would save little.
 */
class StoredDeflate {
  private started = false;

  process(input: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.started) {
      this.started = true;
      parts.push(zlibHeader);
    }
    for (let at = 0; at < input.length; at += 0xffff) {
      const piece = input.subarray(at, at + 0xffff);
      parts.push(storedBlockHeader(piece.length), piece);
    }
    // An empty stored block ends every header block, as a zlib sync flush does: inflaters such
    // as Go's hand out a block's bytes only once they have read the next block's header, and
    // must not need bytes of the next frame to do it.
    parts.push(storedBlockHeader(0));
    return Buffer.concat(parts);
  }
}

/** CMF 0x78 (deflate, 32 KiB window); FLG with FDICT and the check bits; the dictionary's Adler-32. */
const zlibHeader: Buffer = (() => {
  const cmf = 0x78;
  const head = Buffer.alloc(6);
  head[0] = cmf;
  head[1] = 0x20 + ((31 - ((cmf * 256 + 0x20) % 31)) % 31);
  head.writeUInt32BE(adler32(headerDictionary), 2);
  return head;
})();

/** BFINAL 0, BTYPE 00 (stored), padding to the byte boundary; LEN and its complement, little-endian. */
function storedBlockHeader(length: number): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt16LE(length, 1);
  h.writeUInt16LE(~length & 0xffff, 3);
  return h;
}

function adler32(data: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/**
 * The peer's header blocks: one zlib stream across the session. Early in a session (all an exec
 * or attach ever sends) the whole stream so far is inflated synchronously, which is quicker
 * than a round trip through zlib's threadpool and needs no zlib stream at all. Past
 * syncHistoryBytes of history a streaming inflater takes over: it is made then, fed the
 * history, and used from then on.
 */
class HeaderInflater {
  private stream?: ZStream;
  /** Every block so far, while the synchronous path is in use; undefined once it is not. */
  private history: Buffer[] | undefined = [];
  private historyBytes = 0;
  private produced = 0;

  process(block: Buffer): Buffer | Promise<Buffer> {
    if (this.history && this.historyBytes + block.length <= syncHistoryBytes) {
      try {
        const all = inflateSync(Buffer.concat([...this.history, block]), { dictionary: headerDictionary, finishFlush: zc.Z_SYNC_FLUSH });
        this.history.push(block);
        this.historyBytes += block.length;
        const out = all.subarray(this.produced);
        this.produced = all.length;
        return out;
      } catch {
        // The streaming inflater says what is wrong.
      }
    }
    if (!this.stream) {
      this.stream = new ZStream(createInflate({ dictionary: headerDictionary }));
      for (const earlier of this.history ?? []) this.stream.process(earlier).catch(() => undefined);
    }
    this.history = undefined;
    return this.stream.process(block);
  }

  close(): void {
    this.stream?.close();
  }
}

const syncHistoryBytes = 16 * 1024;

/** One zlib context, fed strictly in order; each call gets the output of its own input. */
class ZStream {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly z: Inflate) {
    z.on('error', () => undefined);
  }

  process(input: Buffer): Promise<Buffer> {
    const run = this.chain.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          const chunks: Buffer[] = [];
          const onData = (c: Buffer): void => void chunks.push(c);
          const onError = (err: Error): void => {
            this.z.off('data', onData);
            reject(err);
          };
          this.z.on('data', onData);
          this.z.once('error', onError);
          this.z.write(input);
          this.z.flush(zc.Z_SYNC_FLUSH, () => {
            this.z.off('data', onData);
            this.z.off('error', onError);
            resolve(Buffer.concat(chunks));
          });
        }),
    );
    this.chain = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.z.destroy();
  }
}

function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** A data frame as its header and the payload, unjoined: the payload is written as it is, not copied. */
function dataFrame(streamId: number, flags: number, data: Buffer): [Buffer, Buffer] {
  const h = Buffer.allocUnsafe(8);
  h.writeUInt32BE(streamId & 0x7fffffff, 0);
  h.writeUInt32BE(((flags & 0xff) << 24) | data.length, 4);
  return [h, data];
}

type Frame =
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
  private waitingForWindow?: () => void;

  constructor(
    readonly session: SpdySession,
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
export class SpdySession extends EventEmitter {
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
