import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../../../cri-shim/registry/client.js';
import { sha256Digest } from '../../../../cri-shim/registry/verify.js';

// Where the pull's credentials go, seen from the servers that receive (or must not receive)
// them: fake registries, mirrors, token services and redirect targets on real sockets.

const manifestType = 'application/vnd.oci.image.manifest.v1+json';
const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: manifestType, config: {}, layers: [] }));
const creds = { username: 'u', password: 'p' };
const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;

interface Fake {
  host: string;
  /** The Authorization header of every request, in order (undefined when none was sent). */
  authorizations: (string | undefined)[];
  server: http.Server;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, fake: Fake) => void;

const servers: http.Server[] = [];
const dirs: string[] = [];
const clients: RegistryClient[] = [];

async function fake(handler: Handler, address = '127.0.0.1'): Promise<Fake> {
  const f: Fake = { host: '', authorizations: [], server: http.createServer() };
  f.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    f.authorizations.push(req.headers.authorization);
    handler(req, res, f);
  });
  await new Promise<void>((resolve) => f.server.listen(0, address, resolve));
  const port = (f.server.address() as AddressInfo).port;
  f.host = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  servers.push(f.server);
  return f;
}

/** A registry that wants Basic `u:p` and then serves the manifest. */
const basicRegistry: Handler = (req, res) => {
  if (req.headers.authorization !== basic) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
  res.writeHead(200, { 'content-type': manifestType, 'docker-content-digest': sha256Digest(manifest), 'content-length': manifest.length }).end(manifest);
};

function client(auth: typeof creds | undefined, hostsToml?: Record<string, string>): RegistryClient {
  let hostsDir: string | undefined;
  if (hostsToml) {
    hostsDir = mkdtempSync(join(tmpdir(), 'berth-hosts-'));
    dirs.push(hostsDir);
    for (const [host, text] of Object.entries(hostsToml)) {
      mkdirSync(join(hostsDir, host), { recursive: true });
      writeFileSync(join(hostsDir, host, 'hosts.toml'), text);
    }
  }
  const c = new RegistryClient({ ...(auth ? { auth } : {}), ...(hostsDir ? { hostsDir } : {}), timeoutMs: 5000 });
  clients.push(c);
  return c;
}

// An address of this machine that is not loopback: connections to it stay on the machine, but
// the socket's peer is not a loopback address.
const outside = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

describe('credentials over plain http', () => {
  it('go to a registry on a loopback address', async () => {
    const r = await fake(basicRegistry);
    expect((await client(creds).fetchManifest(`${r.host}/lib/img:v1`)).bytes.equals(manifest)).toBe(true);
    expect(r.authorizations).toEqual([undefined, basic]);
  });

  it('go to localhost, whose address is checked on the socket, not on its name', async () => {
    const r = await fake(basicRegistry);
    const port = r.host.split(':')[1];
    expect((await client(creds).fetchManifest(`localhost:${port}/lib/img:v1`)).digest).toBe(sha256Digest(manifest));
  });

  it.skipIf(!outside)('never go to a peer that is not loopback, and the request says why', async () => {
    const r = await fake(basicRegistry, outside);
    const c = client(creds, { 'upstream.test': `server = "http://${r.host}"\n` });
    await expect(c.fetchManifest('upstream.test/lib/img:v1')).rejects.toMatchObject({
      kind: 'failed-precondition',
      message: expect.stringContaining(`credentials are sent over plain http only to a loopback address: ${r.host} is at ${outside}, not a loopback address`),
    });
    expect(r.authorizations).toEqual([undefined]);
  });
});

describe('credentials and mirrors', () => {
  it('go to a mirror only when its hosts.toml table sets send_credentials', async () => {
    const plain = await fake(basicRegistry);
    const trusted = await fake(basicRegistry);
    const server = await fake(basicRegistry);
    const hosts = {
      'upstream.test': [`server = "http://${server.host}"`, `[host."http://${plain.host}"]`, `[host."http://${trusted.host}"]`, '  send_credentials = true', ''].join('\n'),
    };
    expect((await client(creds, hosts).fetchManifest('upstream.test/lib/img:v1')).digest).toBe(sha256Digest(manifest));
    expect(plain.authorizations).toEqual([undefined]);
    expect(trusted.authorizations).toEqual([undefined, basic]);
    expect(server.authorizations).toEqual([]);
  });

  it('say why when only a mirror could answer and it wanted them', async () => {
    const mirror = await fake(basicRegistry);
    const c = client(creds, { 'upstream.test': `server = "http://127.0.0.1:1"\n[host."http://${mirror.host}"]\n` });
    await expect(c.fetchManifest('upstream.test/lib/img:v1')).rejects.toThrow(/not sent to its mirror .* send_credentials = true/);
    expect(mirror.authorizations).toEqual([undefined]);
  });
});

describe('credentials and token realms', () => {
  async function tokenService(): Promise<Fake> {
    return fake((req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: req.headers.authorization === basic ? 'user-token' : 'anonymous' })), '127.0.0.2');
  }

  function bearerRegistry(realm: () => string): Handler {
    return (req, res) => {
      if (req.headers.authorization !== 'Bearer user-token') return void res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm()}",service="reg"` }).end();
      res.writeHead(200, { 'content-type': manifestType, 'docker-content-digest': sha256Digest(manifest) }).end(manifest);
    };
  }

  it('do not go to a realm on another host: the token is fetched without them', async () => {
    const tokens = await tokenService();
    const r = await fake(bearerRegistry(() => `http://${tokens.host}/token`));
    await expect(client(creds).fetchManifest(`${r.host}/lib/img:v1`)).rejects.toMatchObject({
      kind: 'failed-precondition',
      message: expect.stringContaining(`the token realm http://${tokens.host} is not on 127.0.0.1, so the credentials were not sent to it (list 127.0.0.2 in token_realm_hosts`),
    });
    expect(tokens.authorizations).toEqual([undefined]);
    expect(r.authorizations).toEqual([undefined, 'Bearer anonymous']);
  });

  it('go to a realm host that hosts.toml lists in token_realm_hosts', async () => {
    const tokens = await tokenService();
    const r = await fake(bearerRegistry(() => `http://${tokens.host}/token`));
    const c = client(creds, { [r.host]: `server = "http://${r.host}"\ntoken_realm_hosts = ["127.0.0.2"]\n` });
    expect((await c.fetchManifest(`${r.host}/lib/img:v1`)).digest).toBe(sha256Digest(manifest));
    expect(tokens.authorizations).toEqual([basic]);
  });
});

describe('credentials and redirects', () => {
  it('do not follow a redirect to another host', async () => {
    const other = await fake((_req, res) => void res.writeHead(401, { 'www-authenticate': 'Basic realm="other"' }).end(), '127.0.0.2');
    const r = await fake((req, res) => {
      if (req.headers.authorization !== basic) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
      res.writeHead(307, { location: `http://${other.host}${req.url}` }).end();
    });
    await expect(client(creds).fetchManifest(`${r.host}/lib/img:v1`)).rejects.toMatchObject({
      kind: 'failed-precondition',
      message: expect.stringContaining(`${other.host} denied GET /v2/lib/img/manifests/v1 (HTTP 401): credentials are not sent to ${other.host}, where ${r.host} redirected the request`),
    });
    expect(other.authorizations).toEqual([undefined]);
  });

  it('refuse a redirect to anything but http(s)', async () => {
    const r = await fake((_req, res) => void res.writeHead(302, { location: 'file:///etc/passwd' }).end());
    await expect(client(undefined).fetchManifest(`${r.host}/lib/img:v1`)).rejects.toThrow(`${r.host} redirected to "file:///etc/passwd", not an http or https URL`);
  });
});
