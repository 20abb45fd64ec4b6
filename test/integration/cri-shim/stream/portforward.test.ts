import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { servePortForward } from '../../../../cri-shim/stream/portforward.js';
import { forwardPort } from '../../../../lib/stream/client.js';
import { SpdySession } from '../../../../lib/stream/spdy.js';

// servePortForward over a real SPDY session, forwarding into the host's namespace (a
// host-network pod) to a server of the test's own: one session holds at most maxStreams
// connections, open or opening, and the one past that gets an error naming the setting.

const log = pino({ level: 'silent' });
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  return (server.address() as AddressInfo).port;
}

/** A client SPDY session against servePortForward with these limits. */
async function portForwardSession(maxStreams: number): Promise<SpdySession> {
  const server = createServer((socket) => {
    const session = new SpdySession(socket, { role: 'server' });
    session.on('error', () => undefined);
    servePortForward(session, { podId: 'pod1' }, { connectTimeoutMs: 2000, maxPorts: 4, maxStreams }, log);
  });
  const port = await listen(server);
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const session = new SpdySession(socket, { role: 'client' });
  session.on('error', () => undefined);
  closers.push(() => session.close(true));
  return session;
}

/** Opens a forwarded connection; resolves with what its error stream said once the data stream answered or ended. */
async function open(session: SpdySession, port: number, id: number): Promise<{ error: () => string; data: ReturnType<typeof forwardPort>['data'] }> {
  const { data, error } = forwardPort(session, port, id);
  let errText = '';
  error.on('data', (d: Buffer) => (errText += d.toString()));
  await data.replied;
  return { error: () => errText, data };
}

describe('port-forward over SPDY, per session', () => {
  it('holds at most maxPortForwardStreams connections at once, and takes new ones once some end', async () => {
    // The pod's server: echoes, and keeps every connection open until the client ends it.
    const held = new Set<Socket>();
    const pod = createServer((s) => {
      held.add(s);
      s.on('close', () => held.delete(s));
      s.pipe(s);
    });
    const podPort = await listen(pod);
    closers.push(() => held.forEach((s) => s.destroy()));
    const session = await portForwardSession(2);

    const echo = async (c: Awaited<ReturnType<typeof open>>, text: string): Promise<string> => {
      c.data.write(text);
      return new Promise((resolve) => c.data.once('data', (d: Buffer) => resolve(d.toString())));
    };
    const first = await open(session, podPort, 1);
    const second = await open(session, podPort, 2);
    expect(await echo(first, 'one')).toBe('one');
    expect(await echo(second, 'two')).toBe('two');

    const third = await open(session, podPort, 3);
    await new Promise((resolve) => third.data.on('end', resolve).resume());
    expect(third.error()).toBe('error forwarding port ' + podPort + ' to pod pod1: too many connections at once on this session (maxPortForwardStreams 2)');
    expect(held.size).toBe(2);

    first.data.end();
    await new Promise((resolve) => first.data.on('end', resolve).resume());
    for (let i = 0; i < 50 && held.size > 1; i++) await new Promise((r) => setTimeout(r, 20));
    const fourth = await open(session, podPort, 4);
    expect(await echo(fourth, 'four')).toBe('four');
    expect(fourth.error()).toBe('');
  });

  it('a refused port ends with its error on the error stream', async () => {
    const closed = createServer();
    const port = await listen(closed);
    closed.close();
    const session = await portForwardSession(4);
    const c = await open(session, port, 1);
    await new Promise((resolve) => c.data.on('end', resolve).resume());
    expect(c.error()).toMatch(new RegExp(`^error forwarding port ${port} to pod pod1: connect 127.0.0.1:${port}: .*refused`, 'i'));
  });
});
