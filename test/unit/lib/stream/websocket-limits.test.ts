import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { defaultMaxMessageBytes, type WebSocket, type WebSocketError } from '../../../../lib/stream/websocket.js';
import { floodUnread } from './flood.js';
import { frame, Op, webSocketHarness } from './websocket-fixtures.js';

// What a WebSocket server holds for a peer that sends too much: messages and fragments are
// bounded (1009), pongs a peer never reads are bounded, and an idle connection is closed.

describe('WebSocket limits', () => {
  const { wsServer, rawClient } = webSocketHarness();

  /** A server WebSocket with `options`, its errors collected, and a raw client connected to it. */
  async function serverAndPeer(options: Parameters<typeof wsServer>[2] = {}) {
    const errors: Error[] = [];
    let server: WebSocket | undefined;
    const port = await wsServer([], (ws) => {
      server = ws;
      ws.on('error', (err) => errors.push(err));
    }, options);
    const peer = await rawClient(port);
    await expect.poll(() => server).toBeDefined();
    return { peer, server: server!, errors };
  }

  it('has a default message limit of 4 MiB', () => {
    expect(defaultMaxMessageBytes).toBe(4 * 1024 * 1024);
  });

  it('refuses a huge frame from its header with 1009, without waiting for (or holding) its payload', async () => {
    const { peer, errors } = await serverAndPeer({ maxMessageBytes: 64 * 1024 });
    // A header announcing 2^40 bytes, and nothing after it.
    const head = Buffer.from([0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    peer.socket.write(head);
    const reply = await peer.frame();
    expect(reply.opcode).toBe(Op.Close);
    expect(reply.payload.readUInt16BE(0)).toBe(1009);
    expect((errors[0] as WebSocketError).closeCode).toBe(1009);
    await peer.closed;
  });

  it('refuses a message whose fragments add up past the limit with 1009', async () => {
    const { peer } = await serverAndPeer({ maxMessageBytes: 64 * 1024 });
    peer.socket.write(frame(Op.Binary, Buffer.alloc(40 * 1024), { fin: false }));
    peer.socket.write(frame(Op.Continuation, Buffer.alloc(40 * 1024), { fin: false }));
    const reply = await peer.frame();
    expect(reply.payload.readUInt16BE(0)).toBe(1009);
  });

  it('refuses endless fragments, even empty ones, past maxFragments with 1009', async () => {
    const { peer, errors } = await serverAndPeer({ maxFragments: 100 });
    const empty = frame(Op.Continuation, Buffer.alloc(0), { fin: false });
    peer.socket.write(frame(Op.Binary, 'a', { fin: false }));
    for (let i = 0; i < 200; i++) peer.socket.write(empty);
    const reply = await peer.frame();
    expect(reply.opcode).toBe(Op.Close);
    expect(reply.payload.readUInt16BE(0)).toBe(1009);
    expect(errors[0]?.message).toMatch(/more than 100 fragments/);
  });

  it('a message of exactly maxFragments fragments is delivered', async () => {
    const got: Buffer[] = [];
    const port = await wsServer([], (ws) => ws.on('message', (data) => got.push(data)), { maxFragments: 3 });
    const peer = await rawClient(port);
    peer.socket.write(Buffer.concat([frame(Op.Binary, 'a', { fin: false }), frame(Op.Continuation, 'b', { fin: false }), frame(Op.Continuation, 'c')]));
    await expect.poll(() => got.map(String)).toEqual(['abc']);
  });

  it('drops a peer that floods pings and never reads the pongs, holding only a bounded backlog', async () => {
    const { peer, server, errors } = await serverAndPeer();
    const serverSocket = (server as unknown as { socket: Socket }).socket;
    const peak = await floodUnread(peer.socket, serverSocket, Buffer.concat(Array.from({ length: 2048 }, () => frame(Op.Ping, 'ping payload'))), 500);
    await expect.poll(() => serverSocket.destroyed).toBe(true);
    expect(peak).toBeLessThan(160 * 1024);
    expect((errors[0] as WebSocketError).closeCode).toBe(1008);
  });

  it('closes a connection idle for idleTimeoutMs with 1001', async () => {
    const { peer } = await serverAndPeer({ idleTimeoutMs: 200 });
    const started = Date.now();
    const reply = await peer.frame();
    expect(reply.opcode).toBe(Op.Close);
    expect(reply.payload.readUInt16BE(0)).toBe(1001);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
  });
});
