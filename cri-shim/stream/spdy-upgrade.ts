import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { SpdyStream } from '../../lib/stream/spdy-stream.js';
import { SpdySession, type SpdySessionOptions } from '../../lib/stream/spdy.js';
import { refuseUpgrade } from './server.js';

// The HTTP side of a SPDY stream request (what k8s.io/apimachinery's httpstream/spdy does):
// the client offers its protocol versions in X-Stream-Protocol-Version headers, the server picks
// the first of the client's it also speaks, answers 101 Switching Protocols, and both sides
// speak SPDY/3.1 on the connection from then on.

export function isSpdyUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === 'spdy/3.1';
}

/** Protocol versions the client offered, in its order (several headers or comma lists). */
export function offeredProtocols(req: IncomingMessage): string[] {
  const out: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() !== 'x-stream-protocol-version') continue;
    for (const p of req.rawHeaders[i + 1]!.split(',')) if (p.trim()) out.push(p.trim());
  }
  return out;
}

/**
 * Answer the upgrade and start a server session, or refuse with 403 naming what we speak.
 * Returns the session and the chosen protocol ('' when the client offered none: the oldest).
 */
export function acceptSpdy(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  supported: readonly string[],
  options: Omit<SpdySessionOptions, 'role'> = {},
): { session: SpdySession; protocol: string } | undefined {
  const offered = offeredProtocols(req);
  const protocol = offered.length === 0 ? '' : offered.find((p) => supported.includes(p));
  if (protocol === undefined) {
    refuseUpgrade(socket, '403 Forbidden', `none of the offered stream protocols (${offered.join(', ')}) is supported; supported: ${supported.join(', ')}`);
    return undefined;
  }
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' + (protocol ? `X-Stream-Protocol-Version: ${protocol}\r\n` : '') + '\r\n',
  );
  const session = new SpdySession(socket, { ...options, role: 'server' });
  if (head.length) socket.unshift(head);
  return { session, protocol };
}

/**
 * Streams the client opens, by their `streamtype` header, answered with SYN_REPLY as they come.
 * Resolves once every wanted type arrived; rejects after `timeoutMs` or when the connection ends.
 */
export function collectStreams(session: SpdySession, wanted: readonly string[], timeoutMs = 30_000): Promise<Map<string, SpdyStream>> {
  return new Promise((resolve, reject) => {
    const got = new Map<string, SpdyStream>();
    const timer = setTimeout(() => done(new Error(`timed out waiting for the client's ${wanted.filter((w) => !got.has(w)).join(', ')} stream(s)`)), timeoutMs);
    const onStream = (stream: SpdyStream): void => {
      const type = (stream.headers.streamtype ?? '').toLowerCase();
      if (!wanted.includes(type) || got.has(type)) {
        stream.reset();
        return;
      }
      stream.reply({});
      got.set(type, stream);
      if (wanted.every((w) => got.has(w))) done();
    };
    const onClose = (): void => done(new Error('the client closed the connection before opening its streams'));
    const done = (err?: Error): void => {
      clearTimeout(timer);
      session.off('stream', onStream);
      session.off('close', onClose);
      if (err) reject(err);
      else resolve(got);
    };
    session.on('stream', onStream);
    session.on('close', onClose);
  });
}
