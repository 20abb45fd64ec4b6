import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline, Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../../../cri-shim/registry/client.js';
import { sha256Digest } from '../../../../cri-shim/registry/verify.js';

// The client's endpoint and verification rules against an in-process fake registry (no root,
// no docker-registry): HEAD fallback, lying registries, failover between mirrors, headers.

const manifestType = 'application/vnd.oci.image.manifest.v1+json';
const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: manifestType, config: {}, layers: [] }));
const manifestDigest = sha256Digest(manifest);

interface Behaviour {
  status?: number;
  noHead?: boolean;
  lieDigest?: boolean;
  body?: Buffer;
}

interface FakeRegistry {
  host: string;
  behaviour: Behaviour;
  seen: http.IncomingMessage[];
  server: http.Server;
}

async function fakeRegistry(): Promise<FakeRegistry> {
  const fake: FakeRegistry = { host: '', behaviour: {}, seen: [], server: http.createServer() };
  fake.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    fake.seen.push(req);
    const b = fake.behaviour;
    if (b.status) return void res.writeHead(b.status).end();
    if (req.method === 'HEAD' && b.noHead) return void res.writeHead(405).end();
    if (!/\/lib\/img\/manifests\/(v1|sha256:[a-f0-9]{64})$/.test(req.url ?? '')) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
    const body = b.body ?? manifest;
    res.writeHead(200, {
      'content-type': manifestType,
      'content-length': body.length,
      'docker-content-digest': b.lieDigest ? `sha256:${'1'.repeat(64)}` : sha256Digest(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
  fake.host = `127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
  return fake;
}

describe('registry client rules (fake registry)', () => {
  let a: FakeRegistry;
  let b: FakeRegistry;
  const dirs: string[] = [];
  const clients: RegistryClient[] = [];
  const client = (hostsToml?: string): RegistryClient => {
    let hostsDir: string | undefined;
    if (hostsToml) {
      hostsDir = mkdtempSync(join(tmpdir(), 'berth-hosts-'));
      dirs.push(hostsDir);
      mkdirSync(join(hostsDir, 'upstream.test'));
      writeFileSync(join(hostsDir, 'upstream.test', 'hosts.toml'), hostsToml);
    }
    const c = new RegistryClient({ ...(hostsDir ? { hostsDir } : {}), timeoutMs: 5000 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    [a, b] = await Promise.all([fakeRegistry(), fakeRegistry()]);
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    for (const f of [a, b]) {
      f.behaviour = {};
      f.seen.length = 0;
    }
  });

  afterAll(async () => {
    for (const f of [a, b]) {
      f.server.closeAllConnections();
      await new Promise((resolve) => f.server.close(resolve));
    }
  });

  it('resolves with one HEAD when the registry names the digest', async () => {
    const resolved = await client().resolve(`${a.host}/lib/img:v1`);
    expect(resolved).toMatchObject({ digest: manifestDigest, mediaType: manifestType, size: manifest.length });
    expect(a.seen.map((r) => r.method)).toEqual(['HEAD']);
    expect(a.seen[0]!.headers.accept).toContain('application/vnd.oci.image.index.v1+json');
  });

  it('falls back to GET when HEAD is not answered', async () => {
    a.behaviour = { noHead: true };
    expect((await client().resolve(`${a.host}/lib/img:v1`)).digest).toBe(manifestDigest);
    expect(a.seen.map((r) => r.method)).toEqual(['HEAD', 'GET']);
  });

  it('refuses a manifest whose bytes do not match the digest the registry claims or we asked for', async () => {
    a.behaviour = { lieDigest: true };
    await expect(client().fetchManifest(`${a.host}/lib/img:v1`)).rejects.toThrow(/content has digest .* expected sha256:1111/);
    a.behaviour = { body: Buffer.from('{"schemaVersion":2}') };
    await expect(client().fetchManifest(`${a.host}/lib/img@${manifestDigest}`)).rejects.toMatchObject({ kind: 'io' });
  });

  it('moves past a mirror answering 5xx, and sends the headers hosts.toml sets', async () => {
    a.behaviour = { status: 503 };
    const c = client(`server = "http://${b.host}"\n[host."http://${a.host}"]\n  capabilities = ["pull", "resolve"]\n[host."http://${a.host}".header]\n  x-mirror = "yes"\n`);
    expect((await c.fetchManifest('upstream.test/lib/img:v1')).digest).toBe(manifestDigest);
    expect(a.seen[0]!.headers['x-mirror']).toBe('yes');
    expect(b.seen).toHaveLength(1);
  });

  it("treats the server's own 404 as final and names the registry's explanation", async () => {
    const c = client(`server = "http://${a.host}"\n`);
    await expect(c.fetchManifest('upstream.test/lib/other:v1')).rejects.toMatchObject({
      kind: 'not-found',
      message: expect.stringContaining('MANIFEST_UNKNOWN: manifest unknown'),
    });
  });

  it('reports every endpoint tried when none answers', async () => {
    a.behaviour = { status: 500 };
    b.behaviour = { status: 502 };
    const c = client(`server = "http://${b.host}"\n[host."http://${a.host}"]\n`);
    await expect(c.fetchManifest('upstream.test/lib/img:v1')).rejects.toMatchObject({
      kind: 'not-available',
      message: expect.stringMatching(new RegExp(`${a.host}: HTTP 500.*${b.host}: HTTP 502`)),
    });
  });

  it('uses an override_path prefix as written', async () => {
    const c = client(`[host."http://${a.host}/proxy/v2"]\n  override_path = true\n`);
    await c.fetchManifest('upstream.test/lib/img:v1').catch(() => undefined);
    expect(a.seen[0]!.url).toBe('/proxy/v2/lib/img/manifests/v1');
  });

  it('refuses a hosts.toml with no endpoint for the capability needed', async () => {
    const c = client(`server = "http://${a.host}"\ncapabilities = ["pull"]\n`);
    await expect(c.resolve('upstream.test/lib/img:v1')).rejects.toThrow(/no endpoint configured for upstream.test has the "resolve" capability/);
  });
});

describe('registry client limits (a registry that sends too much)', () => {
  const manifestBody = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: manifestType, config: {}, layers: [] }));
  let server: http.Server;
  let host = '';
  let handle: (req: http.IncomingMessage, res: http.ServerResponse) => void = () => undefined;
  /** Bytes written by the last streamed answer before the client hung up. */
  let streamed = 0;
  const paths: string[] = [];
  const clients: RegistryClient[] = [];
  const client = (limits?: { maxManifestBytes: number; maxConfigBytes: number }): RegistryClient => {
    const c = new RegistryClient({ timeoutMs: 5000, ...(limits ? { limits } : {}) });
    clients.push(c);
    return c;
  };

  /** Write `total` bytes, as fast as the client reads, until it hangs up (pipeline stops then). */
  const stream = (res: http.ServerResponse, total: number): void => {
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    streamed = 0;
    const chunks = function* (): Generator<Buffer> {
      for (; streamed < total; streamed += chunk.length) yield chunk;
    };
    pipeline(Readable.from(chunks()), res, () => undefined);
  };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      paths.push(req.url ?? '');
      handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    paths.length = 0;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('refuses a manifest its HEAD says is over the limit, without reading it', async () => {
    handle = (req, res) => {
      res.writeHead(200, { 'content-type': manifestType, 'docker-content-digest': sha256Digest(manifestBody), 'content-length': 1 << 30 });
      if (req.method === 'HEAD') res.end();
      else stream(res, 1 << 30);
    };
    await expect(client().resolve(`${host}/lib/img:v1`)).rejects.toMatchObject({
      kind: 'resource-exhausted',
      message: `manifest v1 of ${host}/lib/img from ${host}: 1073741824 bytes is over the 4194304-byte limit for manifests (maxManifestSize)`,
    });
    expect(paths).toHaveLength(1);
  });

  it('stops reading a manifest stream at the limit', async () => {
    handle = (req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(405).end();
      res.writeHead(200, { 'content-type': manifestType });
      stream(res, 256 << 20);
    };
    await expect(client({ maxManifestBytes: 64 * 1024, maxConfigBytes: 64 * 1024 }).resolve(`${host}/lib/img:v1`)).rejects.toMatchObject({
      kind: 'resource-exhausted',
      message: expect.stringContaining('body over the 65536-byte limit for manifests (maxManifestSize)'),
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(streamed).toBeLessThan(16 << 20);
  });

  it('reads an index entry by exactly the size its descriptor says', async () => {
    const digest = sha256Digest(manifestBody);
    const desc = { mediaType: manifestType, digest, size: manifestBody.length - 1 };
    handle = (_req, res) => void res.writeHead(200, { 'content-type': manifestType }).end(manifestBody);
    await expect(client().fetchManifest(`${host}/lib/img`, desc)).rejects.toThrow(`${digest} of ${host}/lib/img from ${host}: more than the ${desc.size} bytes its descriptor says`);
    handle = (_req, res) => void res.writeHead(200, { 'content-type': manifestType, 'content-length': manifestBody.length }).end(manifestBody);
    await expect(client().fetchManifest(`${host}/lib/img`, desc)).rejects.toThrow(`${manifestBody.length} bytes offered, descriptor says ${desc.size}`);
    await expect(client().fetchManifest(`${host}/lib/img`, { ...desc, size: manifestBody.length + 1 })).rejects.toThrow(/offered, descriptor says/);
    expect((await client().fetchManifest(`${host}/lib/img`, { ...desc, size: manifestBody.length })).digest).toBe(digest);
  });

  it('refuses an index entry or tag that is not a digest or tag before any request', async () => {
    handle = (_req, res) => void res.writeHead(404).end();
    await expect(client().fetchManifest(`${host}/lib/img`, { mediaType: manifestType, digest: '../../etc/passwd', size: 10 })).rejects.toThrow(/descriptor.digest: digest "..\/..\/etc\/passwd" is not/);
    await expect(client().fetchManifest(`${host}/lib/img`, '../../etc/passwd')).rejects.toThrow(/"..\/..\/etc\/passwd" is neither a tag nor a digest/);
    await expect(client().fetchManifest(`${host}/lib/img`, { mediaType: manifestType, digest: sha256Digest(manifestBody), size: 5 << 20 })).rejects.toMatchObject({ kind: 'resource-exhausted' });
    expect(paths).toEqual([]);
  });

  it('cuts off a blob longer than its descriptor at the first byte too many', async () => {
    const blob = Buffer.from('0123456789');
    handle = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      stream(res, 256 << 20);
    };
    await expect(client().fetchBlobBuffer(`${host}/lib/img`, { mediaType: 'x', digest: sha256Digest(blob), size: blob.length })).rejects.toMatchObject({
      kind: 'io',
      message: expect.stringContaining('more than the 10 bytes its descriptor says'),
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(streamed).toBeLessThan(16 << 20);
    handle = (_req, res) => void res.writeHead(200, { 'content-length': 1 << 30 }).end();
    await expect(client().fetchBlobBuffer(`${host}/lib/img`, { mediaType: 'x', digest: sha256Digest(blob), size: blob.length })).rejects.toThrow('1073741824 bytes offered, descriptor says 10');
  });

  it('refuses a blob descriptor without a valid size before any request', async () => {
    for (const size of [-1, 1.5, Number.NaN]) {
      await expect(client().fetchBlob(`${host}/lib/img`, { mediaType: 'x', digest: sha256Digest(Buffer.from('x')), size })).rejects.toThrow(/descriptor.size: .* is not a size/);
    }
    expect(paths).toEqual([]);
  });
});
