import { Duplex, Readable, Writable } from 'node:stream';
import type { WebSocket } from './websocket.js';

// The Kubernetes channel framing over a WebSocket (k8s.io/apimachinery wsstream), both ends:
// every message starts with its channel number, one byte ("channel.k8s.io" and its v4/v5
// versions) or one ASCII digit followed by base64 text ("base64.channel.k8s.io", v4 too).
// Exec and attach use channels 0-4 (stdin, stdout, stderr, error, resize); port-forward two per
// port (data 2i, error 2i+1). v5 adds a control message, channel 255 followed by a channel
// number, saying the sender will write no more on that channel (how a client closes stdin).
// Also here: a WebSocket as a byte stream, for SPDY tunnelled in binary messages.

const closeSignal = 255;

export interface ChannelOptions {
  base64: boolean;
  /** v5.channel.k8s.io: understand (and allow sending) the half-close control message. */
  closeSignal: boolean;
}

export function channelOptions(protocol: string): ChannelOptions {
  return { base64: protocol.includes('base64'), closeSignal: protocol.startsWith('v5.') };
}

export class WsChannels {
  private readonly readers = new Map<number, Readable>();
  private readonly writers = new Set<Writable>();

  constructor(
    readonly ws: WebSocket,
    readonly options: ChannelOptions,
  ) {
    ws.on('message', (data) => this.onMessage(data));
    ws.on('close', () => {
      for (const r of this.readers.values()) if (!r.readableEnded) r.push(null);
      for (const w of this.writers) w.destroy();
    });
  }

  /** What the peer sends on channel `n`. Unread data pauses the whole connection. */
  readable(n: number): Readable {
    let r = this.readers.get(n);
    if (!r) {
      r = new Readable({ read: () => this.ws.resume() });
      this.readers.set(n, r);
    }
    return r;
  }

  /** A stream whose writes go to the peer on channel `n`; ending it sends nothing (v5: see sendClose). */
  writable(n: number): Writable {
    const w = new Writable({
      write: (chunk: Buffer, _enc, done) => whenSent(this.ws, this.send(n, chunk), done),
    });
    this.writers.add(w);
    return w;
  }

  /** One message on channel `n`; false when the socket is full (wait for the WebSocket's 'drain'). */
  send(n: number, data: Buffer | string): boolean {
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.options.base64) return this.ws.send(String.fromCharCode(48 + n) + payload.toString('base64'), false);
    const frame = Buffer.allocUnsafe(payload.length + 1);
    frame[0] = n;
    payload.copy(frame, 1);
    return this.ws.send(frame, true);
  }

  /** v5: tell the peer nothing more comes on channel `n`. */
  sendClose(n: number): void {
    if (this.options.closeSignal) this.ws.send(Buffer.from([closeSignal, n]), true);
  }

  private onMessage(data: Buffer): void {
    if (data.length === 0) return;
    let n = data[0]!;
    let payload = data.subarray(1);
    if (this.options.base64) {
      n -= 48;
      payload = Buffer.from(payload.toString('latin1'), 'base64');
    } else if (n === closeSignal && this.options.closeSignal) {
      const r = payload.length ? this.readers.get(payload[0]!) : undefined;
      if (r && !r.readableEnded) r.push(null);
      return;
    }
    const r = this.readers.get(n);
    // Messages for channels nobody reads are dropped, as kubelet does.
    if (!r || r.readableEnded || payload.length === 0) return;
    if (!r.push(payload)) this.ws.pause();
  }
}

/** Call `done` now if the send went out (`sent`), else once the socket drains or closes. */
function whenSent(ws: WebSocket, sent: boolean, done: () => void): void {
  if (sent) return done();
  const go = (): void => {
    ws.off('drain', go);
    ws.off('close', go);
    done();
  };
  ws.on('drain', go);
  ws.on('close', go);
}

/** A WebSocket as a byte stream: writes go out as binary messages, binary messages come in as data. */
export function webSocketDuplex(ws: WebSocket): Duplex {
  const sendMessage = (chunk: Buffer, done: () => void): void => whenSent(ws, ws.send(chunk, true), done);
  const duplex = new Duplex({
    read: () => ws.resume(),
    write: (chunk: Buffer, _enc, done) => sendMessage(chunk, done),
    // Corked writes (a frame header and its payload) go out as one message.
    writev: (chunks, done) => sendMessage(Buffer.concat(chunks.map((c) => c.chunk as Buffer)), done),
    final(done) {
      ws.close();
      done();
    },
    destroy(err, done) {
      ws.terminate();
      done(err);
    },
  });
  ws.on('message', (data, binary) => {
    if (binary && !duplex.push(data)) ws.pause();
  });
  ws.on('close', () => {
    duplex.push(null);
    // The peer is gone: nothing more can be written either.
    if (!duplex.destroyed) duplex.destroy();
  });
  ws.on('error', (err) => duplex.emit('error', err));
  return duplex;
}
