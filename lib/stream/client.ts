import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import type { SpdyStream } from './spdy-stream.js';
import { SpdySession } from './spdy.js';
import { hasResizeStream, portForwardTunnel, remoteCommandSpdyVersions, remoteCommandWsVersions } from './protocols.js';
import { connectWebSocket } from './websocket-handshake.js';
import { channelOptions, webSocketDuplex, WsChannels } from './channels.js';

// The client side of the CRI streaming protocols, as kubectl and kubelet's proxy speak them:
// remotecommand (exec and attach) and port-forward, over SPDY/3.1 and over WebSocket. berth's tests use it,
// and so will `berth exec`.

/**
 * Our end of a SPDY session. A large window: berth's server keeps to it, so the default 64 KiB
 * would cap a port-forward at one window per round trip (spdystream servers ignore windows).
 * A connection that breaks (the server went away) ends the session and its streams; the caller
 * sees that as streams that end, not as an uncaught error.
 */
function clientSession(connection: Duplex): SpdySession {
  const session = new SpdySession(connection, { role: 'client', receiveWindow: 16 * 1024 * 1024 });
  session.on('error', () => undefined);
  return session;
}

/** A terminal size as the resize channel carries it: Go's JSON encoding, one per line. */
function sizeLine(size: { width: number; height: number }): string {
  return `${JSON.stringify({ Width: size.width, Height: size.height })}\n`;
}

/** Upgrade `url` to SPDY/3.1, offering `protocols`; resolves with the session and the server's choice. */
export function spdyConnect(url: string, protocols: readonly string[]): Promise<{ session: SpdySession; protocol: string; socket: Socket }> {
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(u, {
      method: 'POST',
      headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': [...protocols] },
      rejectUnauthorized: false,
    });
    req.on('upgrade', (res, socket: Socket, head: Buffer) => {
      const session = clientSession(socket);
      if (head.length) socket.unshift(head);
      resolve({ session, protocol: String(res.headers['x-stream-protocol-version'] ?? ''), socket });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => reject(new Error(`streaming upgrade refused: HTTP ${res.statusCode} ${body.trim()}`)));
    });
    req.on('error', reject);
    req.end();
  });
}

export interface RemoteCommandInput {
  stdin?: Buffer | string | Readable;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
  /** Terminal sizes to send, in order. */
  resize?: { width: number; height: number }[];
  protocols?: readonly string[];
  /** Called with each stdout chunk as it arrives (attach, long-running commands). */
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** For a terminal whose size changes: called with a function that sends a new size. */
  watchResize?: (send: (size: { width: number; height: number }) => void) => void;
  /** Resolves when the caller wants to hang up early (a client that goes away mid-stream). */
  abort?: Promise<void>;
}

export interface RemoteCommandResult {
  protocol: string;
  stdout: Buffer;
  stderr: Buffer;
  /** The error stream's content: a Status object from v4 on, else text. */
  status: string;
  /** From the Status (v4); 0 when it says Success, undefined when it says nothing about it. */
  exitCode?: number;
}

function collect(stream: SpdyStream | undefined, onChunk?: (c: Buffer) => void): Promise<Buffer> {
  if (!stream) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => {
      chunks.push(c);
      onChunk?.(c);
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('close', () => resolve(Buffer.concat(chunks)));
    stream.on('error', () => resolve(Buffer.concat(chunks)));
  });
}

/** Exit code from a v4 Status: 0 for Success, the ExitCode cause for NonZeroExitCode. */
export function exitCodeOf(status: string): number | undefined {
  try {
    const s = JSON.parse(status) as { status?: string; reason?: string; details?: { causes?: { reason?: string; message?: string }[] } };
    if (s.status === 'Success') return 0;
    const cause = s.details?.causes?.find((c) => c.reason === 'ExitCode');
    return s.reason === 'NonZeroExitCode' && cause?.message !== undefined ? Number(cause.message) : undefined;
  } catch {
    return undefined;
  }
}

/** Run an exec or attach URL to the end, the way client-go's remotecommand does. */
export async function remoteCommand(url: string, input: RemoteCommandInput): Promise<RemoteCommandResult> {
  const { session, protocol } = await spdyConnect(url, input.protocols ?? remoteCommandSpdyVersions);
  try {
    const open = (type: string): SpdyStream => session.openStream({ streamtype: type });
    const error = open('error');
    error.end();
    const stdin = input.stdin !== undefined ? open('stdin') : undefined;
    const stdout = input.stdout !== false ? open('stdout') : undefined;
    const stderr = input.stderr !== false && !input.tty ? open('stderr') : undefined;
    const resize = input.tty && hasResizeStream(protocol) ? open('resize') : undefined;
    stdout?.end();
    stderr?.end();
    for (const s of [error, stdin, stdout, stderr, resize]) s?.on('error', () => undefined);
    const outputs = Promise.all([collect(stdout, input.onStdout), collect(stderr, input.onStderr), collect(error)]);
    await Promise.all([error, stdin, stdout, stderr, resize].filter((s): s is SpdyStream => s !== undefined).map((s) => s.replied));
    for (const size of input.resize ?? []) resize?.write(sizeLine(size));
    if (resize) input.watchResize?.((size) => resize.write(sizeLine(size)));
    if (stdin) {
      if (input.stdin instanceof Readable) input.stdin.pipe(stdin);
      else stdin.end(input.stdin);
    }
    const [out, err, status] = await (input.abort ? Promise.race([outputs, input.abort.then(() => [Buffer.alloc(0), Buffer.alloc(0), Buffer.from('aborted')] as const)]) : outputs);
    const text = status.toString();
    return { protocol, stdout: out, stderr: err, status: text, exitCode: exitCodeOf(text) };
  } finally {
    session.close(true);
  }
}

/** One forwarded connection over a port-forward session: write to `data`, read its replies. */
export function forwardPort(session: SpdySession, port: number, requestId: number): { data: SpdyStream; error: SpdyStream } {
  const error = session.openStream({ streamtype: 'error', port: String(port), requestid: String(requestId) });
  error.end();
  const data = session.openStream({ streamtype: 'data', port: String(port), requestid: String(requestId) });
  return { data, error };
}

/**
 * Run an exec or attach URL to the end over WebSocket channels. stdin is closed with v5's close
 * message; before v5 there is no way to, so it stays open until the command ends.
 */
export async function wsRemoteCommand(url: string, input: RemoteCommandInput): Promise<RemoteCommandResult> {
  const ws = await connectWebSocket(url, input.protocols ?? remoteCommandWsVersions);
  const protocol = ws.protocol;
  const mux = new WsChannels(ws, channelOptions(protocol));
  const out: Record<number, Buffer[]> = { 1: [], 2: [], 3: [] };
  for (const n of [1, 2, 3]) {
    mux.readable(n).on('data', (chunk: Buffer) => {
      out[n]!.push(chunk);
      if (n === 1) input.onStdout?.(chunk);
    });
  }
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  ws.on('error', () => undefined);
  try {
    for (const size of input.resize ?? []) mux.send(4, sizeLine(size));
    if (input.stdin instanceof Readable) {
      input.stdin.on('data', (chunk: Buffer) => mux.send(0, chunk));
      input.stdin.on('end', () => mux.sendClose(0));
    } else if (input.stdin !== undefined) {
      mux.send(0, Buffer.from(input.stdin));
      mux.sendClose(0);
    }
    await (input.abort ? Promise.race([closed, input.abort]) : closed);
    const status = Buffer.concat(out[3]!).toString();
    return { protocol, stdout: Buffer.concat(out[1]!), stderr: Buffer.concat(out[2]!), status, exitCode: exitCodeOf(status) };
  } finally {
    ws.terminate();
  }
}

/**
 * One forwarded connection per port over WebSocket channels (the URL's request names the ports):
 * sends `request` on each port's data channel and collects what comes back until the server
 * closes. Each channel's first message (the port, uint16 LE) is checked and dropped.
 */
export async function wsPortForward(url: string, ports: readonly number[], request: Buffer | string, protocol = 'v4.channel.k8s.io'): Promise<{ data: Buffer[]; errors: string[] }> {
  const ws = await connectWebSocket(url, [protocol]);
  const mux = new WsChannels(ws, channelOptions(ws.protocol));
  const data: Buffer[][] = ports.map(() => []);
  const errors: string[] = ports.map(() => '');
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  ws.on('error', () => undefined);
  ports.forEach((port, i) => {
    for (const [n, sink] of [
      [2 * i, (c: Buffer) => data[i]!.push(c)],
      [2 * i + 1, (c: Buffer) => (errors[i] += c.toString())],
    ] as const) {
      let first = true;
      mux.readable(n).on('data', (chunk: Buffer) => {
        if (first) {
          first = false;
          if (chunk.length < 2 || chunk.readUInt16LE(0) !== port) {
            errors[i] += `channel ${n} opened with ${chunk.toString('hex')}, not port ${port}; `;
            return;
          }
          chunk = chunk.subarray(2);
          if (!chunk.length) return;
        }
        sink(chunk);
      });
    }
    mux.send(2 * i, Buffer.from(request));
  });
  await closed;
  return { data: data.map((d) => Buffer.concat(d)), errors };
}

/** Port-forward's SPDY session tunnelled through a WebSocket (SPDY/3.1+portforward.k8s.io). */
export async function spdyOverWebSocket(url: string): Promise<SpdySession> {
  return clientSession(webSocketDuplex(await connectWebSocket(url, [portForwardTunnel])));
}
