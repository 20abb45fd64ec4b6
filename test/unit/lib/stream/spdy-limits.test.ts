import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { deflateSync, constants as zc } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { controlFrame, dataFrame, FLAG_FIN, FrameReader, FrameType, GoAwayStatus, RstStatus, wordsFrame, type Frame } from '../../../../lib/stream/spdy-frames.js';
import { encodeNameValues, headerDictionary, type SpdyHeaders } from '../../../../lib/stream/spdy-headers.js';
import { floodUnread } from './flood.js';
import type { SpdyLimits } from '../../../../lib/stream/spdy-limits.js';
import type { SpdyStream } from '../../../../lib/stream/spdy-stream.js';
import { SpdySession } from '../../../../lib/stream/spdy.js';

// What a server session does with a peer that breaks SPDY's rules or berth's limits: the peer
// here is raw bytes on a socket, and what it reads back are the frames the session answers with.

/** A raw SPDY client: writes frames, reads the server's frames. Header blocks are whole zlib streams of their own (a new context per block is valid only for the first, so tests send one header frame unless noted). */
class RawPeer {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private readonly reader = new FrameReader();

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => this.frames.push(...this.reader.push(c)));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  /** The control frames of `type` received so far, as their 32-bit words. */
  control(type: number): number[][] {
    return this.frames
      .filter((f): f is Extract<Frame, { control: true }> => f.control && f.type === type)
      .map((f) => Array.from({ length: f.payload.length >> 2 }, (_, i) => f.payload.readUInt32BE(4 * i)));
  }

  async waitFor(type: number, match: (words: number[]) => boolean = () => true): Promise<number[]> {
    await expect.poll(() => this.control(type).find(match), { timeout: 5000 }).toBeDefined();
    return this.control(type).find(match)!;
  }
}

/** SYN_STREAM for `id` whose header block is `block` (an already compressed zlib stream). */
function synStream(id: number, block: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(10);
  head.writeUInt32BE(id, 0);
  return controlFrame(FrameType.SynStream, flags, Buffer.concat([head, block]));
}

/** A header block as a zlib stream of its own against the SPDY dictionary (the session's first block). */
function firstBlock(headers: SpdyHeaders | Buffer): Buffer {
  const raw = Buffer.isBuffer(headers) ? headers : encodeNameValues(headers);
  return deflateSync(raw, { dictionary: headerDictionary, level: 9, finishFlush: zc.Z_SYNC_FLUSH });
}

/** A continuation of an uncompressed zlib stream: stored blocks, which need no shared state with earlier blocks beyond the stream's header. */
function storedBlock(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < raw.length; at += 0xffff) {
    const piece = raw.subarray(at, at + 0xffff);
    const h = Buffer.alloc(5);
    h.writeUInt16LE(piece.length, 1);
    h.writeUInt16LE(~piece.length & 0xffff, 3);
    parts.push(h, piece);
  }
  const end = Buffer.alloc(5);
  end.writeUInt16LE(0xffff, 3);
  return Buffer.concat([...parts, end]);
}

/** A zlib stream header for uncompressed blocks with no dictionary, followed by the first headers. */
function storedStream(headers: SpdyHeaders): Buffer {
  return Buffer.concat([Buffer.from([0x78, 0x01]), storedBlock(encodeNameValues(headers))]);
}

describe('SPDY session limits', () => {
  let dir = '';
  let server: Server | undefined;
  const sockets: Socket[] = [];
  let session!: SpdySession;
  const sessionErrors: Error[] = [];
  const streams: SpdyStream[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-spdy-limits-'));
    sessionErrors.length = 0;
    streams.length = 0;
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A server session with `limits` (its streams are replied to and kept in `streams`) and a raw peer connected to it. */
  async function rawPeer(limits: Partial<SpdyLimits> = {}, options: { idleTimeoutMs?: number; listen?: boolean } = {}): Promise<RawPeer> {
    const path = join(dir, 's.sock');
    server = createServer((sock) => {
      sockets.push(sock);
      session = new SpdySession(sock, { role: 'server', limits, idleTimeoutMs: options.idleTimeoutMs });
      session.on('error', (err: Error) => sessionErrors.push(err));
      if (options.listen !== false) {
        session.on('stream', (s: SpdyStream) => {
          s.reply({});
          streams.push(s);
        });
      }
    });
    await new Promise<void>((r) => server!.listen(path, r));
    const sock = connect(path);
    sockets.push(sock);
    await new Promise((r) => sock.once('connect', r));
    return new RawPeer(sock);
  }

  it('refuses a control frame over maxControlFrameBytes from its header: FRAME_TOO_LARGE for its stream, then GOAWAY', async () => {
    const peer = await rawPeer({ maxControlFrameBytes: 1024 });
    // Only the first 12 bytes of a 1 MiB SYN_STREAM: the answer must not wait for the rest.
    peer.socket.write(synStream(1, Buffer.alloc(1 << 20)).subarray(0, 12));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([1, RstStatus.FrameTooLarge]);
    expect((await peer.waitFor(FrameType.GoAway))[1]).toBe(GoAwayStatus.ProtocolError);
    await peer.closed;
    expect(sessionErrors[0]?.message).toMatch(/larger than the limit of 1024/);
  });

  it('stops inflating a header block at maxHeaderBlockBytes (a bomb of a few KiB claiming MiBs), first block or later', async () => {
    const bomb = (n: number): Buffer => Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 1]), Buffer.from('x'), Buffer.alloc(4), Buffer.alloc(n)]);
    // Synchronous path: the session's first block.
    let peer = await rawPeer({ maxHeaderBlockBytes: 64 * 1024 });
    const block = firstBlock(bomb(32 << 20));
    expect(block.length).toBeLessThan(64 * 1024);
    peer.socket.write(synStream(1, block));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([1, RstStatus.FrameTooLarge]);
    expect((await peer.waitFor(FrameType.GoAway))[1]).toBe(GoAwayStatus.ProtocolError);
    await peer.closed;
    expect(streams).toHaveLength(0);

    // Streaming path: past the synchronous path's blocks, one zlib stream across frames.
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise((r) => server!.close(r));
    peer = await rawPeer({ maxHeaderBlockBytes: 64 * 1024 });
    const frames = [synStream(1, storedStream({ streamtype: 'a' }))];
    for (let i = 1; i < 40; i++) frames.push(synStream(2 * i + 1, storedBlock(encodeNameValues({ streamtype: 'a', n: String(i) }))));
    peer.socket.write(Buffer.concat(frames));
    await expect.poll(() => streams.length).toBe(40);
    // A deflate block can follow stored ones in the same stream: a raw deflate of the bomb.
    const deflated = deflateSync(bomb(32 << 20), { level: 9, finishFlush: zc.Z_SYNC_FLUSH });
    // Strip the zlib header (2 bytes): the session's stream already has one.
    peer.socket.write(synStream(81, deflated.subarray(2)));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([81, RstStatus.FrameTooLarge]);
    expect((await peer.waitFor(FrameType.GoAway))[1]).toBe(GoAwayStatus.ProtocolError);
    await peer.closed;
  });

  it('resets a stream with more than maxHeaderCount headers, and goes on with the next', async () => {
    const peer = await rawPeer({ maxHeaderCount: 4 });
    const many = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`h${i}`, 'v']));
    peer.socket.write(synStream(1, storedStream(many)));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([1, RstStatus.ProtocolError]);
    peer.socket.write(synStream(3, storedBlock(encodeNameValues({ streamtype: 'ok' }))));
    await expect.poll(() => streams.map((s) => s.headers.streamtype)).toEqual(['ok']);
    expect(peer.control(FrameType.GoAway)).toEqual([]);
  });

  it('refuses streams past maxConcurrentStreams and past maxSessionHeaderBytes, and takes new ones once others are gone', async () => {
    const peer = await rawPeer({ maxConcurrentStreams: 3, maxSessionHeaderBytes: 4000 });
    expect(await peer.waitFor(FrameType.Settings)).toEqual([1, 4, 3]);
    const frames = [synStream(1, storedStream({ n: '1' }))];
    for (const id of [3, 5, 7]) frames.push(synStream(id, storedBlock(encodeNameValues({ n: String(id) }))));
    peer.socket.write(Buffer.concat(frames));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([7, RstStatus.RefusedStream]);
    expect(streams).toHaveLength(3);
    /** Stream `i` of `streams` ends both ways, and leaves the session. */
    const finish = async (i: number): Promise<void> => {
      const before = session.streams.size;
      peer.socket.write(Buffer.concat(dataFrame(streams[i]!.id, FLAG_FIN, Buffer.alloc(0))));
      streams[i]!.end();
      await expect.poll(() => session.streams.size).toBe(before - 1);
    };
    await finish(0);
    peer.socket.write(synStream(9, storedBlock(encodeNameValues({ n: '9', big: 'x'.repeat(2000) }))));
    await expect.poll(() => streams.length).toBe(4);
    // Headers held by the open streams together: another 2000 bytes go past 4000.
    await finish(1);
    peer.socket.write(synStream(11, storedBlock(encodeNameValues({ n: '11', big: 'y'.repeat(2000) }))));
    expect(await peer.waitFor(FrameType.RstStream, (w) => w[0] === 11)).toEqual([11, RstStatus.RefusedStream]);
    expect(session.streams.size).toBe(2);
    expect(peer.control(FrameType.GoAway)).toEqual([]);
  });

  it('refuses a stream nobody listens for', async () => {
    const peer = await rawPeer({}, { listen: false });
    peer.socket.write(synStream(1, storedStream({ streamtype: 'stdin' })));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([1, RstStatus.RefusedStream]);
    expect(session.streams.size).toBe(0);
  });

  it('resets with FLOW_CONTROL_ERROR a stream whose peer keeps to windows but sends past ours', async () => {
    const peer = await rawPeer();
    // The peer shows it speaks flow control (a WINDOW_UPDATE) and answers the PING behind ours.
    const ping = await peer.waitFor(FrameType.Ping);
    peer.socket.write(Buffer.concat([wordsFrame(FrameType.WindowUpdate, 0, 1), wordsFrame(FrameType.Ping, ping[0]!), synStream(1, storedStream({ streamtype: 'stdin' }))]));
    await expect.poll(() => streams.length).toBe(1);
    // Nobody reads the stream. The peer sends what its window allows (64 KiB and what the
    // server's WINDOW_UPDATEs grant while the stream's buffer fills), until no more comes.
    const granted = (): number => 64 * 1024 + peer.control(FrameType.WindowUpdate).filter((w) => w[0] === 1).reduce((sum, w) => sum + w[1]!, 0);
    let sent = 0;
    for (let quiet = 0; quiet < 5; ) {
      const room = granted() - sent;
      if (room > 0) {
        peer.socket.write(Buffer.concat(dataFrame(1, 0, Buffer.alloc(room))));
        sent += room;
        quiet = 0;
      } else {
        quiet += 1;
      }
      await sleep(30);
    }
    expect(sent).toBeGreaterThanOrEqual(256 * 1024);
    expect(peer.control(FrameType.RstStream)).toEqual([]);
    // One byte past the window.
    peer.socket.write(Buffer.concat(dataFrame(1, 0, Buffer.alloc(1))));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([1, RstStatus.FlowControlError]);
    expect(streams[0]!.destroyed).toBe(true);
    expect(session.streams.size).toBe(0);
  });

  it('a peer without flow control (spdystream) is held back by TCP, not reset', async () => {
    const peer = await rawPeer();
    peer.socket.write(synStream(1, storedStream({ streamtype: 'stdin' })));
    await expect.poll(() => streams.length).toBe(1);
    // Nobody reads: 8 MiB sent, the server takes what fills the stream and stops reading.
    const chunk = Buffer.concat(dataFrame(1, 0, Buffer.alloc(64 * 1024)));
    for (let i = 0; i < 128; i++) peer.socket.write(chunk);
    await sleep(300);
    expect(peer.control(FrameType.RstStream)).toEqual([]);
    expect(streams[0]!.readableLength).toBeLessThanOrEqual(512 * 1024);
    expect(peer.socket.writableLength).toBeGreaterThan(0);
    let got = 0;
    streams[0]!.on('data', (c: Buffer) => (got += c.length));
    await expect.poll(() => got, { timeout: 10_000 }).toBe(8 << 20);
  });

  it('data after the peer finished a stream is STREAM_ALREADY_CLOSED, without an uncaught error', async () => {
    const peer = await rawPeer();
    peer.socket.write(synStream(1, storedStream({ streamtype: 'error' }), FLAG_FIN));
    await expect.poll(() => streams.length).toBe(1);
    peer.socket.write(Buffer.concat(dataFrame(1, 0, Buffer.from('late'))));
    expect(await peer.waitFor(FrameType.RstStream)).toEqual([1, RstStatus.StreamAlreadyClosed]);
  });

  it('ends the session with GOAWAY PROTOCOL_ERROR on a malformed control frame', async () => {
    const peer = await rawPeer();
    peer.socket.write(controlFrame(FrameType.Ping, 0, Buffer.alloc(5)));
    expect((await peer.waitFor(FrameType.GoAway))[1]).toBe(GoAwayStatus.ProtocolError);
    await peer.closed;
    expect(sessionErrors[0]?.message).toMatch(/malformed SPDY PING/);
  });

  it('drops a peer that floods PINGs and never reads the replies, holding only a bounded backlog', async () => {
    // Without the rate limit, so that the unread backlog is what stops it.
    const peer = await rawPeer({ maxUnreadControlBytes: 16 * 1024, maxPingsPerSecond: Number.POSITIVE_INFINITY });
    const pings = Buffer.concat(Array.from({ length: 4096 }, (_, i) => wordsFrame(FrameType.Ping, 2 * i + 1)));
    const serverSocket = sockets.find((s) => s !== peer.socket)!;
    const peak = await floodUnread(peer.socket, serverSocket, pings, 400);
    await expect.poll(() => serverSocket.destroyed).toBe(true);
    // The socket's own buffer (its highWaterMark: 16 KiB to Node 20, 64 KiB since 22), what we
    // allow past it (16 KiB) and one batch of replies in flight.
    expect(peak).toBeLessThan(serverSocket.writableHighWaterMark + 32 * 1024);
    expect(sessionErrors.some((e) => /unread/.test(e.message))).toBe(true);
  });

  it('cuts off a peer sending more PINGs in a second than maxPingsPerSecond, answering the ones before', async () => {
    const peer = await rawPeer({ maxPingsPerSecond: 50 });
    const serverSocket = sockets.find((s) => s !== peer.socket)!;
    peer.socket.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => wordsFrame(FrameType.Ping, 2 * i + 1))));
    // Our PINGs' replies (odd IDs); the server's own PING behind its first WINDOW_UPDATE is even.
    await expect.poll(() => peer.control(FrameType.Ping).filter(([id]) => id! % 2 === 1).length).toBe(50);
    expect(serverSocket.destroyed).toBe(false);
    peer.socket.write(wordsFrame(FrameType.Ping, 101));
    await expect.poll(() => serverSocket.destroyed).toBe(true);
    expect(sessionErrors.some((e) => /more than 50 PINGs in a second/.test(e.message))).toBe(true);
  });

  it('closes a session idle for idleTimeoutMs with GOAWAY OK', async () => {
    const peer = await rawPeer({}, { idleTimeoutMs: 200 });
    const started = Date.now();
    expect((await peer.waitFor(FrameType.GoAway))[1]).toBe(GoAwayStatus.Ok);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    peer.socket.end();
    await peer.closed;
  });
});
