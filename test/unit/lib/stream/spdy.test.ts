import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, PassThrough } from 'node:stream';
import { constants as zc, createDeflate, createInflate } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FrameReader, FrameType } from '../../../../lib/stream/spdy-frames.js';
import { decodeNameValues, encodeNameValues, headerDictionary, type SpdyHeaders } from '../../../../lib/stream/spdy-headers.js';
import type { SpdyStream } from '../../../../lib/stream/spdy-stream.js';
import { SpdySession } from '../../../../lib/stream/spdy.js';

// SPDY/3.1 sessions of lib/stream/spdy talking to each other over a unix socket, and to a hand-made
// peer that behaves like moby/spdystream (no SETTINGS, no WINDOW_UPDATE).

const readAll = (s: SpdyStream): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });

describe('SPDY/3.1', () => {
  let dir = '';
  let server: Server | undefined;
  const sockets: Socket[] = [];

  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'berth-spdy-')); });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A server session per connection, handed to `onSession`; returns a connected client socket. */
  async function pair(onSession: (s: SpdySession) => void): Promise<Socket> {
    const path = join(dir, 's.sock');
    server = createServer((sock) => {
      sockets.push(sock);
      onSession(new SpdySession(sock, { role: 'server' }));
    });
    await new Promise<void>((r) => server!.listen(path, r));
    const sock = connect(path);
    sockets.push(sock);
    await new Promise((r) => sock.once('connect', r));
    return sock;
  }

  it('writes header blocks any zlib inflater with the SPDY dictionary reads, as one stream across frames', async () => {
    const raw = new PassThrough();
    const session = new SpdySession(new Duplex({ read() {}, write: (c: Buffer, _e, done) => { raw.write(c); done(); } }), { role: 'client' });
    const headers: SpdyHeaders[] = [{ streamtype: 'error' }, { streamtype: 'stdout', port: '80' }, { long: 'x'.repeat(70_000) }];
    for (const h of headers) session.openStream(h).on('error', () => undefined);
    await new Promise((r) => setImmediate(r));
    // The session's own first frames (its window, a PING) go ahead of the streams.
    const frames = new FrameReader().push(raw.read() as Buffer).filter((f) => f.control && f.type === FrameType.SynStream);
    expect(frames).toHaveLength(3);
    // Like Go's compress/zlib under spdystream: one inflate context for the whole session.
    const inflate = createInflate({ dictionary: headerDictionary });
    const decoded: Record<string, string>[] = [];
    for (const f of frames) {
      if (!f.control) throw new Error('a data frame where SYN_STREAM was expected');
      const block = f.payload.subarray(10);
      const out = await new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        const onData = (c: Buffer): void => void chunks.push(c);
        inflate.on('data', onData);
        inflate.write(block);
        inflate.flush(zc.Z_SYNC_FLUSH, () => {
          inflate.off('data', onData);
          resolve(Buffer.concat(chunks));
        });
      });
      decoded.push(decodeNameValues(out));
    }
    expect(decoded).toEqual(headers);
    session.close(true);
  });

  it('opens streams both ways, replies, carries data each way and half-closes', async () => {
    const got: { headers: Record<string, string>; body: string }[] = [];
    const sock = await pair((session) => {
      session.on('stream', (stream: SpdyStream) => {
        stream.reply({});
        void readAll(stream).then((body) => {
          got.push({ headers: stream.headers, body: body.toString() });
          stream.end(`echo:${body.toString()}`);
        });
      });
    });
    const client = new SpdySession(sock, { role: 'client' });
    const a = client.openStream({ streamtype: 'stdin' });
    const b = client.openStream({ streamtype: 'stdout', requestid: '7' });
    expect(a.id).toBe(1);
    expect(b.id).toBe(3);
    await Promise.all([a.replied, b.replied]);
    a.end('hello');
    b.end('');
    expect((await readAll(a)).toString()).toBe('echo:hello');
    expect((await readAll(b)).toString()).toBe('echo:');
    expect(got.map((g) => g.headers.streamtype).sort()).toEqual(['stdin', 'stdout']);
    expect(got.find((g) => g.headers.streamtype === 'stdout')?.headers.requestid).toBe('7');
    expect(await client.ping()).toBeGreaterThanOrEqual(0);
  });

  it('moves 40 streams of 1 MiB each way at once under flow control, intact', async () => {
    const sock = await pair((session) => {
      session.on('stream', (stream: SpdyStream) => {
        stream.reply({});
        stream.pipe(stream);
      });
    });
    const client = new SpdySession(sock, { role: 'client' });
    const results = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const payload = Buffer.alloc(1 << 20, i);
        const s = client.openStream({ streamtype: 'data', n: String(i) });
        const back = readAll(s);
        s.end(payload);
        return (await back).equals(payload);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    expect(client.peerDoesFlowControl).toBe(true);
  });

  it('talks to a peer without flow control (like spdystream): takes and sends more than a window', async () => {
    let received!: Promise<Buffer>;
    const sock = await pair((session) => {
      session.on('stream', (stream: SpdyStream) => {
        stream.reply({});
        received = readAll(stream);
        stream.end(Buffer.alloc(3 << 20, 7));
      });
    });
    // A raw client: SYN_STREAM with a zlib block compressed at level 9 (as Go's spdy does), then
    // 1 MiB of data frames, and never a WINDOW_UPDATE.
    const deflate = createDeflate({ dictionary: headerDictionary, level: 9 });
    const block = await new Promise<Buffer>((res) => {
      const chunks: Buffer[] = [];
      deflate.on('data', (c: Buffer) => chunks.push(c));
      deflate.write(encodeNameValues({ streamtype: 'stdin' }));
      deflate.flush(zc.Z_SYNC_FLUSH, () => res(Buffer.concat(chunks)));
    });
    const syn = Buffer.alloc(18);
    syn.writeUInt16BE(0x8003, 0);
    syn.writeUInt16BE(FrameType.SynStream, 2);
    syn.writeUInt32BE(10 + block.length, 4);
    syn.writeUInt32BE(1, 8);
    sock.write(Buffer.concat([syn, block]));
    const frames = new FrameReader();
    let fromServer = 0;
    const serverDone = new Promise<void>((resolve) => {
      sock.on('data', (c: Buffer) => {
        for (const f of frames.push(c)) {
          if (f.control) continue;
          fromServer += f.data.length;
          if (f.flags & 1) resolve();
        }
      });
    });
    for (let i = 0; i < 64; i++) {
      const h = Buffer.alloc(8);
      h.writeUInt32BE(1, 0);
      h.writeUInt32BE(((i === 63 ? 1 : 0) << 24) | 16384, 4);
      sock.write(Buffer.concat([h, Buffer.alloc(16384, 1)]));
    }
    await serverDone;
    expect(fromServer).toBe(3 << 20);
    expect((await received).length).toBe(1 << 20);
  });

  it("reads a compressing peer's header blocks across the switch from synchronous to streaming inflate", async () => {
    const seen: SpdyHeaders[] = [];
    const noise = Array.from({ length: 40 }, () => randomBytes(768).toString('base64'));
    const all = new Promise<void>((resolve) => {
      void pair((session) => {
        session.on('stream', (stream: SpdyStream) => {
          seen.push(stream.headers);
          if (seen.length === 40) resolve();
        });
      }).then((sock) => {
        // One zlib stream for the session, as Go's framer keeps: 40 blocks of ~1 KiB of random
        // (incompressible) text, ~40 KiB in all, well past the synchronous path's history.
        const deflate = createDeflate({ dictionary: headerDictionary, level: 9 });
        void (async () => {
          for (let i = 0; i < 40; i++) {
            const block = await new Promise<Buffer>((res) => {
              const chunks: Buffer[] = [];
              const onData = (c: Buffer): void => void chunks.push(c);
              deflate.on('data', onData);
              deflate.write(encodeNameValues({ streamtype: 'data', n: String(i), noise: noise[i]! }));
              deflate.flush(zc.Z_SYNC_FLUSH, () => {
                deflate.off('data', onData);
                res(Buffer.concat(chunks));
              });
            });
            const syn = Buffer.alloc(18);
            syn.writeUInt16BE(0x8003, 0);
            syn.writeUInt16BE(FrameType.SynStream, 2);
            syn.writeUInt32BE(10 + block.length, 4);
            syn.writeUInt32BE(2 * i + 1, 8);
            sock.write(Buffer.concat([syn, block]));
          }
        })();
      });
    });
    await all;
    expect(seen.map((h) => h.n)).toEqual(Array.from({ length: 40 }, (_, i) => String(i)));
    expect(seen.map((h) => h.noise)).toEqual(noise);
  });

  it('a RST_STREAM from the peer ends the stream; GOAWAY ends the session once streams are done', async () => {
    let serverSession: SpdySession | undefined;
    const sock = await pair((session) => {
      serverSession = session;
      session.on('stream', (stream: SpdyStream) => stream.reply({}));
    });
    const client = new SpdySession(sock, { role: 'client' });
    const s = client.openStream({ streamtype: 'x' });
    await s.replied;
    const serverSide = [...serverSession!.streams.values()][0]!;
    const closed = new Promise((r) => serverSide.on('close', r));
    s.reset();
    await closed;
    expect(serverSession!.streams.size).toBe(0);
    const ended = new Promise((r) => client.on('close', r));
    serverSession!.close();
    await ended;
  });
});
