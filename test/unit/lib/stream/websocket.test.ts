import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { acceptKey } from '../../../../lib/stream/websocket-handshake.js';
import { applyMask, WebSocket, WebSocketError } from '../../../../lib/stream/websocket.js';
import { closePayload, frame, Op, webSocketHarness } from './websocket-fixtures.js';

// lib/stream/websocket against itself over real TCP on 127.0.0.1, and against hand-made peers that
// write frames byte by byte, break the protocol on purpose, or never answer.

/** A Duplex whose reads are fed by the test and whose writes are collected. */
class FakeSocket extends Duplex {
  readonly written: Buffer[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, callback: () => void): void {
    this.written.push(chunk);
    callback();
  }
}

const closeOf = (ws: WebSocket): Promise<[number, string]> => new Promise((resolve) => ws.once('close', (code, reason) => resolve([code, reason])));
const messageOf = (ws: WebSocket): Promise<[Buffer, boolean]> => new Promise((resolve) => ws.once('message', (data, binary) => resolve([data, binary])));
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** `n` bytes of UTF-8 text with multi-byte characters in it. */
const textOf = (n: number): string => 'abc✓'.repeat(Math.floor(n / 6)) + 'a'.repeat(n % 6);

describe('WebSocket (RFC 6455)', () => {
  const { wsServer, listen, client, rawClient } = webSocketHarness();

  describe('data frames', () => {
    it.each([0, 1, 125, 126, 65535, 65536, 4 * 1024 * 1024])('echoes a %i-byte binary and text message', async (size) => {
      const port = await wsServer([], (ws) => ws.on('message', (data, binary) => ws.send(data, binary)));
      const ws = await client(port);
      const bytes = randomBytes(size);
      const text = textOf(size);
      expect(Buffer.byteLength(text)).toBe(size);
      const got: [Buffer, boolean][] = [];
      const both = new Promise<void>((resolve) =>
        ws.on('message', (data, binary) => {
          got.push([data, binary]);
          if (got.length === 2) resolve();
        }),
      );
      ws.send(bytes);
      ws.send(text);
      await both;
      expect(got[0]![1]).toBe(true);
      expect(sha(got[0]![0])).toBe(sha(bytes));
      expect(got[1]![1]).toBe(false);
      expect(got[1]![0].toString('utf8') === text).toBe(true);
    });

    it('reassembles a fragmented masked message written one byte at a time, answering a ping between fragments', async () => {
      const messages: [string, boolean][] = [];
      const port = await wsServer([], (ws) => ws.on('message', (data, binary) => messages.push([data.toString(), binary])));
      const peer = await rawClient(port);
      const wire = Buffer.concat([
        frame(Op.Text, 'Hel', { fin: false }),
        frame(Op.Ping, 'are you there'),
        frame(Op.Continuation, 'lo, ', { fin: false }),
        frame(Op.Continuation, Buffer.alloc(0), { fin: false }),
        frame(Op.Continuation, 'wörld'),
      ]);
      for (const byte of wire) {
        peer.socket.write(Buffer.from([byte]));
        await tick();
      }
      const pong = await peer.frame();
      expect(pong).toEqual({ fin: true, opcode: Op.Pong, payload: Buffer.from('are you there') });
      await expect.poll(() => messages).toEqual([['Hello, wörld', false]]);
    });

    it('reads frames split at every byte, with a 64-bit length, whatever the chunking', async () => {
      const payload = randomBytes(70_000);
      const wire = Buffer.concat([frame(Op.Binary, payload.subarray(0, 3), { fin: false }), frame(Op.Continuation, payload.subarray(3))]);
      for (const piece of [1, 7, 4096]) {
        const socket = new FakeSocket();
        const ws = new WebSocket(socket, 'server');
        const got = messageOf(ws);
        await tick();
        for (let i = 0; i < wire.length; i += piece) socket.push(Buffer.from(wire.subarray(i, i + piece)));
        const [data, binary] = await got;
        expect(binary).toBe(true);
        expect(data.equals(payload)).toBe(true);
        ws.terminate();
      }
    });

    it('unmasks at any offset and alignment exactly as a byte-wise XOR', () => {
      const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
      const source = randomBytes(1000);
      for (const start of [0, 1, 2, 3]) {
        for (const offset of [0, 1, 2, 3, 5]) {
          for (const len of [0, 1, 3, 4, 5, 17, 999 - start]) {
            const data = Buffer.from(source).subarray(start, start + len);
            const expected = Buffer.from(data.map((b, i) => b ^ mask[(offset + i) % 4]!));
            applyMask(data, mask, offset);
            expect(data.equals(expected)).toBe(true);
          }
        }
      }
    });

    it('answers ping with a pong carrying the same payload', async () => {
      const port = await wsServer([], () => undefined);
      const ws = await client(port);
      const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve));
      ws.ping(Buffer.from('keepalive 1'));
      expect((await pong).toString()).toBe('keepalive 1');
      expect(() => ws.ping(Buffer.alloc(126))).toThrow(RangeError);
    });

    it('moves 100 MB from client to server through masking and unmasking', async () => {
      const total = 100;
      const chunk = randomBytes(1024 * 1024);
      let received = 0;
      let intact = true;
      let done = (): void => undefined;
      const all = new Promise<void>((resolve) => (done = resolve));
      const port = await wsServer([], (ws) =>
        ws.on('message', (data) => {
          intact &&= data.equals(chunk);
          if (++received === total) done();
        }),
      );
      const ws = await client(port);
      const started = Date.now();
      for (let i = 0; i < total; i++) {
        if (!ws.send(chunk)) await new Promise<void>((resolve) => ws.once('drain', resolve));
      }
      await all;
      expect(intact).toBe(true);
      expect(Date.now() - started).toBeLessThan(15_000);
    });
  });

  describe('protocol errors', () => {
    it.each([
      ['an unmasked client frame', frame(Op.Text, 'hi', { mask: false }), 1002],
      ['an RSV bit without an extension', frame(Op.Text, 'hi', { rsv: 4 }), 1002],
      ['a 126-byte ping', frame(Op.Ping, Buffer.alloc(126)), 1002],
      ['a fragmented ping', frame(Op.Ping, 'x', { fin: false }), 1002],
      ['a continuation with no message', frame(Op.Continuation, 'x'), 1002],
      ['a new message inside a fragmented one', Buffer.concat([frame(Op.Text, 'a', { fin: false }), frame(Op.Binary, 'b')]), 1002],
      ['a reserved opcode', frame(3, 'x'), 1002],
      ['invalid UTF-8 text', frame(Op.Text, Buffer.from([0x68, 0xc3, 0x28])), 1007],
      ['invalid UTF-8 split across fragments', Buffer.concat([frame(Op.Text, Buffer.from([0xe2, 0x9c]), { fin: false }), frame(Op.Continuation, Buffer.from([0x41]))]), 1007],
      ['a 1-byte Close payload', frame(Op.Close, Buffer.from([3])), 1002],
      ['Close code 1005 on the wire', frame(Op.Close, closePayload(1005)), 1002],
      ['a message over maxMessageBytes', frame(Op.Binary, Buffer.alloc(2000)), 1009],
    ])('closes on %s with the matching code', async (_name, wire, code) => {
      let server: WebSocket | undefined;
      let error: Error | undefined;
      const port = await wsServer(
        [],
        (ws) => {
          server = ws;
          ws.on('error', (err) => (error = err));
        },
        { maxMessageBytes: 1024 },
      );
      const peer = await rawClient(port);
      await expect.poll(() => server).toBeDefined();
      const serverClosed = closeOf(server!);
      peer.socket.write(wire);
      const reply = await peer.frame();
      expect(reply.opcode).toBe(Op.Close);
      expect(reply.payload.readUInt16BE(0)).toBe(code);
      expect((await serverClosed)[0]).toBe(code);
      expect(error).toBeInstanceOf(WebSocketError);
      expect((error as WebSocketError).closeCode).toBe(code);
      // Failing the connection ends TCP too, without waiting for the peer's Close.
      await peer.closed;
    });

    it('a client closes with 1002 when the server masks its frames', async () => {
      const port = await listen((server) =>
        server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
          socket.on('error', () => undefined);
          socket.on('end', () => socket.end());
          socket.resume();
          const key = String(req.headers['sec-websocket-key']);
          socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
          socket.write(frame(Op.Text, 'masked'));
        }),
      );
      const ws = await client(port);
      const messages: Buffer[] = [];
      ws.on('message', (m) => messages.push(m));
      expect(await closeOf(ws)).toEqual([1002, 'masked frame from the server']);
      expect(messages).toEqual([]);
    });
  });

  describe('closing', () => {
    it('a client-initiated close carries code and reason to both sides', async () => {
      const serverClose: Promise<[number, string]>[] = [];
      const port = await wsServer([], (ws) => serverClose.push(closeOf(ws)));
      const ws = await client(port);
      await expect.poll(() => serverClose.length).toBe(1);
      const clientClose = closeOf(ws);
      ws.close(4001, 'bye now');
      expect(ws.closed).toBe(true);
      expect(await serverClose[0]).toEqual([4001, 'bye now']);
      expect(await clientClose).toEqual([4001, 'bye now']);
    });

    it('a server-initiated close carries code and reason to both sides, 1000 by default', async () => {
      const port = await wsServer([], (ws) => {
        ws.on('message', (m) => ws.close(m.length ? 4002 : undefined, m.toString()));
      });
      for (const [text, expected] of [
        ['going away ✓', [4002, 'going away ✓']],
        ['', [1000, '']],
      ] as const) {
        const ws = await client(port);
        const closed = closeOf(ws);
        ws.send(text);
        expect(await closed).toEqual(expected);
      }
    });

    it('answers a Close without a code with an empty Close and reports 1005', async () => {
      let server: WebSocket | undefined;
      const port = await wsServer([], (ws) => (server = ws));
      const peer = await rawClient(port);
      await expect.poll(() => server).toBeDefined();
      const closed = closeOf(server!);
      peer.socket.write(frame(Op.Close, Buffer.alloc(0)));
      expect(await peer.frame()).toEqual({ fin: true, opcode: Op.Close, payload: Buffer.alloc(0) });
      expect(await closed).toEqual([1005, '']);
    });

    it('gives up on a peer that never answers Close after closeTimeoutMs, reporting 1006', async () => {
      let server: WebSocket | undefined;
      const port = await wsServer([], (ws) => (server = ws), { closeTimeoutMs: 200 });
      const peer = await rawClient(port);
      await expect.poll(() => server).toBeDefined();
      const closed = closeOf(server!);
      server!.close(1001, 'shutting down');
      const sent = await peer.frame();
      expect(sent.opcode).toBe(Op.Close);
      expect(sent.payload.toString('utf8', 2)).toBe('shutting down');
      expect(await closed).toEqual([1006, '']);
      await peer.closed;
    });

    it('reports 1006 on both sides when a socket is destroyed abruptly', async () => {
      const serverClose: Promise<[number, string]>[] = [];
      const port = await wsServer([], (ws) => serverClose.push(closeOf(ws)));
      const ws = await client(port);
      await expect.poll(() => serverClose.length).toBe(1);
      const clientClose = closeOf(ws);
      ws.terminate();
      expect(await clientClose).toEqual([1006, '']);
      expect(await serverClose[0]).toEqual([1006, '']);
    });

    it("emits 'close' exactly once and drops messages sent after closing", async () => {
      let server: WebSocket | undefined;
      const port = await wsServer([], (ws) => (server = ws));
      const ws = await client(port);
      await expect.poll(() => server).toBeDefined();
      const received: Buffer[] = [];
      server!.on('message', (m) => received.push(m));
      let closes = 0;
      ws.on('close', () => closes++);
      ws.close();
      expect(ws.send('too late')).toBe(true);
      ws.close(4000);
      await closeOf(server!);
      await expect.poll(() => closes).toBe(1);
      ws.terminate();
      await sleep(50);
      expect(closes).toBe(1);
      expect(received).toEqual([]);
    });
  });

  describe('flow control', () => {
    it("send returns false once the socket buffer is full, and 'drain' follows", async () => {
      let server: WebSocket | undefined;
      const port = await wsServer([], (ws) => (server = ws));
      const ws = await client(port);
      const received: Buffer[] = [];
      ws.on('message', (m) => received.push(m));
      await expect.poll(() => server).toBeDefined();
      const results: boolean[] = [];
      for (let i = 0; i < 32; i++) results.push(server!.send(Buffer.alloc(256 * 1024, i)));
      expect(results).toContain(false);
      await new Promise<void>((resolve) => server!.once('drain', resolve));
      await expect.poll(() => received.length).toBe(32);
      expect(received.map((m) => m[0])).toEqual([...Array(32).keys()]);
    });

    it('pause() holds messages back and pushes back on the sender until resume()', async () => {
      let server: WebSocket | undefined;
      const port = await wsServer([], (ws) => (server = ws));
      const ws = await client(port);
      ws.pause();
      const received: number[] = [];
      ws.on('message', (m) => received.push(m[0]!));
      await expect.poll(() => server).toBeDefined();
      let drained = false;
      server!.on('drain', () => (drained = true));
      for (let i = 0; i < 48; i++) server!.send(Buffer.alloc(1024 * 1024, i));
      await sleep(300);
      expect(received).toEqual([]);
      expect(drained).toBe(false);
      ws.resume();
      await expect.poll(() => received.length, { timeout: 10_000 }).toBe(48);
      expect(received).toEqual([...Array(48).keys()]);
      await expect.poll(() => drained).toBe(true);
    });
  });
});
