import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient, type Descriptor } from '../../../../cri-shim/registry/client.js';
import { parseReference } from '../../../../cri-shim/registry/reference.js';
import { sha256Digest } from '../../../../cri-shim/registry/verify.js';
import { freePort, htpasswdSkipReason, registrySkipReason, startRegistry, type TestRegistry } from '../../../../world/registry.js';

// The registry client against real docker-registry instances: a synthetic two-platform image
// pushed with the client's own push calls, then resolved, pulled and verified; mirrors from
// hosts.toml, htpasswd Basic auth, TLS, and a Bearer token service in front of a registry.

const skip = registrySkipReason();
const ociManifest = 'application/vnd.oci.image.manifest.v1+json';
const ociIndex = 'application/vnd.oci.image.index.v1+json';

interface Blob {
  descriptor: Descriptor;
  bytes: Buffer;
}

interface SyntheticImage {
  layer: Blob;
  config: Blob;
  manifest: Blob;
}

function blob(mediaType: string, bytes: Buffer, extra: Partial<Descriptor> = {}): Blob {
  return { descriptor: { mediaType, digest: sha256Digest(bytes), size: bytes.length, ...extra }, bytes };
}

function syntheticImage(architecture: 'amd64' | 'arm64'): SyntheticImage {
  const layer = blob('application/vnd.oci.image.layer.v1.tar', randomBytes(64 * 1024 + 17));
  const config = blob('application/vnd.oci.image.config.v1+json', Buffer.from(JSON.stringify({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.descriptor.digest] }, config: {} })));
  const manifest = blob(ociManifest, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociManifest, config: config.descriptor, layers: [layer.descriptor] })), {
    platform: { os: 'linux', architecture },
  });
  return { layer, config, manifest };
}

function indexOf(images: SyntheticImage[]): Blob {
  return blob(ociIndex, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociIndex, manifests: images.map((i) => i.manifest.descriptor) })));
}

const amd64 = syntheticImage('amd64');
const arm64 = syntheticImage('arm64');
const index = indexOf([amd64, arm64]);

/** Push both platform images by digest and the index under `tag`. */
async function pushSynthetic(client: RegistryClient, name: string, tag: string): Promise<void> {
  for (const img of [amd64, arm64]) {
    for (const b of [img.layer, img.config]) await client.pushBlob(name, b.descriptor.digest, b.bytes);
    await client.pushManifest(name, img.manifest.descriptor.digest, img.manifest.bytes, ociManifest);
  }
  await client.pushManifest(name, tag, index.bytes, ociIndex);
}

function hostsDirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-hosts-'));
  for (const [host, text] of Object.entries(files)) {
    mkdirSync(join(dir, host), { recursive: true });
    writeFileSync(join(dir, host, 'hosts.toml'), text);
  }
  return dir;
}

describe.skipIf(skip !== undefined)('registry client against docker-registry', () => {
  let registry: TestRegistry | undefined;
  const cleanups: (() => void)[] = [];
  const clients: RegistryClient[] = [];
  const client = (opts: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient => {
    const c = new RegistryClient(opts);
    clients.push(c);
    return c;
  };
  const hosts = (files: Record<string, string>): string => {
    const dir = hostsDirWith(files);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };

  beforeAll(async () => {
    registry = await startRegistry();
    const pusher = new RegistryClient();
    try {
      await pushSynthetic(pusher, `${registry.host}/lib/img`, 'v1');
    } finally {
      pusher.close();
    }
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const f of cleanups.splice(0)) f();
  });

  afterAll(async () => {
    await registry?.stop();
  });

  it('skips a blob upload the registry already has', async () => {
    expect(await client().pushBlob(`${registry!.host}/lib/img`, amd64.layer.descriptor.digest, amd64.layer.bytes)).toBe(false);
    await expect(client().pushBlob(`${registry!.host}/lib/img`, `sha256:${'0'.repeat(64)}`, amd64.layer.bytes)).rejects.toThrow(/does not have digest/);
  });

  it('resolves a tag to the index: name, digest, media type, size and endpoint', async () => {
    const resolved = await client().resolve(parseReference(`${registry!.host}/lib/img:v1`));
    expect(resolved).toMatchObject({ name: `${registry!.host}/lib/img`, digest: index.descriptor.digest, mediaType: ociIndex, size: index.bytes.length });
    expect(resolved.endpoint).toMatchObject({ scheme: 'http', host: registry!.host, pathPrefix: '/v2' });
  });

  it('resolves and fetches by digest, verifying the bytes', async () => {
    const ref = `${registry!.host}/lib/img@${amd64.manifest.descriptor.digest}`;
    expect((await client().resolve(ref)).digest).toBe(amd64.manifest.descriptor.digest);
    const got = await client().fetchManifest(ref);
    expect(got).toMatchObject({ digest: amd64.manifest.descriptor.digest, mediaType: ociManifest });
    expect(got.bytes.equals(amd64.manifest.bytes)).toBe(true);
  });

  it('picks linux/amd64 and linux/arm64 from the index, and lists platforms when none fits', async () => {
    const c = client();
    const top = await c.fetchManifest(`${registry!.host}/lib/img:v1`);
    const doc = JSON.parse(top.bytes.toString('utf8')) as { manifests: Descriptor[] };
    expect(c.selectPlatform(doc, { os: 'linux', architecture: 'amd64' }).digest).toBe(amd64.manifest.descriptor.digest);
    expect(c.selectPlatform(doc, { os: 'linux', architecture: 'arm64' }).digest).toBe(arm64.manifest.descriptor.digest);
    expect(() => c.selectPlatform(doc, { os: 'linux', architecture: 's390x' })).toThrow(/it has: linux\/amd64, linux\/arm64/);
    const image = await c.fetchImageManifest(`${registry!.host}/lib/img:v1`, { os: 'linux', architecture: 'arm64' });
    expect(image.index?.digest).toBe(index.descriptor.digest);
    expect(image.manifest.digest).toBe(arm64.manifest.descriptor.digest);
  });

  it('streams blobs verified, to a buffer and to a file', async () => {
    const c = client();
    const name = `${registry!.host}/lib/img`;
    expect((await c.fetchBlobBuffer(name, arm64.layer.descriptor)).equals(arm64.layer.bytes)).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'berth-blob-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    await c.fetchBlobToFile(name, amd64.config.descriptor, join(dir, 'config.json'));
    expect(readFileSync(join(dir, 'config.json')).equals(amd64.config.bytes)).toBe(true);
  });

  it('fails a blob asked for by a wrong digest or size', async () => {
    const c = client();
    const name = `${registry!.host}/lib/img`;
    await expect(c.fetchBlobBuffer(name, { ...amd64.layer.descriptor, digest: `sha256:${'0'.repeat(64)}` })).rejects.toMatchObject({ kind: 'not-found' });
    await expect(c.fetchBlobBuffer(name, { ...amd64.layer.descriptor, size: amd64.layer.descriptor.size - 1 })).rejects.toThrow(/descriptor says/);
    await expect(c.fetchBlobBuffer(name, { ...amd64.layer.descriptor, digest: 'sha256:nothex' })).rejects.toThrow(/digest "sha256:nothex"/);
  });

  it('reports an unknown tag or repository as not found, naming it', async () => {
    await expect(client().resolve(`${registry!.host}/lib/img:nope`)).rejects.toMatchObject({ kind: 'not-found', message: expect.stringContaining('lib/img: manifests/nope') });
    await expect(client().fetchManifest(`${registry!.host}/lib/none:v1`)).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('pulls a name whose registry does not exist only through its hosts.toml mirror', async () => {
    const dir = hosts({ 'registry.example.test': `server = "https://registry.example.test"\n[host."http://${registry!.host}"]\n  capabilities = ["pull", "resolve"]\n` });
    const mirrored = client({ hostsDir: dir, timeoutMs: 5000 });
    const resolved = await mirrored.resolve('registry.example.test/lib/img:v1');
    expect(resolved.digest).toBe(index.descriptor.digest);
    expect(resolved.endpoint).toMatchObject({ host: registry!.host, mirror: true });
    expect((await mirrored.fetchBlobBuffer('registry.example.test/lib/img', amd64.layer.descriptor)).equals(amd64.layer.bytes)).toBe(true);
    await expect(client({ timeoutMs: 5000 }).resolve('registry.example.test/lib/img:v1')).rejects.toThrow(/registry.example.test/);
  });

  it('moves past a dead mirror and a mirror without the image', async () => {
    const dead = await freePort();
    const dir = hosts({
      'registry.example.test': [
        `[host."http://127.0.0.1:${dead}"]`,
        `[host."http://${registry!.host}/empty"]`,
        '  override_path = true',
        `[host."http://${registry!.host}"]`,
        '  capabilities = ["pull", "resolve"]',
        '',
      ].join('\n'),
    });
    const resolved = await client({ hostsDir: dir, timeoutMs: 5000 }).resolve('registry.example.test/lib/img:v1');
    expect(resolved.endpoint.host).toBe(registry!.host);
    expect(resolved.endpoint.pathPrefix).toBe('/v2');
  });

  it('asks a pull-only mirror for digests but not for tags', async () => {
    const dir = hosts({ 'registry.example.test': `server = "https://registry.example.test"\n[host."http://${registry!.host}"]\n  capabilities = ["pull"]\n` });
    const c = client({ hostsDir: dir, timeoutMs: 5000 });
    expect((await c.fetchManifest(`registry.example.test/lib/img@${arm64.manifest.descriptor.digest}`)).digest).toBe(arm64.manifest.descriptor.digest);
    await expect(c.resolve('registry.example.test/lib/img:v1')).rejects.toThrow(/registry.example.test/);
  });

  it('fails with the hosts.toml file and key named when the config is bad', async () => {
    const dir = hosts({ 'registry.example.test': '[host."http://m"]\n  capabilities = ["fetch"]\n' });
    await expect(client({ hostsDir: dir }).resolve('registry.example.test/lib/img:v1')).rejects.toThrow(/registry.example.test\/hosts.toml: host."http:\/\/m".capabilities: unknown capability "fetch"/);
  });
});

const authSkip = skip ?? htpasswdSkipReason();

describe.skipIf(authSkip !== undefined)('registry client with htpasswd Basic auth', () => {
  let registry: TestRegistry | undefined;
  const clients: RegistryClient[] = [];
  const client = (auth?: ConstructorParameters<typeof RegistryClient>[0]): RegistryClient => {
    const c = new RegistryClient(auth);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    registry = await startRegistry({ htpasswd: { user: 'puller', password: 'right-horse' } });
    const pusher = new RegistryClient({ auth: { username: 'puller', password: 'right-horse' } });
    try {
      await pushSynthetic(pusher, `${registry.host}/lib/img`, 'v1');
    } finally {
      pusher.close();
    }
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  afterAll(async () => {
    await registry?.stop();
  });

  it('pulls with username/password and with the base64 auth field', async () => {
    const ref = `${registry!.host}/lib/img:v1`;
    expect((await client({ auth: { username: 'puller', password: 'right-horse' } }).resolve(ref)).digest).toBe(index.descriptor.digest);
    const c = client({ auth: { auth: Buffer.from('puller:right-horse').toString('base64') } });
    expect((await c.fetchBlobBuffer(`${registry!.host}/lib/img`, arm64.layer.descriptor)).equals(arm64.layer.bytes)).toBe(true);
  });

  it('fails clearly with a wrong password or without credentials', async () => {
    const ref = `${registry!.host}/lib/img:v1`;
    await expect(client({ auth: { username: 'puller', password: 'wrong' } }).resolve(ref)).rejects.toMatchObject({
      kind: 'failed-precondition',
      message: expect.stringMatching(new RegExp(`${registry!.host} denied .*HTTP 401.*the credentials were refused`)),
    });
    await expect(client().resolve(ref)).rejects.toThrow(/requires credentials/);
  });

  it('offers the credentials only to the host their server address names', async () => {
    const ref = `${registry!.host}/lib/img:v1`;
    const creds = { username: 'puller', password: 'right-horse' };
    expect((await client({ auth: { ...creds, serverAddress: `http://${registry!.host}` } }).resolve(ref)).digest).toBe(index.descriptor.digest);
    await expect(client({ auth: { ...creds, serverAddress: 'other.example.test' } }).resolve(ref)).rejects.toThrow(/requires credentials/);
  });
});

describe.skipIf(skip !== undefined)('registry client over TLS', () => {
  let registry: TestRegistry | undefined;
  const clients: RegistryClient[] = [];
  const dirs: string[] = [];
  const client = (hostsToml: string): RegistryClient => {
    const dir = hostsDirWith({ [registry!.host]: hostsToml });
    dirs.push(dir);
    const c = new RegistryClient({ hostsDir: dir });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    registry = await startRegistry({ tls: true });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  afterAll(async () => {
    await registry?.stop();
  });

  it('pushes and pulls trusting the registry certificate through hosts.toml ca', async () => {
    const c = client(`server = "https://${registry!.host}"\nca = "${registry!.caFile}"\n`);
    await pushSynthetic(c, `${registry!.host}/lib/img`, 'v1');
    const resolved = await c.resolve(`${registry!.host}/lib/img:v1`);
    expect(resolved.digest).toBe(index.descriptor.digest);
    expect(resolved.endpoint.scheme).toBe('https');
  });

  it('pulls with skip_verify, and refuses an untrusted certificate otherwise', async () => {
    const skipVerify = client(`server = "https://${registry!.host}"\nskip_verify = true\n`);
    expect((await skipVerify.fetchBlobBuffer(`${registry!.host}/lib/img`, amd64.layer.descriptor)).equals(amd64.layer.bytes)).toBe(true);
    const untrusted = client(`server = "https://${registry!.host}"\n`);
    await expect(untrusted.resolve(`${registry!.host}/lib/img:v1`)).rejects.toThrow(/certificate/);
  });
});

describe.skipIf(skip !== undefined)('registry client with a Bearer token service', () => {
  let registry: TestRegistry | undefined;
  let front: http.Server | undefined;
  let storage: http.Server | undefined;
  let frontHost = '';
  const tokenRequests: URL[] = [];
  const storageAuthorizations: (string | undefined)[] = [];
  let storageMode: 'ok' | 'corrupt' | 'truncate' = 'ok';
  const revoked = new Set<string>();
  const clients: RegistryClient[] = [];
  const client = (opts: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient => {
    const c = new RegistryClient(opts);
    clients.push(c);
    return c;
  };

  const listen = (server: http.Server): Promise<string> =>
    new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server.address() as AddressInfo).port}`)));

  /** Forward a request to the real registry and relay the answer (optionally with a byte flipped). */
  const proxy = (req: http.IncomingMessage, res: http.ServerResponse, mode: typeof storageMode): void => {
    const up = http.request({ host: '127.0.0.1', port: Number(registry!.host.split(':')[1]), path: req.url, method: req.method, headers: { accept: req.headers.accept ?? '*/*' } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (mode === 'ok') return void answer.pipe(res);
      const parts: Buffer[] = [];
      answer.on('data', (b: Buffer) => parts.push(b));
      answer.on('end', () => {
        const body = Buffer.concat(parts);
        if (mode === 'truncate') {
          // Half the body, then the connection drops.
          res.write(body.subarray(0, body.length >> 1), () => res.destroy());
          return;
        }
        body[0] = body[0]! ^ 0xff;
        res.end(body);
      });
    });
    up.on('error', () => res.destroy());
    up.end();
  };

  beforeAll(async () => {
    registry = await startRegistry();
    const pusher = new RegistryClient();
    try {
      await pushSynthetic(pusher, `${registry.host}/lib/img`, 'v1');
    } finally {
      pusher.close();
    }
    // A storage host on another origin, as S3 is for a hosted registry's blobs.
    storage = http.createServer((req, res) => {
      storageAuthorizations.push(req.headers.authorization);
      proxy(req, res, storageMode);
    });
    const storageHost = await listen(storage);
    front = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', `http://${frontHost}`);
      if (url.pathname === '/token') {
        tokenRequests.push(url);
        if (req.headers.authorization !== `Basic ${Buffer.from('bob:builder').toString('base64')}`) return void res.writeHead(401).end();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: `tok-${tokenRequests.length}`, expires_in: 300 }));
        return;
      }
      const bearer = /^Bearer (tok-\d+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!bearer || revoked.has(bearer)) {
        const name = /^\/v2\/(.+?)\/(?:manifests|blobs)\//.exec(url.pathname)?.[1] ?? '';
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${frontHost}/token",service="berth-test",scope="repository:${name}:pull"` }).end();
        return;
      }
      if (url.pathname.includes('/blobs/')) return void res.writeHead(307, { location: `http://${storageHost}${url.pathname}` }).end();
      proxy(req, res, 'ok');
    });
    frontHost = await listen(front);
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    tokenRequests.length = 0;
    storageAuthorizations.length = 0;
    storageMode = 'ok';
    revoked.clear();
  });

  afterAll(async () => {
    front?.closeAllConnections();
    storage?.closeAllConnections();
    await Promise.all([front, storage].map((s) => new Promise((resolve) => (s ? s.close(resolve) : resolve(undefined)))));
    await registry?.stop();
  });

  it('fetches a token once per scope and follows blob redirects without leaking it', async () => {
    const c = client({ auth: { username: 'bob', password: 'builder' } });
    const name = `${frontHost}/lib/img`;
    expect((await c.resolve(`${name}:v1`)).digest).toBe(index.descriptor.digest);
    const image = await c.fetchImageManifest(`${name}:v1`, { os: 'linux', architecture: 'amd64' });
    expect(image.manifest.digest).toBe(amd64.manifest.descriptor.digest);
    expect((await c.fetchBlobBuffer(name, amd64.layer.descriptor)).equals(amd64.layer.bytes)).toBe(true);
    expect(tokenRequests).toHaveLength(1);
    expect(tokenRequests[0]!.searchParams.get('service')).toBe('berth-test');
    expect(tokenRequests[0]!.searchParams.get('scope')).toBe('repository:lib/img:pull');
    expect(storageAuthorizations).toEqual([undefined]);
  });

  it('fails a redirected blob whose bytes do not match its digest', async () => {
    storageMode = 'corrupt';
    const c = client({ auth: { username: 'bob', password: 'builder' } });
    await expect(c.fetchBlobBuffer(`${frontHost}/lib/img`, arm64.layer.descriptor)).rejects.toThrow(/content has digest/);
  });

  it('fails a blob whose connection drops halfway', async () => {
    storageMode = 'truncate';
    const c = client({ auth: { username: 'bob', password: 'builder' } });
    await expect(c.fetchBlobBuffer(`${frontHost}/lib/img`, arm64.layer.descriptor)).rejects.toMatchObject({ kind: 'io', message: expect.stringMatching(/connection broke off mid-blob/) });
  });

  it('asks for a new token when the registry refuses the cached one', async () => {
    const c = client({ auth: { username: 'bob', password: 'builder' } });
    await c.resolve(`${frontHost}/lib/img:v1`);
    revoked.add('tok-1');
    expect((await c.resolve(`${frontHost}/lib/img:v1`)).digest).toBe(index.descriptor.digest);
    expect(tokenRequests).toHaveLength(2);
  });

  it('reports credentials the token service refuses', async () => {
    await expect(client({ auth: { username: 'bob', password: 'nope' } }).resolve(`${frontHost}/lib/img:v1`)).rejects.toMatchObject({
      kind: 'failed-precondition',
      message: expect.stringContaining(`token service http://${frontHost} for ${frontHost} refused the credentials (HTTP 401)`),
    });
  });

  it('sends a registry token from the AuthConfig as it is', async () => {
    expect((await client({ auth: { registryToken: 'tok-7' } }).resolve(`${frontHost}/lib/img:v1`)).digest).toBe(index.descriptor.digest);
    expect(tokenRequests).toHaveLength(0);
  });
});
