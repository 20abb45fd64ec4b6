import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { StreamServer, type StreamRequest } from '../../../../cri-shim/stream/server.js';
import { ExecRequest, PortForwardRequest } from '../../../../proto/gen/runtime/v1/api.js';
import { acceptWebSocket, connectWebSocket } from '../../../../lib/stream/websocket-handshake.js';

// The streaming server's own contract: one-time URLs by kind, 404 for a used or unknown token,
// 400 for a request that is not an upgrade, and the same over TLS. The handler here echoes
// WebSocket messages, so a round trip shows the upgrade reached it with its request.

const log = pino({ level: 'silent' });
const exec: StreamRequest = { kind: 'exec', request: ExecRequest.fromPartial({ containerId: 'c1', cmd: ['true'], stdout: true }) };

function echoServer(tls?: { cert: string; key: string }, tokenTtlMs?: number): { server: StreamServer; seen: StreamRequest[] } {
  const seen: StreamRequest[] = [];
  const server = new StreamServer({ address: '127.0.0.1', port: 0, tls, log, tokenTtlMs }, (req, socket, head, stream) => {
    seen.push(stream);
    const ws = acceptWebSocket(req, socket, head, ['echo']);
    ws?.on('message', (data, binary) => ws.send(data, binary));
  });
  return { server, seen };
}

async function roundTrip(url: string, text: string): Promise<string> {
  const ws = await connectWebSocket(url, ['echo'], { rejectUnauthorized: false });
  try {
    return await new Promise<string>((resolve) => {
      ws.once('message', (data) => resolve(data.toString()));
      ws.send(text);
    });
  } finally {
    ws.terminate();
  }
}

function plainGet(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    })
      .on('error', reject)
      .end();
  });
}

describe('streaming server', () => {
  const servers: StreamServer[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('hands an upgraded URL to the handler once, with its request', async () => {
    const { server, seen } = echoServer();
    servers.push(server);
    expect(() => server.url(exec)).toThrow(/not running/);
    const base = await server.start();
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const url = server.url(exec);
    expect(url).toMatch(new RegExp(`^${base}/exec/[A-Za-z0-9_-]{16}$`));
    expect(await plainGet(url)).toBe(400);
    expect(await roundTrip(url, 'hello')).toBe('hello');
    expect(seen).toEqual([exec]);
    // Used once: gone.
    await expect(roundTrip(url, 'again')).rejects.toThrow(/404/);
    expect(await plainGet(url)).toBe(404);
    // A token only works under its own kind.
    const pf = server.url({ kind: 'portforward', request: PortForwardRequest.fromPartial({ podSandboxId: 'p1', port: [80] }) });
    await expect(roundTrip(pf.replace('/portforward/', '/exec/'), 'x')).rejects.toThrow(/404/);
    expect(await roundTrip(pf, 'pf')).toBe('pf');
    expect(seen.map((s) => s.kind)).toEqual(['exec', 'portforward']);
  });

  it('serves over TLS with the configured certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-stream-tls-'));
    dirs.push(dir);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=berth-stream-test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const { server } = echoServer({ cert, key: readFileSync(join(dir, 'key.pem'), 'utf8') });
    servers.push(server);
    expect(await server.start()).toMatch(/^https:\/\//);
    expect(await roundTrip(server.url(exec), 'over tls')).toBe('over tls');
    // A client that verifies the server against that certificate gets through; one that does not trust it is refused.
    const verified = await connectWebSocket(server.url(exec), ['echo'], { ca: cert, rejectUnauthorized: true });
    verified.terminate();
    await expect(connectWebSocket(server.url(exec), ['echo'], { rejectUnauthorized: true })).rejects.toThrow(/self[- ]signed|certificate/i);
  });

  it('survives errors of its HTTP server once listening (an accept that fails)', async () => {
    const { server } = echoServer();
    servers.push(server);
    await server.start();
    const http = (server as unknown as { server: { emit(event: string, err: Error): boolean } }).server;
    expect(() => http.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' }))).not.toThrow();
    expect(await roundTrip(server.url(exec), 'still here')).toBe('still here');
  });

  it('drops the work begun for a URL when it expires unused or the server stops, never once the URL was taken', async () => {
    const { server, seen } = echoServer(undefined, 100);
    servers.push(server);
    await server.start();
    const dropped: string[] = [];
    const taken = server.url(exec, () => dropped.push('taken'));
    server.url(exec, () => dropped.push('expired'));
    server.url(exec); // nothing begun for it: not counted
    expect(server.pendingWork).toBe(2);
    expect(await roundTrip(taken, 'mine')).toBe('mine');
    expect(seen).toHaveLength(1);
    expect(server.pendingWork).toBe(1);
    for (let i = 0; i < 50 && !dropped.length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(dropped).toEqual(['expired']);
    expect(server.pendingWork).toBe(0);
    server.url(exec, () => dropped.push('at stop'));
    await server.stop();
    expect(dropped).toEqual(['expired', 'at stop']);
  });
});
