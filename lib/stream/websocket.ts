import { isUtf8 } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

// WebSocket (RFC 6455), both ends, for Kubernetes exec/attach/port-forward over the
// *.channel.k8s.io subprotocols. No extensions are negotiated (so no permessage-deflate and
// the RSV bits must stay zero), and outgoing messages always go as one frame.
//
// Incoming bytes are kept as a list of socket chunks. Frame headers are read from it; the
// payload of a data frame is unmasked in place, chunk by chunk, as it arrives, so a message
// costs one copy (the final concat) however it was split. Control frames are small (<= 125
// bytes) and read whole. Messages are delivered from the next event-loop turn on, so callers
// have time to attach listeners after acceptWebSocket returns or connectWebSocket resolves.
//
// The HTTP upgrade that opens a connection, both sides, is in websocket-handshake.ts.

const Opcode = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9, Pong: 0xa } as const;

/** Close codes of section 7.4.1 this module sends or reports. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
} as const;

/** client-go sends stdin and port-forward data in messages of at most 32 KiB; a message is held whole until its last fragment. */
export const defaultMaxMessageBytes = 4 * 1024 * 1024;
/** gorilla/websocket fragments at its 4 KiB write buffer: 4 MiB is 1024 of those. */
const defaultMaxFragments = 4096;
/** Pongs and Closes a peer may leave unread while our socket is full (a ping flood that never reads). */
const maxUnreadControlBytes = 64 * 1024;
const defaultCloseTimeoutMs = 5000;
/**
 * Reading steps (a frame is 2 to 5) taken before other I/O gets a turn: a socket hands over up
 * to 2 MiB per read event, which can be 300,000 pings, each answered with a write.
 */
const stepsPerTurn = 4096;
/** Up to this size a payload is copied next to its header and written once; above it, header and payload go out corked. */
const inlinePayloadBytes = 16 * 1024;

export interface WebSocketOptions {
  /** Largest message accepted, after reassembly; anything larger closes the connection with 1009, as soon as a frame header says so. Default 4 MiB. */
  maxMessageBytes?: number;
  /** Most frames one message may come in; more closes the connection with 1009. Default 4096. */
  maxFragments?: number;
  /** Close the connection (1001) after this long without a byte either way. Default: never. */
  idleTimeoutMs?: number;
  /** How long close() waits for the peer's Close, and an ending socket for the peer's FIN, before destroying it. Default 5 s. */
  closeTimeoutMs?: number;
}

/**
 * XOR `data` in place with the 4-byte `mask`, as if `data` started `offset` bytes into the
 * payload. Whole 32-bit words in the middle, so multi-megabyte messages stay cheap.
 */
export function applyMask(data: Buffer, mask: Buffer, offset = 0): void {
  const n = data.length;
  let i = 0;
  const lead = Math.min(n, (4 - (data.byteOffset & 3)) & 3);
  for (; i < lead; i++) data[i] = data[i]! ^ mask[(offset + i) & 3]!;
  const words = (n - i) >>> 2;
  if (words > 0) {
    // The mask as one word, in memory order, starting where the aligned part starts.
    const rotated = new Uint8Array(4);
    for (let j = 0; j < 4; j++) rotated[j] = mask[(offset + i + j) & 3]!;
    const word = new Uint32Array(rotated.buffer)[0]!;
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] = view[w]! ^ word;
    i += words * 4;
  }
  for (; i < n; i++) data[i] = data[i]! ^ mask[(offset + i) & 3]!;
}

/** Close codes a peer may put on the wire (section 7.4): 1004-1006 and 1015 are for reporting only. */
function isWireCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/** `text` as UTF-8, cut to at most `max` bytes without splitting a character. */
function utf8Prefix(text: string, max: number): Buffer {
  const b = Buffer.from(text, 'utf8');
  if (b.length <= max) return b;
  let end = max;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

const ReadState = { Header: 0, Length16: 1, Length64: 2, Mask: 3, Payload: 4 } as const;
type ReadState = (typeof ReadState)[keyof typeof ReadState];

type WebSocketEvents = {
  message: [data: Buffer, binary: boolean];
  close: [code: number, reason: string];
  error: [err: Error];
  drain: [];
  ping: [data: Buffer];
  pong: [data: Buffer];
};

/** An error that closed the connection; `closeCode` is what was sent to the peer. */
export class WebSocketError extends Error {
  constructor(
    message: string,
    readonly closeCode: number,
  ) {
    super(message);
    this.name = 'WebSocketError';
  }
}

/**
 * One WebSocket connection over an upgraded socket. Events: 'message' (data, binary), 'close'
 * (code, reason) exactly once, 'error' (only when listened to, so a misbehaving peer cannot
 * crash the process; 'close' follows), 'drain', 'ping' and 'pong' (payload).
 */
export class WebSocket extends EventEmitter<WebSocketEvents> {
  readonly protocol: string;
  private readonly maxMessageBytes: number;
  private readonly maxFragments: number;
  private readonly closeTimeoutMs: number;

  // Bytes received and not parsed yet.
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private state: ReadState = ReadState.Header;
  private fin = false;
  private opcode = 0;
  private masked = false;
  private frameLength = 0;
  private frameRemaining = 0;
  private mask: Buffer = Buffer.alloc(4);
  // The data message being reassembled (opcode 0 when none).
  private messageOpcode = 0;
  private fragments: Buffer[] = [];
  private messageBytes = 0;
  private messageFrames = 0;
  /** Control frames written since the socket last drained, owed by a peer that does not read. */
  private unreadControlBytes = 0;

  private started = false;
  private parsing = false;
  private peerEnded = false;
  private socketClosed = false;
  private paused = false;
  /** Reading stopped until the next event-loop turn, so one flood does not hold the loop. */
  private yielding = false;
  /** No more frames are read: a Close arrived, the connection failed, or the socket ended. */
  private stopped = false;
  private closeSent = false;
  private received?: { code: number; reason: string };
  private failure?: { code: number; reason: string };
  private closeEmitted = false;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly socket: Duplex,
    readonly role: 'server' | 'client',
    options: WebSocketOptions & { protocol?: string; head?: Buffer } = {},
  ) {
    super();
    this.protocol = options.protocol ?? '';
    this.maxMessageBytes = options.maxMessageBytes ?? defaultMaxMessageBytes;
    this.maxFragments = options.maxFragments ?? defaultMaxFragments;
    this.closeTimeoutMs = options.closeTimeoutMs ?? defaultCloseTimeoutMs;
    if (options.head?.length) this.onData(Buffer.from(options.head));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => {
      this.peerEnded = true;
      this.settle();
    });
    socket.on('close', () => {
      this.socketClosed = true;
      this.settle();
    });
    socket.on('error', (err) => this.raise(err));
    socket.on('drain', () => {
      this.unreadControlBytes = 0;
      this.emit('drain');
    });
    if (options.idleTimeoutMs) {
      (socket as Partial<Socket>).setTimeout?.(options.idleTimeoutMs);
      socket.on('timeout', () => {
        this.raise(new WebSocketError(`WebSocket ${this.role}: idle for ${options.idleTimeoutMs} ms`, CloseCode.GoingAway));
        this.close(CloseCode.GoingAway, 'idle timeout');
      });
    }
    setImmediate(() => this.start());
  }

  /** True once no more messages can be sent: a Close was sent or received, or the socket is gone. */
  get closed(): boolean {
    return this.closeSent || this.closeEmitted || !this.socket.writable;
  }

  /**
   * Send one message (binary by default for a Buffer, text for a string). False when the socket's
   * buffer is full: wait for 'drain'. Once closed, the message is dropped and true returned.
   */
  send(data: Buffer | string, binary: boolean = typeof data !== 'string'): boolean {
    if (this.closed) return true;
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    return this.writeFrame(binary ? Opcode.Binary : Opcode.Text, payload);
  }

  ping(data: Buffer = Buffer.alloc(0)): void {
    if (data.length > 125) throw new RangeError(`ping payload of ${data.length} bytes (at most 125)`);
    if (!this.closed) this.writeFrame(Opcode.Ping, data);
  }

  /** Start the closing handshake: send Close, then end the socket once the peer's Close arrives (or after closeTimeoutMs). */
  close(code: number = CloseCode.Normal, reason = ''): void {
    if (!isWireCloseCode(code)) throw new RangeError(`close code ${code} may not be sent`);
    if (this.closeSent || this.closeEmitted) return;
    this.writeClose(code, reason);
    this.armTimer();
  }

  /** Destroy the socket now, without a closing handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Stop reading: no 'message' until resume(), and the socket is paused so TCP pushes back on the peer. */
  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    this.paused = false;
    // What is already buffered goes first, so that the socket's 'end' cannot overtake it.
    this.parse();
    if (this.paused) return;
    if (!this.stopped && !this.yielding) this.socket.resume();
    this.settle();
  }

  // ---- reading ----

  private start(): void {
    if (this.started) return;
    this.started = true;
    // Whoever had the socket before may have left it paused.
    if (this.paused) this.socket.pause();
    else this.socket.resume();
    this.parse();
    this.settle();
  }

  /**
   * Act on the socket's end and close once the bytes before them are read. Until start() (the
   * first event-loop turn) nothing is delivered, so nothing is dropped either.
   */
  private settle(): void {
    // What arrived before the end is read first (a yield resumes here when it is done).
    if (!this.started || this.yielding) return;
    if (this.peerEnded && !this.paused && !this.stopped) {
      // FIN without a Close frame first: the connection ended abnormally (1006).
      this.stopReading();
      this.endSocket();
    }
    if (this.socketClosed) this.emitClose();
  }

  private onData(chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.started) this.parse();
  }

  private parse(): void {
    if (this.parsing || !this.started || this.yielding) return;
    this.parsing = true;
    try {
      let steps = 0;
      while (!this.paused && !this.stopped && this.step()) {
        if (++steps < stepsPerTurn) continue;
        this.yielding = true;
        this.socket.pause();
        setImmediate(() => {
          this.yielding = false;
          if (!this.paused && !this.stopped) this.socket.resume();
          this.parse();
          this.settle();
        });
        break;
      }
    } finally {
      this.parsing = false;
    }
  }

  /** The next `n` buffered bytes (n <= buffered), copied only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    this.buffered -= n;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
      filled += k;
    }
    return out;
  }

  /** One step of the frame reader; false when it needs more bytes (or stopped). */
  private step(): boolean {
    switch (this.state) {
      case ReadState.Header: {
        if (this.buffered < 2) return false;
        const h = this.take(2);
        return this.onHeader(h[0]!, h[1]!);
      }
      case ReadState.Length16:
        if (this.buffered < 2) return false;
        this.frameLength = this.take(2).readUInt16BE(0);
        return this.onLength();
      case ReadState.Length64: {
        if (this.buffered < 8) return false;
        const b = this.take(8);
        const high = b.readUInt32BE(0);
        if (high & 0x80000000) return this.fail(CloseCode.ProtocolError, '64-bit payload length with the most significant bit set');
        // Anything past 2^53 is far beyond any message limit; keep it a safe integer.
        this.frameLength = high >= 0x200000 ? Number.MAX_SAFE_INTEGER : high * 2 ** 32 + b.readUInt32BE(4);
        return this.onLength();
      }
      case ReadState.Mask:
        if (this.buffered < 4) return false;
        this.mask = this.take(4);
        this.state = ReadState.Payload;
        return true;
      case ReadState.Payload:
        return this.opcode >= Opcode.Close ? this.readControlPayload() : this.readDataPayload();
    }
  }

  private onHeader(b0: number, b1: number): boolean {
    this.fin = (b0 & 0x80) !== 0;
    this.opcode = b0 & 0x0f;
    this.masked = (b1 & 0x80) !== 0;
    this.frameLength = b1 & 0x7f;
    if (b0 & 0x70) return this.fail(CloseCode.ProtocolError, 'RSV bits set, but no extension was negotiated');
    // Section 5.1: clients mask every frame, servers none.
    if (this.masked !== (this.role === 'server')) {
      return this.fail(CloseCode.ProtocolError, this.role === 'server' ? 'unmasked frame from the client' : 'masked frame from the server');
    }
    if (this.opcode >= Opcode.Close) {
      if (this.opcode > Opcode.Pong) return this.fail(CloseCode.ProtocolError, `reserved control opcode 0x${this.opcode.toString(16)}`);
      if (!this.fin) return this.fail(CloseCode.ProtocolError, 'fragmented control frame');
      if (this.frameLength > 125) return this.fail(CloseCode.ProtocolError, 'control frame longer than 125 bytes');
    } else if (this.opcode === Opcode.Continuation) {
      if (this.messageOpcode === 0) return this.fail(CloseCode.ProtocolError, 'continuation frame without a message to continue');
      // Empty fragments cost nothing to send and something to read: a message's frames are counted too.
      if (++this.messageFrames > this.maxFragments) return this.fail(CloseCode.MessageTooBig, `message in more than ${this.maxFragments} fragments`);
    } else if (this.opcode === Opcode.Text || this.opcode === Opcode.Binary) {
      if (this.messageOpcode !== 0) return this.fail(CloseCode.ProtocolError, 'new message before the previous one was finished');
      this.messageOpcode = this.opcode;
      this.messageFrames = 1;
    } else {
      return this.fail(CloseCode.ProtocolError, `reserved data opcode 0x${this.opcode.toString(16)}`);
    }
    if (this.frameLength === 126) this.state = ReadState.Length16;
    else if (this.frameLength === 127) this.state = ReadState.Length64;
    else return this.onLength();
    return true;
  }

  private onLength(): boolean {
    if (this.opcode < Opcode.Close && this.messageBytes + this.frameLength > this.maxMessageBytes) {
      return this.fail(CloseCode.MessageTooBig, `message larger than ${this.maxMessageBytes} bytes`);
    }
    this.frameRemaining = this.frameLength;
    this.state = this.masked ? ReadState.Mask : ReadState.Payload;
    return true;
  }

  private readControlPayload(): boolean {
    if (this.buffered < this.frameLength) return false;
    const payload = this.frameLength === 0 ? Buffer.alloc(0) : this.take(this.frameLength);
    if (this.masked) applyMask(payload, this.mask);
    this.state = ReadState.Header;
    if (this.opcode === Opcode.Ping) {
      if (!this.closed && !this.writeControl(Opcode.Pong, payload)) return false;
      this.emit('ping', payload);
    } else if (this.opcode === Opcode.Pong) {
      this.emit('pong', payload);
    } else {
      this.onCloseFrame(payload);
    }
    return true;
  }

  /** Takes whatever part of the payload has arrived, unmasking it where it lies. */
  private readDataPayload(): boolean {
    if (this.frameRemaining > 0) {
      if (this.buffered === 0) return false;
      while (this.frameRemaining > 0 && this.buffered > 0) {
        const piece = this.take(Math.min(this.frameRemaining, this.chunks[0]!.length));
        if (this.masked) applyMask(piece, this.mask, this.frameLength - this.frameRemaining);
        this.fragments.push(piece);
        this.messageBytes += piece.length;
        this.frameRemaining -= piece.length;
      }
      if (this.frameRemaining > 0) return true;
    }
    this.state = ReadState.Header;
    if (this.fin) this.deliver();
    return true;
  }

  private deliver(): void {
    const binary = this.messageOpcode === Opcode.Binary;
    const data = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments, this.messageBytes);
    this.messageOpcode = 0;
    this.fragments = [];
    this.messageBytes = 0;
    this.messageFrames = 0;
    if (!binary && !isUtf8(data)) {
      this.fail(CloseCode.InvalidPayload, 'text message is not valid UTF-8');
      return;
    }
    this.emit('message', data, binary);
  }

  private onCloseFrame(payload: Buffer): void {
    let code: number = CloseCode.NoStatus;
    let reason = '';
    if (payload.length === 1) {
      this.fail(CloseCode.ProtocolError, 'Close frame with a 1-byte payload');
      return;
    }
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!isWireCloseCode(code)) {
        this.fail(CloseCode.ProtocolError, `Close frame with code ${code}, which may not be sent`);
        return;
      }
      const text = payload.subarray(2);
      if (!isUtf8(text)) {
        this.fail(CloseCode.InvalidPayload, 'Close reason is not valid UTF-8');
        return;
      }
      reason = text.toString('utf8');
    }
    this.received = { code, reason };
    this.stopReading();
    // Section 5.5.1: answer a Close with a Close (echoing code and reason), then the TCP connection goes.
    if (!this.closeSent) this.writeClose(code === CloseCode.NoStatus ? undefined : code, reason);
    this.endSocket();
  }

  private stopReading(): void {
    this.stopped = true;
    this.chunks.length = 0;
    this.buffered = 0;
    this.fragments = [];
  }

  /**
   * A frame we owe the peer (a Pong). While our socket is full it is owed by a peer that does
   * not read: past maxUnreadControlBytes of those, the connection is dropped. False then.
   */
  private writeControl(opcode: number, payload: Buffer): boolean {
    if (this.socket.writableNeedDrain) {
      this.unreadControlBytes += 2 + payload.length;
      if (this.unreadControlBytes > maxUnreadControlBytes) {
        this.failure = { code: CloseCode.PolicyViolation, reason: 'the peer does not read' };
        this.stopReading();
        this.socket.destroy();
        this.raise(new WebSocketError(`WebSocket ${this.role}: the peer left ${this.unreadControlBytes} bytes of control frames unread`, CloseCode.PolicyViolation));
        return false;
      }
    }
    this.writeFrame(opcode, payload);
    return true;
  }

  // ---- writing ----

  private writeFrame(opcode: number, payload: Buffer): boolean {
    if (!this.socket.writable) return true;
    const len = payload.length;
    const extended = len < 126 ? 0 : len < 65536 ? 2 : 8;
    const maskAt = 2 + extended;
    const headerBytes = maskAt + (this.role === 'client' ? 4 : 0);
    // A client copies the payload anyway (it must not mask the caller's buffer); a server copies small ones.
    const inline = this.role === 'client' || len <= inlinePayloadBytes;
    const frame = Buffer.allocUnsafe(headerBytes + (inline ? len : 0));
    frame[0] = 0x80 | opcode;
    frame[1] = (this.role === 'client' ? 0x80 : 0) | (extended === 0 ? len : extended === 2 ? 126 : 127);
    if (extended === 2) frame.writeUInt16BE(len, 2);
    if (extended === 8) {
      frame.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
      frame.writeUInt32BE(len >>> 0, 6);
    }
    if (inline) payload.copy(frame, headerBytes);
    if (this.role === 'client') {
      randomFillSync(frame, maskAt, 4);
      applyMask(frame.subarray(headerBytes), frame.subarray(maskAt, headerBytes));
    }
    if (inline) return this.socket.write(frame);
    this.socket.cork();
    this.socket.write(frame);
    const ok = this.socket.write(payload);
    this.socket.uncork();
    return ok;
  }

  /** Send Close; `code` undefined sends an empty payload (the answer to a Close without a code). */
  private writeClose(code: number | undefined, reason: string): void {
    this.closeSent = true;
    let payload = Buffer.alloc(0);
    if (code !== undefined) {
      // 125 bytes of control payload, 2 of them the code.
      const text = utf8Prefix(reason, 123);
      payload = Buffer.allocUnsafe(2 + text.length);
      payload.writeUInt16BE(code, 0);
      text.copy(payload, 2);
    }
    this.writeFrame(Opcode.Close, payload);
  }

  // ---- ending ----

  /** Fail the connection (section 7.1.7): send Close with `code`, stop reading, end the socket. */
  private fail(code: number, reason: string): false {
    if (this.stopped) return false;
    this.failure = { code, reason };
    this.stopReading();
    if (!this.closeSent) this.writeClose(code, reason);
    this.endSocket();
    this.raise(new WebSocketError(`WebSocket ${this.role}: ${reason}`, code));
    return false;
  }

  private endSocket(): void {
    if (!this.socket.writableEnded) this.socket.end();
    this.armTimer();
  }

  private armTimer(): void {
    if (this.timer || this.closeEmitted) return;
    this.timer = setTimeout(() => this.socket.destroy(), this.closeTimeoutMs);
    this.timer.unref();
  }

  private raise(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private emitClose(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.stopReading();
    clearTimeout(this.timer);
    const end = this.received ?? this.failure ?? { code: CloseCode.Abnormal, reason: '' };
    this.emit('close', end.code, end.reason);
  }
}
