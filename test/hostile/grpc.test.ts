import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { CriWorld } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { underAttack } from '../../world/hostile.js';
import { isRoot } from '../../world/netns.js';

// Hostile HTTP/2 clients on berth-cri's own gRPC socket (the one kubelet uses), written byte by
// byte here: every connection passes through the :authority rewriter before nghttp2 sees it.

let world: CriWorld;

const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** Write as fast as the socket takes it until the server closes it or `limit` bytes went out. */
async function flood(socket: Socket, next: () => Buffer, limit: number): Promise<{ sent: number; closedByServer: boolean }> {
  let sent = 0;
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.on('error', () => (closed = true));
  while (!closed && sent < limit) {
    const chunk = next();
    sent += chunk.length;
    if (!socket.write(chunk)) await new Promise((r) => { socket.once('drain', r); socket.once('close', r); });
  }
  return { sent, closedByServer: closed };
}

async function open(path: string): Promise<Socket> {
  const socket = connect(path);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

describe.skipIf(!isRoot)('berth-cri gRPC socket under hostile HTTP/2 clients', () => {
  useCriWorld([], (w) => (world = w));

  const probe = () => world.runtime.version({ version: '' });

  it('drops a CONTINUATION flood (a header block that never ends) after 64 KiB, and keeps serving', async () => {
    const report = await underAttack({ pid: world.cri.child.pid!, probe }, async () => {
      const clients = await Promise.all(Array.from({ length: 8 }, () => open(world.cri.socket)));
      const results = await Promise.all(clients.map(async (socket) => {
        socket.write(Buffer.concat([preface, frame(0x4, 0, 0, Buffer.alloc(0)), frame(0x1, 0, 1, Buffer.from([0x82]))]));
        const piece = frame(0x9, 0, 1, Buffer.alloc(4096, 0x41));
        return flood(socket, () => piece, 256 * 1024 * 1024);
      }));
      for (const r of results) {
        expect(r.closedByServer).toBe(true);
        // Dropped long before the 256 MiB the client was ready to send (the socket buffers hold
        // some more than the 64 KiB the rewriter keeps).
        expect(r.sent).toBeLessThan(16 * 1024 * 1024);
      }
    });
    expect(report).toMatchObject({ alive: true, failedProbes: 0 });
    expect(report.rssGrowthMiB).toBeLessThan(64);
    expect(report.slowestProbeMs).toBeLessThan(500);
  });

  it('drops a client announcing a 16 MiB frame instead of buffering it, and keeps serving', async () => {
    const report = await underAttack({ pid: world.cri.child.pid!, probe }, async () => {
      const sockets = await Promise.all(Array.from({ length: 16 }, () => open(world.cri.socket)));
      const results = await Promise.all(sockets.map(async (socket) => {
        const head = Buffer.alloc(9);
        head.writeUIntBE(0xffffff, 0, 3);
        head[3] = 0x0; // DATA
        head.writeUInt32BE(1, 5);
        socket.write(Buffer.concat([preface, head]));
        const body = Buffer.alloc(64 * 1024, 0x42);
        return flood(socket, () => body, 15 * 1024 * 1024);
      }));
      for (const r of results) expect(r.closedByServer).toBe(true);
    });
    expect(report).toMatchObject({ alive: true, failedProbes: 0 });
    expect(report.rssGrowthMiB).toBeLessThan(64);
    expect(report.slowestProbeMs).toBeLessThan(500);
  });
});
