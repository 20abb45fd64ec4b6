import type { OnReadOpts, Socket } from 'node:net';
import type { Logger } from 'pino';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { connectInNetns } from '../../lib/netns.js';
import type { SpdyStream } from '../../lib/stream/spdy-stream.js';
import type { SpdySession } from '../../lib/stream/spdy.js';
import type { WebSocket } from '../../lib/stream/websocket.js';
import { channelOptions, WsChannels } from '../../lib/stream/channels.js';
import type { CriConfig } from '../config.js';

// Port forwarding over SPDY (portforward.k8s.io): for each forwarded connection the client
// opens a pair of streams carrying the same `requestID` and `port` headers, an error stream and
// a data stream. Once both are there, berth connects to localhost:port inside the pod's network
// namespace (or the host's, for a host-network pod) and copies bytes both ways; a failure is
// written to the error stream. Many pairs share one connection. Over WebSocket, see below.
// The connect runs on the event loop with a deadline (a pod's port may drop SYNs), and the
// ports per request and connections per session are capped (portForwardLimits).

export interface PortForwardTarget {
  /** The pod's network namespace; undefined for a host-network pod. */
  netnsPath?: string;
  podId: string;
}

/** The bounds of port-forwarding, from berth-cri's settings (named in the errors they cause). */
export interface PortForwardLimits {
  /** portForwardConnectTimeoutMs */
  connectTimeoutMs: number;
  /** maxPortForwardPorts */
  maxPorts: number;
  /** maxPortForwardStreams */
  maxStreams: number;
}

export function portForwardLimits(config: Pick<CriConfig, 'portForwardConnectTimeoutMs' | 'maxPortForwardPorts' | 'maxPortForwardStreams'>): PortForwardLimits {
  return { connectTimeoutMs: config.portForwardConnectTimeoutMs, maxPorts: config.maxPortForwardPorts, maxStreams: config.maxPortForwardStreams };
}

/** The PortForward request's `port` list, checked: TCP ports, at most maxPortForwardPorts of them. */
export function checkPorts(ports: readonly number[], limits: PortForwardLimits): void {
  if (ports.length > limits.maxPorts) throw new BerthError('invalid-argument', `port: ${ports.length} ports, at most ${limits.maxPorts} per request (maxPortForwardPorts)`);
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new BerthError('invalid-argument', `port: ${p} is not a TCP port`);
}

/**
 * The ports of a WebSocket port-forward: the PortForward request's, else those kubelet's own
 * clients name in the URL (`?port=80&port=81` or `?port=80,81`). Checked as checkPorts does.
 */
export function webSocketPorts(requestPorts: readonly number[], url: string, limits: PortForwardLimits): number[] {
  if (requestPorts.length > 0) {
    checkPorts(requestPorts, limits);
    return [...requestPorts];
  }
  const words = new URL(url, 'http://x').searchParams.getAll('port').flatMap((p) => p.split(','));
  if (words.length === 0) throw new BerthError('invalid-argument', 'port: port-forward over WebSocket channels needs ports in the request or as ?port=');
  if (words.length > limits.maxPorts) throw new BerthError('invalid-argument', `port: ${words.length} ports, at most ${limits.maxPorts} per request (maxPortForwardPorts)`);
  const ports = words.map((w) => (/^\d{1,5}$/.test(w) ? Number(w) : Number.NaN));
  const bad = words.find((_, i) => !(ports[i]! >= 1 && ports[i]! <= 65535));
  if (bad !== undefined) throw new BerthError('invalid-argument', `port: "${bad.slice(0, 16)}" is not a TCP port`);
  return ports;
}

/** What a connection's error stream or channel says when it fails, as kubelet words it. */
function forwardError(target: PortForwardTarget, port: number, message: string): string {
  return `error forwarding port ${port} to pod ${target.podId}: ${message}`;
}

export function servePortForward(session: SpdySession, target: PortForwardTarget, limits: PortForwardLimits, log: Logger): void {
  const pending = new Map<string, { error?: SpdyStream; data?: SpdyStream; timer: NodeJS.Timeout }>();
  const open = new Set<Socket>();
  let connecting = 0;
  let closed = false;
  session.on('stream', (stream: SpdyStream) => {
    const type = (stream.headers.streamtype ?? '').toLowerCase();
    const requestId = stream.headers.requestid ?? '';
    const port = Number(stream.headers.port);
    if ((type !== 'error' && type !== 'data') || !Number.isInteger(port) || port < 1 || port > 65535) {
      stream.reset();
      return;
    }
    const key = `${requestId}/${port}`;
    let pair = pending.get(key);
    if (pair?.[type]) {
      // A second stream of the same kind for one connection: nothing would ever read it.
      stream.reset();
      return;
    }
    stream.reply({});
    stream.on('error', () => undefined);
    if (!pair) {
      // Every connection holds a socket, or a pending connect, or a stream waiting for its
      // partner: one session gets only so many at once.
      if (pending.size + connecting + open.size >= limits.maxStreams) {
        log.debug({ pod: target.podId, port, max: limits.maxStreams }, 'port-forward connection refused: too many on this session');
        if (type === 'error') stream.end(forwardError(target, port, `too many connections at once on this session (maxPortForwardStreams ${limits.maxStreams})`));
        else stream.end();
        return;
      }
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
    void forward(pair.error, pair.data, port);
  });

  const forward = async (error: SpdyStream, data: SpdyStream, port: number): Promise<void> => {
    let socket: Socket | undefined;
    connecting += 1;
    try {
      socket = await connectInNetns(target.netnsPath, port, { timeoutMs: limits.connectTimeoutMs, onread: reuseReads(data, session, () => socket!) });
    } catch (err) {
      log.debug({ pod: target.podId, port, err: errorMessage(err) }, 'port-forward connect failed');
      error.end(forwardError(target, port, errorMessage(err)));
      data.end();
      return;
    } finally {
      connecting -= 1;
    }
    // The client may have given up while the connect was under way.
    if (closed || data.destroyed) {
      socket.destroy();
      return;
    }
    const connected = socket;
    open.add(connected);
    connected.on('error', (err) => {
      if (!error.writableEnded) error.end(forwardError(target, port, err.message));
    });
    connected.on('close', () => {
      open.delete(connected);
      if (!error.writableEnded) error.end();
      if (!data.writableEnded) data.end();
    });
    data.pipe(connected);
    connected.on('end', () => data.end());
    data.on('close', () => connected.destroy());
  };

  session.on('close', () => {
    closed = true;
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
 * `ports` (checked by webSocketPorts), data on channel 2i and errors on 2i+1, each channel
 * opened by a message holding the port (uint16, little endian). The WebSocket closes when every
 * connection has ended.
 */
export function serveWsPortForward(ws: WebSocket, protocol: string, ports: readonly number[], target: PortForwardTarget, limits: PortForwardLimits, log: Logger): void {
  const mux = new WsChannels(ws, channelOptions(protocol));
  const sockets = new Set<Socket>();
  let closed = false;
  let remaining = ports.length;
  const done = (): void => {
    remaining -= 1;
    if (remaining === 0) ws.close();
  };
  ws.on('close', () => {
    closed = true;
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
    // Read from the start: what the client sends while the connect is under way waits here
    // (pausing the WebSocket when too much does), instead of being dropped as unread.
    const fromClient = mux.readable(2 * i);
    connectInNetns(target.netnsPath, port, { timeoutMs: limits.connectTimeoutMs }).then(
      (socket) => {
        if (closed) return void socket.destroy();
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
        fromClient.pipe(socket);
        socket.pipe(out);
      },
      (err: unknown) => {
        fromClient.resume();
        fail(errorMessage(err));
        done();
      },
    );
  });
}
