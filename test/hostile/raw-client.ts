import { connect, type Socket } from 'node:net';

// What the hostile SPDY and WebSocket clients share on their raw TCP sockets: the HTTP/1.1
// upgrade of a streaming URL (the request head as the test writes it, the server's 101
// awaited), and a flood written by a client that never reads.

/**
 * Send `head` (the request line and headers for `url`'s path; the blank line is added) and wait
 * for 101. Resolves with the paused socket and the bytes the server sent past its answer.
 */
export async function rawUpgrade(url: string, head: (path: string, host: string) => string): Promise<{ socket: Socket; rest: Buffer }> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(`${head(u.pathname, u.host)}\r\n`);
  let got: Buffer = Buffer.alloc(0);
  const rest = await new Promise<Buffer>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const answer = got.subarray(0, end).toString('latin1');
      if (!answer.startsWith('HTTP/1.1 101')) reject(new Error(`upgrade refused: ${answer}`));
      else resolve(got.subarray(end + 4));
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
  return { socket, rest };
}

/** Write `batch` again and again without reading, until the server cuts the connection or `maxBytes` went out; the bytes sent. */
export async function floodUnread(wire: { socket: Socket; closed: Promise<void>; ended?: unknown }, batch: Buffer, maxBytes: number): Promise<number> {
  wire.socket.pause();
  let sent = 0;
  while (!wire.ended && sent < maxBytes) {
    const ok = wire.socket.write(batch);
    sent += batch.length;
    if (!ok) await Promise.race([new Promise((r) => wire.socket.once('drain', r)), wire.closed, new Promise((r) => setTimeout(r, 2000))]);
  }
  return sent;
}

/** A raw client connection: how it ended (with the socket's error, if any), and its bytes handed to `receive`. */
export abstract class RawWire {
  /** Set when the connection closed, with the socket error if there was one. */
  ended?: { error?: string };
  readonly closed: Promise<void>;

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => this.receive(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (this.ended = { error: err.code ?? err.message }));
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended ??= {};
        resolve();
      }),
    );
  }

  abstract receive(chunk: Buffer): void;
}

/** Upgrade with `head` (see rawUpgrade) and hand the socket, and what came past the 101, to the wire `make` builds. */
export async function upgradeTo<W extends RawWire>(url: string, head: (path: string, host: string) => string, make: (socket: Socket) => W): Promise<W> {
  const { socket, rest } = await rawUpgrade(url, head);
  const wire = make(socket);
  if (rest.length) wire.receive(rest);
  socket.resume();
  return wire;
}
