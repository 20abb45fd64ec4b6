import type { OnReadOpts, Socket } from 'node:net';
import type { Logger } from 'pino';
import { errorMessage } from '../../lib/errors.js';
import { connectInNetns } from '../../lib/netns.js';
import type { SpdyStream } from '../../lib/stream/spdy-stream.js';
import type { SpdySession } from '../../lib/stream/spdy.js';
import type { WebSocket } from '../../lib/stream/websocket.js';
import { channelOptions, WsChannels } from '../../lib/stream/channels.js';

// Port forwarding over SPDY (portforward.k8s.io): for each forwarded connection the client
// opens a pair of streams carrying the same `requestID` and `port` headers, an error stream and
// a data stream. Once both are there, berth connects to localhost:port inside the pod's network
// namespace (or the host's, for a host-network pod) and copies bytes both ways; a failure is
// written to the error stream. Many pairs share one connection. Over WebSocket, see below.

export interface PortForwardTarget {
  /** The pod's network namespace; undefined for a host-network pod. */
  netnsPath?: string;
  podId: string;
}

/** What a connection's error stream or channel says when it fails, as kubelet words it. */
function forwardError(target: PortForwardTarget, port: number, message: string): string {
  return `error forwarding port ${port} to pod ${target.podId}: ${message}`;
}

export function servePortForward(session: SpdySession, target: PortForwardTarget, log: Logger): void {
  const pending = new Map<string, { error?: SpdyStream; data?: SpdyStream; timer: NodeJS.Timeout }>();
  const open = new Set<Socket>();
  session.on('stream', (stream: SpdyStream) => {
    const type = (stream.headers.streamtype ?? '').toLowerCase();
    const requestId = stream.headers.requestid ?? '';
    const port = Number(stream.headers.port);
    if ((type !== 'error' && type !== 'data') || !Number.isInteger(port) || port < 1 || port > 65535) {
      stream.reset();
      return;
    }
    stream.reply({});
    stream.on('error', () => undefined);
    const key = `${requestId}/${port}`;
    let pair = pending.get(key);
    if (!pair) {
      // A pair whose partner never comes is given up after the time kubelet allows.
      const timer = setTimeout(() => {
        const p = pending.get(key);
        pending.delete(key);
        p?.error?.reset();
        p?.data?.reset();
      }, 30_000);
      pair = { timer };
      pending.set(key, pair);
    }
    pair[type] = stream;
    if (!pair.error || !pair.data) return;
    clearTimeout(pair.timer);
    pending.delete(key);
    const { error, data } = pair;
    let socket: Socket;
    const reader = reuseReads(data, session, () => socket);
    try {
      socket = connectInNetns(target.netnsPath, port, '127.0.0.1', 2000, reader);
    } catch (err) {
      log.debug({ pod: target.podId, port, err: errorMessage(err) }, 'port-forward connect failed');
      error.end(forwardError(target, port, errorMessage(err)));
      data.end();
      return;
    }
    open.add(socket);
    socket.on('error', (err) => {
      if (!error.writableEnded) error.end(forwardError(target, port, err.message));
    });
    socket.on('close', () => {
      open.delete(socket);
      if (!error.writableEnded) error.end();
      if (!data.writableEnded) data.end();
    });
    data.pipe(socket);
    socket.on('end', () => data.end());
    data.on('close', () => socket.destroy());
  });
  session.on('close', () => {
    for (const p of pending.values()) clearTimeout(p.timer);
    pending.clear();
    for (const s of open) s.destroy();
  });
}

/**
 * The pod's bytes go out through one read buffer used again and again, instead of a fresh
 * 64 KiB buffer per read for the garbage collector (a bulk transfer's largest cost here). A
 * read is framed and written straight away; only when that write could not complete at once
 * (the data still sits in a queue, referencing the buffer) is the next read given a new one.
 */
function reuseReads(sink: SpdyStream, session: SpdySession, socket: () => Socket): OnReadOpts {
  let buffer = Buffer.allocUnsafe(readSize);
  return {
    buffer: () => buffer,
    callback: (n, buf) => {
      const more = sink.write(buf.subarray(0, n));
      if (sink.writableLength > 0 || session.socket.writableLength > 0) buffer = Buffer.allocUnsafe(readSize);
      if (more) return true;
      sink.once('drain', () => socket().resume());
      return false;
    },
  };
}

const readSize = 64 * 1024;

/**
 * Port forwarding over WebSocket channels, as kubelet serves it: one connection per port in
 * `ports`, data on channel 2i and errors on 2i+1, each channel opened by a message holding the
 * port (uint16, little endian). The WebSocket closes when every connection has ended.
 */
export function serveWsPortForward(ws: WebSocket, protocol: string, ports: readonly number[], target: PortForwardTarget, log: Logger): void {
  const mux = new WsChannels(ws, channelOptions(protocol));
  const sockets = new Set<Socket>();
  let remaining = ports.length;
  const done = (): void => {
    remaining -= 1;
    if (remaining === 0) ws.close();
  };
  ws.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  ports.forEach((port, i) => {
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port);
    mux.send(2 * i, portBytes);
    mux.send(2 * i + 1, portBytes);
    const fail = (message: string): void => {
      log.debug({ pod: target.podId, port, err: message }, 'port-forward (websocket) failed');
      mux.send(2 * i + 1, forwardError(target, port, message));
    };
    let socket: Socket;
    try {
      socket = connectInNetns(target.netnsPath, port);
    } catch (err) {
      fail(errorMessage(err));
      done();
      return;
    }
    sockets.add(socket);
    const out = mux.writable(2 * i);
    // Done once everything the pod sent has gone out (finish), or the connection failed.
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      sockets.delete(socket);
      done();
    };
    out.on('finish', end);
    out.on('error', end);
    socket.on('error', (err) => {
      fail(err.message);
      end();
    });
    mux.readable(2 * i).pipe(socket);
    socket.pipe(out);
  });
}
