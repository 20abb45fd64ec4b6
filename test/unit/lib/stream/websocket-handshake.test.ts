import { randomBytes } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { acceptKey, isWebSocketRequest } from '../../../../lib/stream/websocket-handshake.js';
import type { WebSocket } from '../../../../lib/stream/websocket.js';
import { RawPeer, webSocketHarness } from './websocket-fixtures.js';

// The opening handshake of lib/stream/websocket-handshake, server and client, over real TCP on
// 127.0.0.1 and against raw peers that send or answer malformed upgrades.

describe('WebSocket (RFC 6455)', () => {
  const { sockets, wsServer, listen, client } = webSocketHarness();

  /** A plain HTTP upgrade request with the given headers; resolves to the status and headers of the answer. */
  function rawRequest(port: number, headers: Record<string, string | string[]>): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', headers, agent: false });
      req.on('error', reject);
      req.on('upgrade', (res, socket) => {
        sockets.push(socket);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.end();
    });
  }

  const upgradeHeaders = (extra: Record<string, string | string[]> = {}): Record<string, string | string[]> => ({
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    ...extra,
  });

  describe('opening handshake', () => {
    it('derives Sec-WebSocket-Accept as in the example of section 1.3', () => {
      expect(acceptKey('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    });

    it('recognises an upgrade request only for GET with Connection: upgrade and Upgrade: websocket', () => {
      const req = (method: string, ...rawHeaders: string[]): IncomingMessage => ({ method, rawHeaders }) as unknown as IncomingMessage;
      expect(isWebSocketRequest(req('GET', 'Connection', 'keep-alive, Upgrade', 'Upgrade', 'WebSocket'))).toBe(true);
      expect(isWebSocketRequest(req('GET', 'connection', 'upgrade', 'upgrade', 'websocket'))).toBe(true);
      expect(isWebSocketRequest(req('POST', 'Connection', 'Upgrade', 'Upgrade', 'websocket'))).toBe(false);
      expect(isWebSocketRequest(req('GET', 'Connection', 'keep-alive', 'Upgrade', 'websocket'))).toBe(false);
      expect(isWebSocketRequest(req('GET', 'Connection', 'Upgrade', 'Upgrade', 'SPDY/3.1'))).toBe(false);
    });

    it("chooses the first of the client's subprotocols that the server supports, in the client's order", async () => {
      const chosen: string[] = [];
      const port = await wsServer(['v4.channel.k8s.io', 'v5.channel.k8s.io'], (ws) => chosen.push(ws.protocol));
      const a = await client(port, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
      const b = await client(port, ['channel.k8s.io', 'v4.channel.k8s.io', 'v5.channel.k8s.io']);
      expect([a.protocol, b.protocol]).toEqual(['v5.channel.k8s.io', 'v4.channel.k8s.io']);
      expect(chosen).toEqual(['v5.channel.k8s.io', 'v4.channel.k8s.io']);
      expect(a.role).toBe('client');
    });

    it('reads subprotocols offered over several Sec-WebSocket-Protocol headers', async () => {
      const port = await wsServer(['v5.channel.k8s.io', 'base64.channel.k8s.io'], () => undefined);
      const res = await rawRequest(port, upgradeHeaders({ 'Sec-WebSocket-Protocol': ['x.example, y.example', 'base64.channel.k8s.io', 'v5.channel.k8s.io'] }));
      expect(res.status).toBe(101);
      expect(res.headers['sec-websocket-protocol']).toBe('base64.channel.k8s.io');
    });

    it('refuses with 400 when none of the offered subprotocols is supported, and connectWebSocket names the status', async () => {
      let accepted = 0;
      const port = await wsServer(['v5.channel.k8s.io'], () => accepted++);
      await expect(client(port, ['v1.channel.k8s.io', 'channel.k8s.io'])).rejects.toThrow(/refused: HTTP 400 Bad Request: none of the offered subprotocols \(v1\.channel\.k8s\.io, channel\.k8s\.io\)/);
      expect(accepted).toBe(0);
    });

    it("accepts a client that offers no subprotocol with protocol '', sending the extra headers", async () => {
      let server: WebSocket | undefined;
      const port = await wsServer(['v5.channel.k8s.io'], (ws) => (server = ws), { extraHeaders: { 'X-Berth-Stream': 'exec' } });
      const res = await rawRequest(port, upgradeHeaders());
      expect(res.status).toBe(101);
      expect(res.headers['x-berth-stream']).toBe('exec');
      expect(res.headers['sec-websocket-protocol']).toBeUndefined();
      expect(server?.protocol).toBe('');
      expect(server?.role).toBe('server');
    });

    it.each([
      ['a missing key', 'GET', { 'Sec-WebSocket-Key': '' }, /invalid Sec-WebSocket-Key ""/],
      ['a key that is not 16 bytes', 'GET', { 'Sec-WebSocket-Key': Buffer.from('short').toString('base64') }, /invalid Sec-WebSocket-Key "c2hvcnQ="/],
      ['version 8', 'GET', { 'Sec-WebSocket-Version': '8' }, /unsupported Sec-WebSocket-Version "8"/],
      ['a POST', 'POST', {}, /not a WebSocket upgrade request/],
    ])('refuses %s with 400 and a plain-text reason', async (_name, method, override: Record<string, string>, reason) => {
      let accepted = 0;
      const port = await wsServer([], () => accepted++);
      const headers = upgradeHeaders();
      for (const [k, v] of Object.entries(override)) {
        if (v === '') delete headers[k];
        else headers[k] = v;
      }
      const socket = connect(port, '127.0.0.1');
      sockets.push(socket);
      const peer = new RawPeer(socket);
      socket.write(`${method} / HTTP/1.1\r\nHost: x\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${String(v)}\r\n`).join('')}\r\n`);
      const head = await peer.head();
      expect(head).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(head).toMatch(/Content-Type: text\/plain/);
      await peer.closed;
      expect(peer.rest().toString()).toMatch(reason);
      expect(accepted).toBe(0);
    });

    it('rejects a server whose Sec-WebSocket-Accept does not match the key', async () => {
      const port = await listen((server) =>
        server.on('upgrade', (_req, socket: Duplex) => {
          socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey('wrong')}\r\n\r\n`);
        }),
      );
      await expect(client(port)).rejects.toThrow(/Sec-WebSocket-Accept is .* expected/);
    });

    it('rejects a server that picks a subprotocol the client did not offer', async () => {
      const port = await listen((server) =>
        server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
          const key = String(req.headers['sec-websocket-key']);
          socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\nSec-WebSocket-Protocol: other\r\n\r\n`);
        }),
      );
      await expect(client(port, ['v5.channel.k8s.io'])).rejects.toThrow(/subprotocol "other", which was not offered/);
    });
  });
});
