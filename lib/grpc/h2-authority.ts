import { Socket } from 'node:net';
import { nativeAddon } from '../native.js';
import { encodeHeaderBlock, HpackDecoder, type HeaderField } from './hpack.js';

// Go gRPC clients of the kubelet 1.2x era (kubelet, crictl, critest, csi-sanity, the CSI
// sidecars) dialing a unix socket send the socket's path as the HTTP/2 `:authority`, e.g.
// "/run/berth/cri.sock". Go's HTTP/2 server takes that; nghttp2, under Node's http2 and so
// under grpc-js, resets the stream with PROTOCOL_ERROR, because "/" is not allowed in an
// authority. So every connection to a berth unix socket passes through this rewriter: it reads
// the client's frames, decodes each header block with the client's HPACK state, percent-encodes
// what the authority may not contain (adding "localhost" if it is missing), and gives the
// server the block again as plain literals. Everything else passes through untouched, and the
// server-to-client direction is not touched at all (rewritingSocket, at the end of this file).

const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const empty = Buffer.alloc(0);
const FRAME_HEADERS = 0x1;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** The frame size every HTTP/2 peer must accept, whatever it advertises. */
const maxFrame = 16384;
/**
 * The most a client may send in one header block (HEADERS + CONTINUATION frames, their frame
 * headers included) before it is refused: far above gRPC's 8 KiB of metadata, and small enough
 * that a CONTINUATION flood (frames that never say END_HEADERS) cannot grow the buffer.
 */
export const maxHeaderBlockBytes = 64 * 1024;

/** The authority with every character RFC 3986 does not allow there percent-encoded. */
export function safeAuthority(authority: string): string {
  return authority.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

export function fixRequestHeaders(fields: HeaderField[]): HeaderField[] {
  const out = fields.map((f) => (f.name === ':authority' ? { ...f, value: safeAuthority(f.value) } : f));
  if (!out.some((f) => f.name === ':authority' || f.name === 'host')) {
    const pseudo = out.filter((f) => f.name.startsWith(':')).length;
    out.splice(pseudo, 0, { name: ':authority', value: 'localhost', sensitive: false });
  }
  return out;
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

/** The client-to-server byte stream of one connection, with its header blocks re-encoded. */
export class AuthorityRewriter {
  private readonly decoder = new HpackDecoder();
  private pending: Buffer = Buffer.alloc(0);
  private sawPreface = false;
  /** A header block split over HEADERS + CONTINUATION frames, until END_HEADERS, and those frames as received. */
  private block?: { streamId: number; flags: number; priority?: Buffer; fragments: Buffer[]; raw: Buffer[]; rawBytes: number };
  /**
   * Set when the connection's first header block needed no change: a client keeps one
   * authority for its connection (gRPC clients do), so from then on bytes pass untouched.
   */
  passthrough = false;
  /** Set once a block went out re-encoded: the server's HPACK state is ours from then on. */
  private rewrote = false;

  /** Feed bytes from the client; returns the bytes to give the server. Throws on a broken stream. */
  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    if (this.passthrough) {
      const all = this.pending;
      this.pending = empty;
      return [all];
    }
    const out: Buffer[] = [];
    if (!this.sawPreface) {
      if (this.pending.length < preface.length) return out;
      if (!this.pending.subarray(0, preface.length).equals(preface)) throw new Error('not an HTTP/2 connection preface');
      out.push(this.pending.subarray(0, preface.length));
      this.pending = this.pending.subarray(preface.length);
      this.sawPreface = true;
    }
    let passFrom = 0;
    let pos = 0;
    while (!this.passthrough && this.pending.length - pos >= 9) {
      const length = this.pending.readUIntBE(pos, 3);
      // nghttp2 never advertises more than the default, so a larger frame is a FRAME_SIZE_ERROR
      // (RFC 9113, 4.2); refusing it here keeps a client from making us buffer 16 MiB for it.
      if (length > maxFrame) throw new Error(`a frame of ${length} bytes is larger than ${maxFrame}`);
      if (this.pending.length - pos < 9 + length) break;
      const type = this.pending[pos + 3]!;
      if (type === FRAME_HEADERS || type === FRAME_CONTINUATION || this.block) {
        if (pos > passFrom) out.push(this.pending.subarray(passFrom, pos));
        out.push(...this.headerFrame(type, this.pending[pos + 4]!, this.pending.readUInt32BE(pos + 5) & 0x7fffffff, this.pending.subarray(pos + 9, pos + 9 + length), this.pending.subarray(pos, pos + 9 + length)));
        passFrom = pos + 9 + length;
      }
      pos += 9 + length;
    }
    if (this.passthrough) {
      // Everything after the block that decided it goes on as it is, a partial frame too.
      if (this.pending.length > passFrom) out.push(this.pending.subarray(passFrom));
      this.pending = Buffer.alloc(0);
      return out;
    }
    // Whole frames that need no change go on as one slice; a partial frame waits for more.
    if (pos > passFrom) out.push(this.pending.subarray(passFrom, pos));
    this.pending = this.pending.subarray(pos);
    return out;
  }

  private headerFrame(type: number, flags: number, streamId: number, payload: Buffer, raw: Buffer): Buffer[] {
    if (type === FRAME_HEADERS) {
      if (this.block) throw new Error('HEADERS frame inside another header block');
      let p = payload;
      let padding = 0;
      if (flags & FLAG_PADDED) {
        padding = p[0]!;
        p = p.subarray(1);
      }
      let priority: Buffer | undefined;
      if (flags & FLAG_PRIORITY) {
        priority = Buffer.from(p.subarray(0, 5));
        p = p.subarray(5);
      }
      if (padding > p.length) throw new Error('HEADERS padding longer than the frame');
      this.block = { streamId, flags, priority, fragments: [Buffer.from(p.subarray(0, p.length - padding))], raw: [Buffer.from(raw)], rawBytes: raw.length };
    } else if (type === FRAME_CONTINUATION) {
      if (!this.block || this.block.streamId !== streamId) throw new Error('CONTINUATION frame outside a header block');
      this.block.rawBytes += raw.length;
      if (this.block.rawBytes > maxHeaderBlockBytes) throw new Error(`a header block longer than ${maxHeaderBlockBytes} bytes`);
      this.block.fragments.push(Buffer.from(payload));
      this.block.raw.push(Buffer.from(raw));
    } else {
      throw new Error('a frame interrupted a header block');
    }
    if (!(flags & FLAG_END_HEADERS)) return [];
    const block = this.block;
    this.block = undefined;
    const received = this.decoder.decode(Buffer.concat(block.fragments));
    const fields = fixRequestHeaders(received);
    if (!this.rewrote && fields.length === received.length && fields.every((f, i) => f.value === received[i]!.value)) {
      // Nothing to fix, and the server's HPACK state is still the client's: hand over the
      // frames as they came, and everything after them.
      this.passthrough = true;
      return block.raw;
    }
    this.rewrote = true;
    let encoded = encodeHeaderBlock(fields);
    const out: Buffer[] = [];
    const first = (block.flags & (FLAG_END_STREAM | FLAG_PRIORITY)) | (encoded.length + (block.priority?.length ?? 0) <= maxFrame ? FLAG_END_HEADERS : 0);
    const room = maxFrame - (block.priority?.length ?? 0);
    out.push(frame(FRAME_HEADERS, first, block.streamId, Buffer.concat([block.priority ?? Buffer.alloc(0), encoded.subarray(0, room)])));
    encoded = encoded.subarray(room);
    while (encoded.length) {
      const piece = encoded.subarray(0, maxFrame);
      encoded = encoded.subarray(maxFrame);
      out.push(frame(FRAME_CONTINUATION, encoded.length ? 0 : FLAG_END_HEADERS, block.streamId, piece));
    }
    return out;
  }
}

/**
 * A client connection as the HTTP/2 server should see it: a socket of its own, one end of a
 * socketpair, fed the client's bytes through an AuthorityRewriter, while what the server writes
 * on it goes to the client as it is. nghttp2 reads and writes that socket natively, so a reply
 * leaves as fast as on any socket; a JS stream in its place made nghttp2 wait a turn of the event
 * loop after each write, and a unary reply (HEADERS, DATA, then the trailers) took three turns.
 * Backpressure holds both ways; either side ending or closing ends or closes the other.
 * Undefined, with the client's socket closed, when no socketpair can be made.
 */
export function rewritingSocket(client: Socket, onError?: (err: Error) => void): Socket | undefined {
  let serverFd: number;
  let ourFd: number;
  try {
    [serverFd, ourFd] = nativeAddon('socketPair').socketPair();
  } catch (err) {
    // Out of descriptors (EMFILE): this connection is refused, the server goes on.
    onError?.(err as Error);
    client.destroy();
    return undefined;
  }
  const server = new Socket({ fd: serverFd, readable: true, writable: true });
  const ours = new Socket({ fd: ourFd, readable: true, writable: true });
  const rewriter = new AuthorityRewriter();
  client.on('data', (chunk: Buffer) => {
    let parts: Buffer[];
    try {
      parts = rewriter.push(chunk);
    } catch (err) {
      onError?.(err as Error);
      client.destroy();
      ours.destroy();
      return;
    }
    if (parts.length === 0) return;
    let more = true;
    ours.cork();
    for (const p of parts) more = ours.write(p) && more;
    ours.uncork();
    if (!more) {
      client.pause();
      ours.once('drain', () => client.resume());
    }
  });
  ours.on('data', (chunk: Buffer) => {
    if (!client.write(chunk)) {
      ours.pause();
      client.once('drain', () => ours.resume());
    }
  });
  client.on('end', () => ours.end());
  ours.on('end', () => client.end());
  client.on('error', () => ours.destroy());
  ours.on('error', () => client.destroy());
  client.on('close', () => ours.destroy());
  ours.on('close', () => client.destroy());
  return server;
}
