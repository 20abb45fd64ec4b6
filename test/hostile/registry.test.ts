import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthConfig } from '../../proto/gen/runtime/v1/api.js';
import { CriWorld, imageSpec } from '../../world/cri.js';
import { underAttack, type AttackReport } from '../../world/hostile.js';
import { isRoot } from '../../world/netns.js';

// A hostile registry, written here on node:http, pulled from through berth-cri's PullImage: it
// lies about sizes, streams without end, names a path where a digest belongs, and tries to get
// the pull's credentials to another host (its token realm, a redirect, a mirror). berth-cri must
// refuse each with a message that says what was wrong, stay up, keep its memory and keep
// answering Version while it happens.

const ociIndex = 'application/vnd.oci.image.index.v1+json';
const ociManifest = 'application/vnd.oci.image.manifest.v1+json';
const ociConfig = 'application/vnd.oci.image.config.v1+json';
const ociLayer = 'application/vnd.oci.image.layer.v1.tar';
const oneGiB = 1 << 30;
const user = { username: 'berth', password: 'not-for-others' };
const basic = `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`;

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const json = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc));

interface Seen {
  host: string;
  method: string;
  path: string;
  authorization?: string;
}

interface HostileServer {
  host: string;
  server: http.Server;
}

/** Everything the hostile servers were asked, and the bytes of each endless stream they sent. */
const seen: Seen[] = [];
const streamed: number[] = [];

function listen(address: string, handle: (req: http.IncomingMessage, res: http.ServerResponse, path: string) => void): Promise<HostileServer> {
  const server = http.createServer((req, res) => {
    const path = req.url ?? '';
    seen.push({ host: `${address}:${(server.address() as AddressInfo).port}`, method: req.method ?? '', path, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    handle(req, res, path);
  });
  return new Promise((resolve) => server.listen(0, address, () => resolve({ host: `${address}:${(server.address() as AddressInfo).port}`, server })));
}

/** Send `total` bytes of filler, as fast as the client reads, until it hangs up (pipeline stops then). */
function endless(res: http.ServerResponse, total = oneGiB): void {
  const chunk = Buffer.alloc(256 * 1024, 0x20);
  const at = streamed.push(0) - 1;
  const chunks = function* (): Generator<Buffer> {
    for (; streamed[at]! < total; streamed[at]! += chunk.length) yield chunk;
  };
  pipeline(Readable.from(chunks()), res, () => undefined);
}

function manifestAnswer(req: http.IncomingMessage, res: http.ServerResponse, bytes: Buffer, mediaType: string): void {
  res.writeHead(200, { 'content-type': mediaType, 'content-length': bytes.length, 'docker-content-digest': digestOf(bytes) });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

// The documents the hostile registry serves, one repository per attack.
const config = json({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${'1'.repeat(64)}`] } });
const layerDigest = `sha256:${'2'.repeat(64)}`;
const endlessConfigDigest = `sha256:${'3'.repeat(64)}`;
const platforms = ['amd64', 'arm64', 'arm', 'ppc64le', 's390x', 'riscv64'].map((architecture) => ({ os: 'linux', architecture }));
const documents: Record<string, { bytes: Buffer; mediaType: string }> = {
  // A config descriptor without a size, whose blob never ends.
  'bogus-size': { mediaType: ociManifest, bytes: json({ schemaVersion: 2, mediaType: ociManifest, config: { mediaType: ociConfig, digest: endlessConfigDigest }, layers: [] }) },
  // An index entry that is 5 GB.
  'bogus-index': { mediaType: ociIndex, bytes: json({ schemaVersion: 2, mediaType: ociIndex, manifests: platforms.map((platform) => ({ mediaType: ociManifest, digest: `sha256:${'4'.repeat(64)}`, size: 5e9, platform })) }) },
  // A layer of 1 KiB by its descriptor, served without end.
  'long-blob': {
    mediaType: ociManifest,
    bytes: json({ schemaVersion: 2, mediaType: ociManifest, config: { mediaType: ociConfig, digest: digestOf(config), size: config.length }, layers: [{ mediaType: ociLayer, digest: layerDigest, size: 1024 }] }),
  },
  // An index whose entries name a path instead of a digest.
  traversal: { mediaType: ociIndex, bytes: json({ schemaVersion: 2, mediaType: ociIndex, manifests: platforms.map((platform) => ({ mediaType: ociManifest, digest: '../../../../etc/passwd', size: 100, platform })) }) },
};

describe.skipIf(!isRoot)('berth-cri pulling from a hostile registry', () => {
  let world: CriWorld;
  let evil: HostileServer;
  /** Another host (127.0.0.2): the token realm, the redirect target and the real server a mirror stands in for. */
  let elsewhere: HostileServer;

  beforeAll(async () => {
    elsewhere = await listen('127.0.0.2', (req, res, path) => {
      if (path.startsWith('/token')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'anonymous' }));
      if (req.headers.authorization !== basic) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="elsewhere"' }).end();
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
    });
    evil = await listen('127.0.0.1', (req, res, path) => {
      const m = /^\/v2\/evil\/([^/]+)\/(manifests|blobs)\/(.+)$/.exec(path);
      const [name, kind, target] = m ? [m[1]!, m[2]!, m[3]!] : ['', '', ''];
      if (name === 'realm') return void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${elsewhere.host}/token",service="evil"` }).end();
      if (name === 'redirect' || name === 'mirror') {
        if (name === 'mirror' || req.headers.authorization !== basic) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="evil"' }).end();
        return void res.writeHead(307, { location: `http://${elsewhere.host}${path}` }).end();
      }
      if (name === 'huge-manifest') {
        if (req.method === 'HEAD') return void res.writeHead(405).end();
        res.writeHead(200, { 'content-type': ociManifest });
        return endless(res);
      }
      const doc = documents[name];
      if (kind === 'manifests' && doc && (target === '1' || target === digestOf(doc.bytes))) return manifestAnswer(req, res, doc.bytes, doc.mediaType);
      if (kind === 'blobs' && target === digestOf(config)) return void res.writeHead(200, { 'content-length': config.length }).end(config);
      if (kind === 'blobs' && (target === layerDigest || target === endlessConfigDigest)) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        return endless(res);
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
    });
    world = await CriWorld.start({
      hostsToml: { 'mirrored.example.test': `server = "http://${elsewhere.host}"\n[host."http://${evil.host}"]\n  capabilities = ["pull", "resolve"]\n` },
    });
  }, 120_000);

  afterAll(async () => {
    await world?.stop();
    for (const s of [evil, elsewhere]) {
      s?.server.closeAllConnections();
      await new Promise((resolve) => (s ? s.server.close(resolve) : resolve(undefined)));
    }
  });

  /** Pull `ref` (with `auth`) while the attack is measured; the error it failed with. */
  async function attack(ref: string, auth?: AuthConfig): Promise<{ err: ServiceError; report: AttackReport }> {
    let err: ServiceError | undefined;
    const report = await underAttack({ pid: world.cri.child.pid!, probe: () => world.runtime.version({ version: '' }) }, async () => {
      err = await world.images.pullImage({ image: imageSpec(ref), auth, sandboxConfig: undefined }).then(
        () => undefined,
        (e: ServiceError) => e,
      );
    });
    if (!err) throw new Error(`pulling ${ref} from the hostile registry succeeded`);
    return { err, report };
  }

  function expectSurvived(report: AttackReport): void {
    expect(report.alive).toBe(true);
    expect(report.rssGrowthMiB).toBeLessThan(64);
    expect(report.slowestProbeMs).toBeLessThan(500);
    expect(report.failedProbes).toBe(0);
  }

  const auth = (): AuthConfig => ({ ...user, auth: '', serverAddress: '', identityToken: '', registryToken: '' });

  /** `server` was asked for a path containing `part`, and never with an Authorization header. */
  function expectAskedWithoutCredentials(server: HostileServer, part: string): void {
    const asked = seen.filter((s) => s.host === server.host && s.path.includes(part));
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.filter((s) => s.authorization)).toEqual([]);
  }

  it('refuses a config descriptor without a size instead of reading its endless blob', async () => {
    streamed.length = 0;
    const { err, report } = await attack(`${evil.host}/evil/bogus-size:1`);
    expectSurvived(report);
    expect(err.code).toBe(grpcStatus.INVALID_ARGUMENT);
    expect(err.details).toMatch(/config\.size: missing/);
    expect(seen.some((s) => s.path.includes(endlessConfigDigest))).toBe(false);
  });

  it('refuses an index entry of 5 GB before fetching it', async () => {
    const { err, report } = await attack(`${evil.host}/evil/bogus-index:1`);
    expectSurvived(report);
    expect(err.code).toBe(grpcStatus.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/manifests\[0\]\.size: 5000000000 bytes is over the 4194304-byte limit for manifests \(maxManifestSize\)/);
  });

  it('stops reading a manifest that never ends at the manifest limit', async () => {
    streamed.length = 0;
    const { err, report } = await attack(`${evil.host}/evil/huge-manifest:1`);
    expectSurvived(report);
    expect(err.code).toBe(grpcStatus.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/manifest 1 of .*huge-manifest.*: body over the 4194304-byte limit for manifests \(maxManifestSize\)/);
    expect(Math.max(...streamed)).toBeLessThan(64 << 20);
  });

  it('cuts off a layer longer than its descriptor says', async () => {
    streamed.length = 0;
    const { err, report } = await attack(`${evil.host}/evil/long-blob:1`);
    expectSurvived(report);
    expect(err.code).toBe(grpcStatus.INTERNAL);
    expect(err.details).toMatch(new RegExp(`blob ${layerDigest} .*: more than the 1024 bytes its descriptor says`));
    expect(Math.max(...streamed)).toBeLessThan(64 << 20);
  });

  it('refuses an index entry whose digest is a path, without requesting it', async () => {
    const { err, report } = await attack(`${evil.host}/evil/traversal:1`);
    expectSurvived(report);
    expect(err.code).toBe(grpcStatus.INVALID_ARGUMENT);
    expect(err.details).toMatch(/manifests\[0\]\.digest: digest "\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" is not sha256/);
    expect(seen.filter((s) => s.path.includes('passwd') || s.path.includes('..'))).toEqual([]);
  });

  it('does not send the credentials to a token realm on another host', async () => {
    const { err, report } = await attack(`${evil.host}/evil/realm:1`, auth());
    expectSurvived(report);
    expectAskedWithoutCredentials(elsewhere, '/token');
    expect(err.code).toBe(grpcStatus.FAILED_PRECONDITION);
    expect(err.details).toContain(`the token realm http://${elsewhere.host} is not on 127.0.0.1, so the credentials were not sent to it`);
  });

  it('does not send the credentials where a redirect leads', async () => {
    const { err, report } = await attack(`${evil.host}/evil/redirect:1`, auth());
    expectSurvived(report);
    expectAskedWithoutCredentials(elsewhere, '/evil/redirect/');
    expect(err.code).toBe(grpcStatus.FAILED_PRECONDITION);
    expect(err.details).toContain(`credentials are not sent to ${elsewhere.host}, where ${evil.host} redirected the request`);
  });

  it('sends the credentials to the registry but not to its mirror', async () => {
    const { err, report } = await attack('mirrored.example.test/evil/mirror:1', auth());
    expectSurvived(report);
    expectAskedWithoutCredentials(evil, '/evil/mirror/');
    expect(err.code).toBe(grpcStatus.NOT_FOUND);
    expect(seen.some((s) => s.host === elsewhere.host && s.path.includes('/evil/mirror/') && s.authorization === basic)).toBe(true);
  });
});
