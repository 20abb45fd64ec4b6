import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, type WebSocketOptions } from './websocket.js';

// The WebSocket opening handshake (RFC 6455 section 4): the HTTP/1.1 Upgrade request and its 101
// answer, Sec-WebSocket-Key/Accept, and the choice of subprotocol. acceptWebSocket is the server
// side, connectWebSocket the client; either hands the upgraded socket to a WebSocket (websocket.ts).

/** The GUID every Sec-WebSocket-Accept is derived with (section 1.3). */
const handshakeGuid = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export interface AcceptOptions extends WebSocketOptions {
  /** Extra headers of the 101 response. */
  extraHeaders?: Record<string, string>;
}

export interface ConnectOptions extends WebSocketOptions {
  /** wss:// only: verify the server's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** wss:// only: CA certificates to trust instead of the system's. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Extra request headers (Authorization, ...). */
  headers?: Record<string, string>;
  /** How long the opening handshake may take. Default 30 s. */
  handshakeTimeoutMs?: number;
}

/** The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (section 4.2.2). */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + handshakeGuid).digest('base64');
}

/** Every value of a request header, repeated headers included (req.headers may drop or join them). */
function headerValues(req: IncomingMessage, name: string): string[] {
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

/** The comma-separated tokens of every value of a header, trimmed. */
function headerTokens(req: IncomingMessage, name: string): string[] {
  return headerValues(req, name).flatMap((v) => v.split(',')).map((t) => t.trim()).filter((t) => t !== '');
}

/** True when the request asks for a WebSocket upgrade (GET, Connection: upgrade, Upgrade: websocket). */
export function isWebSocketRequest(req: IncomingMessage): boolean {
  return (
    req.method === 'GET' &&
    headerTokens(req, 'connection').some((t) => t.toLowerCase() === 'upgrade') &&
    headerTokens(req, 'upgrade').some((t) => t.toLowerCase() === 'websocket')
  );
}

/** A header block line by line; values that could split the response are refused. */
function headerLines(headers: Record<string, string>): string {
  let out = '';
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n]/.test(value)) throw new TypeError(`invalid response header ${JSON.stringify(name)}`);
    out += `${name}: ${value}\r\n`;
  }
  return out;
}

function refuseHandshake(socket: Duplex, reason: string): undefined {
  const body = Buffer.from(`${reason}\n`, 'utf8');
  socket.on('error', () => undefined);
  // end() rather than destroy() alone, so the response reaches the client before the FIN.
  socket.end(
    'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n' +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n\r\n${body.toString('utf8')}`,
    () => socket.destroy(),
  );
  return undefined;
}

/**
 * Complete the server handshake on a socket from http.Server's 'upgrade' event (`head` is the
 * bytes read past the request). The subprotocol is the first of the client's offers that
 * `protocols` contains; a client that offered none gets protocol ''. A bad handshake, or offers
 * of which none is supported, is answered with 400 and a plain-text reason, and gives undefined.
 */
export function acceptWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, protocols: readonly string[], options: AcceptOptions = {}): WebSocket | undefined {
  if (!isWebSocketRequest(req)) return refuseHandshake(socket, 'not a WebSocket upgrade request (need GET with Connection: Upgrade and Upgrade: websocket)');
  const version = headerValues(req, 'sec-websocket-version').join(',').trim();
  if (version !== '13') return refuseHandshake(socket, `unsupported Sec-WebSocket-Version ${JSON.stringify(version)} (only 13 is supported)`);
  const keys = headerValues(req, 'sec-websocket-key');
  const key = keys[0]?.trim() ?? '';
  // A valid key is 16 random bytes in base64: 22 characters and '=='.
  if (keys.length !== 1 || !/^[A-Za-z0-9+/]{22}==$/.test(key)) return refuseHandshake(socket, `invalid Sec-WebSocket-Key ${JSON.stringify(keys.join(', '))}`);
  const offered = headerTokens(req, 'sec-websocket-protocol');
  const protocol = offered.find((p) => protocols.includes(p)) ?? '';
  if (offered.length > 0 && protocol === '') {
    return refuseHandshake(socket, `none of the offered subprotocols (${offered.join(', ')}) is supported; supported: ${protocols.join(', ') || 'none'}`);
  }
  let extra: string;
  try {
    extra = headerLines(options.extraHeaders ?? {});
  } catch (err) {
    socket.destroy();
    throw err;
  }
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
      (protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : '') +
      extra +
      '\r\n',
  );
  tuneSocket(socket);
  return new WebSocket(socket, 'server', { ...options, protocol, head });
}

/** Interactive streams want each frame sent at once, and an idle connection is not an error. */
function tuneSocket(socket: Duplex): void {
  const s = socket as Partial<Socket>;
  s.setNoDelay?.(true);
  s.setTimeout?.(0);
}

/**
 * Client: open a WebSocket to a ws://, wss://, http:// or https:// URL, offering `protocols`.
 * Rejects naming the HTTP status and body when the server answers without upgrading, and when
 * the server's Sec-WebSocket-Accept or subprotocol is not what this handshake allows.
 */
export function connectWebSocket(url: string, protocols: readonly string[], options: ConnectOptions = {}): Promise<WebSocket> {
  return new Promise<WebSocket>((resolve, reject) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      reject(new TypeError(`invalid WebSocket URL ${JSON.stringify(url)}`));
      return;
    }
    const secure = target.protocol === 'wss:' || target.protocol === 'https:';
    if (!secure && target.protocol !== 'ws:' && target.protocol !== 'http:') {
      reject(new TypeError(`unsupported WebSocket URL scheme ${JSON.stringify(target.protocol)} in ${url}`));
      return;
    }
    const key = randomBytes(16).toString('base64');
    const headers: Record<string, string> = {
      ...options.headers,
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
    };
    if (protocols.length > 0) headers['Sec-WebSocket-Protocol'] = protocols.join(', ');
    const common = {
      method: 'GET',
      hostname: target.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: target.port || (secure ? 443 : 80),
      path: `${target.pathname}${target.search}`,
      headers,
      agent: false as const,
    };
    const req = secure
      ? httpsRequest({ ...common, rejectUnauthorized: options.rejectUnauthorized ?? true, ...(options.ca ? { ca: options.ca } : {}) })
      : httpRequest(common);
    const failed = (why: string, cause?: unknown): void => {
      clearTimeout(timer);
      reject(new Error(`WebSocket handshake with ${url} failed: ${why}`, cause === undefined ? undefined : { cause }));
    };
    const timeoutMs = options.handshakeTimeoutMs ?? 30_000;
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);

    req.on('error', (err) => failed(err.message, err));
    req.on('response', (res) => {
      clearTimeout(timer);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < 4096) chunks.push(c);
        size += c.length;
      });
      const refused = (): void => {
        const body = Buffer.concat(chunks).subarray(0, 4096).toString('utf8').trim();
        reject(new Error(`WebSocket upgrade to ${url} refused: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trimEnd() + (body ? `: ${body}` : '')));
        req.destroy();
      };
      res.on('end', refused);
      res.on('error', refused);
    });
    req.on('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
      clearTimeout(timer);
      const refuse = (why: string): void => {
        socket.destroy();
        failed(why);
      };
      if ((res.headers.upgrade ?? '').toLowerCase() !== 'websocket') return refuse(`Upgrade header is ${JSON.stringify(res.headers.upgrade ?? '')}, not websocket`);
      const expected = acceptKey(key);
      const accept = res.headers['sec-websocket-accept'];
      if (accept !== expected) return refuse(`Sec-WebSocket-Accept is ${JSON.stringify(accept ?? '')}, expected ${expected}`);
      if (res.headers['sec-websocket-extensions']) return refuse(`server chose extensions (${res.headers['sec-websocket-extensions']}) that were not offered`);
      const protocol = (res.headers['sec-websocket-protocol'] ?? '').trim();
      if (protocol !== '' && !protocols.includes(protocol)) return refuse(`server chose subprotocol ${JSON.stringify(protocol)}, which was not offered (${protocols.join(', ')})`);
      tuneSocket(socket);
      resolve(new WebSocket(socket, 'client', { ...options, protocol, head }));
    });
    req.end();
  });
}
