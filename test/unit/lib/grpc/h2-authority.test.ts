import { mkdtempSync, rmSync } from 'node:fs';
import { connect as h2connect, createServer as h2server, type ClientHttp2Session, type Http2Server } from 'node:http2';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthorityRewriter, rewritingSocket, fixRequestHeaders, maxHeaderBlockBytes, safeAuthority } from '../../../../lib/grpc/h2-authority.js';
import { encodeHeaderBlock } from '../../../../lib/grpc/hpack.js';

// A Node (nghttp2) HTTP/2 server behind the authority rewriter, and a Node HTTP/2 client that
// sends what Go gRPC clients send over unix sockets: the socket path as :authority. Without the
// rewriter nghttp2 resets those streams; with it every request arrives with its headers intact.

describe('HTTP/2 :authority rewriting', () => {
  let dir = '';
  let listener: Server | undefined;
  let h2: Http2Server | undefined;
  let client: ClientHttp2Session | undefined;

  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'berth-h2-')); });
  afterEach(async () => {
    client?.destroy();
    h2?.close();
    await new Promise((r) => (listener ? listener.close(r) : r(undefined)));
    listener = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** Serve echo-the-headers on a unix socket, with or without the rewriter in front. */
  async function serve(rewrite: boolean): Promise<string> {
    const socket = join(dir, 'h2.sock');
    h2 = h2server();
    h2.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(JSON.stringify(headers));
    });
    listener = createServer((s) => h2!.emit('connection', rewrite ? rewritingSocket(s)! : s));
    await new Promise<void>((r) => listener!.listen(socket, r));
    client = h2connect('http://localhost', { createConnection: () => connect(socket) });
    return socket;
  }

  function request(headers: Record<string, string>): Promise<Record<string, string>> {
    return new Promise((resolve, reject) => {
      const req = client!.request(headers, { endStream: true });
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => resolve(JSON.parse(body) as Record<string, string>));
      req.on('error', reject);
    });
  }

  it('nghttp2 alone resets a stream whose :authority is a socket path', async () => {
    const socket = await serve(false);
    await expect(request({ ':path': '/x', ':authority': socket })).rejects.toMatchObject({ code: 'ERR_HTTP2_STREAM_ERROR' });
  });

  it('with the rewriter, requests arrive with the authority percent-encoded and every other header intact', async () => {
    const socket = await serve(true);
    const first = await request({ ':path': '/runtime.v1.RuntimeService/Version', ':authority': socket, 'content-type': 'application/grpc', te: 'trailers', 'user-agent': 'grpc-go/1.51.0' });
    expect(first[':authority']).toBe(safeAuthority(socket));
    expect(first[':authority']).toContain('%2F');
    expect(first[':path']).toBe('/runtime.v1.RuntimeService/Version');
    expect(first['user-agent']).toBe('grpc-go/1.51.0');
    // Later requests reuse the client's dynamic table (indexed fields, Huffman strings), and a
    // header block larger than one frame arrives as HEADERS + CONTINUATION.
    for (let i = 0; i < 20; i++) {
      const big = 'x'.repeat(i === 10 ? 40_000 : i);
      const echoed = await request({ ':path': `/p/${i}`, ':authority': socket, 'user-agent': 'grpc-go/1.51.0', 'x-big': big, 'x-i': String(i) });
      expect(echoed[':path']).toBe(`/p/${i}`);
      expect(echoed['x-big']).toBe(big);
      expect(echoed['x-i']).toBe(String(i));
      expect(echoed[':authority']).toBe(safeAuthority(socket));
    }
  });

  it('leaves a valid authority alone, adds one when missing, and encodes what an authority may not hold', () => {
    expect(safeAuthority('localhost:50051')).toBe('localhost:50051');
    expect(safeAuthority('/run/berth/cri.sock')).toBe('%2Frun%2Fberth%2Fcri.sock');
    expect(safeAuthority('a b')).toBe('a%20b');
    const fields = fixRequestHeaders([
      { name: ':method', value: 'POST', sensitive: false },
      { name: ':path', value: '/x', sensitive: false },
      { name: 'te', value: 'trailers', sensitive: false },
    ]);
    expect(fields.map((f) => f.name)).toEqual([':method', ':path', ':authority', 'te']);
  });

  it('once a connection needs no fixing, its bytes pass untouched; once it did, every block is re-encoded', () => {
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
    const headers = (streamId: number, authority: string): Buffer => {
      const block = encodeHeaderBlock([
        { name: ':method', value: 'POST', sensitive: false },
        { name: ':path', value: '/runtime.v1.RuntimeService/Version', sensitive: false },
        { name: ':authority', value: authority, sensitive: false },
      ]);
      const h = Buffer.alloc(9);
      h.writeUIntBE(block.length, 0, 3);
      h[3] = 0x1; // HEADERS
      h[4] = 0x4; // END_HEADERS
      h.writeUInt32BE(streamId, 5);
      return Buffer.concat([h, block]);
    };
    const good = Buffer.concat([preface, headers(1, 'localhost'), headers(3, 'localhost')]);
    const clean = new AuthorityRewriter();
    expect(Buffer.concat(clean.push(good))).toEqual(good);
    expect(clean.passthrough).toBe(true);
    const bad = Buffer.concat([preface, headers(1, '/run/berth/cri.sock')]);
    const fixing = new AuthorityRewriter();
    const first = Buffer.concat(fixing.push(bad));
    expect(first.includes(Buffer.from('%2Frun%2Fberth%2Fcri.sock'))).toBe(true);
    expect(fixing.passthrough).toBe(false);
    // A later block with nothing to fix still goes through the rewriter: the server's HPACK
    // state is the rewriter's now, not the client's.
    fixing.push(headers(3, 'localhost'));
    expect(fixing.passthrough).toBe(false);
  });

  it('passes frames through byte for byte when split anywhere, and refuses what is not HTTP/2', () => {
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
    const settings = Buffer.from('000000040000000000', 'hex');
    const ping = Buffer.from('0000080600000000000102030405060708', 'hex');
    const all = Buffer.concat([preface, settings, ping]);
    for (let cut = 1; cut < all.length; cut++) {
      const r = new AuthorityRewriter();
      expect(Buffer.concat([...r.push(all.subarray(0, cut)), ...r.push(all.subarray(cut))])).toEqual(all);
    }
    expect(() => new AuthorityRewriter().push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toThrow(/preface/);
  });

  it('refuses a CONTINUATION flood and frames larger than the default frame size, before buffering them', () => {
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
    const frame = (type: number, flags: number, payload: Buffer): Buffer => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(1, 5);
      return Buffer.concat([h, payload]);
    };
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
    const flood = new AuthorityRewriter();
    flood.push(Buffer.concat([preface, frame(0x1, 0, Buffer.alloc(100))]));
    const piece = frame(0x9, 0, Buffer.alloc(1000));
    let refused: unknown;
    let sent = 0;
    try {
      for (; sent < 10 * maxHeaderBlockBytes; sent += piece.length) flood.push(piece);
    } catch (err) {
      refused = err;
    }
    expect(String(refused)).toMatch(/header block longer than 65536 bytes/);
    expect(sent).toBeLessThanOrEqual(maxHeaderBlockBytes);
    // Empty CONTINUATION frames are bounded too: their frame headers count.
    const empty = new AuthorityRewriter();
    empty.push(Buffer.concat([preface, frame(0x1, 0, Buffer.alloc(0))]));
    expect(() => { for (let i = 0; i < maxHeaderBlockBytes; i++) empty.push(frame(0x9, 0, Buffer.alloc(0))); }).toThrow(/header block longer/);
    // A frame header announcing 16 MiB is refused at once, not waited for.
    const big = Buffer.alloc(9);
    big.writeUIntBE(0xffffff, 0, 3);
    expect(() => new AuthorityRewriter().push(Buffer.concat([preface, big]))).toThrow(/larger than 16384/);
  });
});
