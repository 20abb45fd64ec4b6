import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { CriWorld } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';
import { GoAway, SpdyWire, Type } from './spdy-wire.js';
import { attackCri, busybox, execUrl, expectSurvived } from './stream-attack.js';
import { WsWire } from './websocket-wire.js';

// Hostile clients around the HTTP upgrade of berth-cri's streaming URLs: slow or silent request
// heads, huge ones, resets in the middle, garbage once upgraded, and sessions left idle (the
// idle timeout is 2 s here instead of 4 h).

/** A raw TCP connection to the streaming server of `url`, with everything it receives. */
async function rawConnect(url: string): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return { socket, received: () => text, closed };
}

describe.skipIf(!isRoot)('hostile clients of the streaming upgrade', () => {
  let world!: CriWorld;
  useCriWorld(['busybox'], (w) => (world = w), { flags: ['--stream-idle-timeout', '2s'] });

  it('request heads sent byte by byte, or not at all, get 408 within seconds', async () => {
    const c = await busybox(world);
    const url = await execUrl(world, c.id, ['true']);
    const clients: Awaited<ReturnType<typeof rawConnect>>[] = [];
    const started = Date.now();
    const report = await attackCri(world, async () => {
      for (let i = 0; i < 20; i++) clients.push(await rawConnect(url));
      // Half trickle a header line a byte at a time; half send nothing.
      const trickle = clients.slice(0, 10);
      const line = `POST ${new URL(url).pathname} HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(100)}`;
      for (let at = 0; at < line.length && trickle.some((t) => !t.socket.destroyed); at++) {
        for (const t of trickle) if (!t.socket.destroyed) t.socket.write(line[at]!);
        await sleep(150);
      }
      await Promise.all(clients.map((cl) => Promise.race([cl.closed, sleep(15_000)])));
    });
    expectSurvived(report);
    for (const cl of clients) expect(cl.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(14_000);
    // The URL was never used: it still works.
    const wire = await SpdyWire.upgrade(url);
    wire.socket.destroy();
  });

  it('a request head over 16 KiB gets 431', async () => {
    const c = await busybox(world);
    const url = await execUrl(world, c.id, ['true']);
    const cl = await rawConnect(url);
    cl.socket.write(`POST ${new URL(url).pathname} HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`);
    await Promise.race([cl.closed, sleep(5000)]);
    expect(cl.received()).toMatch(/^HTTP\/1\.1 431 /);
  });

  it('clients that reset the connection in the middle of the upgrade do not crash berth-cri', async () => {
    const c = await busybox(world);
    const report = await attackCri(world, async () => {
      for (let i = 0; i < 100; i++) {
        // A fresh token (101 answer) or an unknown one (404 answer), reset as the answer comes.
        const url = i % 4 === 0 ? await execUrl(world, c.id, ['true']) : `${new URL(await execUrl(world, c.id, ['true'])).origin}/exec/nosuchtoken`;
        const cl = await rawConnect(url);
        cl.socket.write(`POST ${new URL(url).pathname} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
        if (i % 2 === 0) await sleep(1);
        cl.socket.resetAndDestroy();
      }
    });
    expectSurvived(report);
  });

  it('garbage after the upgrade ends the session: GOAWAY PROTOCOL_ERROR over SPDY, 1002 over WebSocket', async () => {
    const c = await busybox(world);
    let spdy!: SpdyWire;
    let ws!: WsWire;
    const report = await attackCri(world, async () => {
      spdy = await SpdyWire.upgrade(await execUrl(world, c.id, ['sleep', '30']));
      // A control frame of SPDY version 7, then noise.
      spdy.socket.write(Buffer.concat([Buffer.from([0x80, 0x07, 0x00, 0x01, 0, 0, 0, 4, 1, 2, 3, 4]), randomBytes(1 << 20)]));
      await spdy.waitFor(Type.GoAway);
      ws = await WsWire.upgrade(await execUrl(world, c.id, ['sleep', '30']));
      ws.socket.write(randomBytes(1 << 20).fill(0xff, 0, 2));
      await ws.closeOrEnd();
    });
    expectSurvived(report);
    expect(spdy.control(Type.GoAway)[0]![1]).toBe(GoAway.ProtocolError);
    expect(ws.close?.code).toBe(1002);
  });

  it('an upgraded session left idle is closed after streamIdleTimeout: GOAWAY over SPDY, 1001 over WebSocket', async () => {
    const c = await busybox(world);
    const spdy = await SpdyWire.upgrade(await execUrl(world, c.id, ['sleep', '30']));
    await spdy.openStreams(['error', 'stdout', 'stderr'], { flowControl: false });
    const ws = await WsWire.upgrade(await execUrl(world, c.id, ['sleep', '30']));
    const started = Date.now();
    expect((await spdy.waitFor(Type.GoAway))[1]).toBe(GoAway.Ok);
    await ws.closeOrEnd();
    expect(ws.close?.code).toBe(1001);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    expect(Date.now() - started).toBeLessThan(8000);
    await Promise.race([spdy.closed, sleep(10_000)]);
    expect(spdy.ended).toBeDefined();
    // The exec's process went with its client.
    for (let i = 0; i < 50; i++) {
      const left = (await world.runtime.execSync({ containerId: c.id, cmd: ['sh', '-c', 'pgrep -f "^slee[p] 30$" || true'], timeout: 5n })).stdout.toString().trim();
      if (!left) return;
      await sleep(100);
    }
    throw new Error('the idle exec was not killed');
  });
});
