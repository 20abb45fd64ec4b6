import { describe, expect, it } from 'vitest';
import {
  basicPair,
  credentialsFor,
  credentialsForEndpoint,
  fetchBearerToken,
  parseChallenge,
  parseChallenges,
  realmWithheldReason,
  repositoryScope,
  TokenCache,
  type Challenge,
  type TokenTransport,
} from '../../../../cri-shim/registry/auth.js';

describe('WWW-Authenticate challenges', () => {
  it('parses a Bearer challenge with realm, service and scope', () => {
    expect(parseChallenge('Bearer realm="https://auth.test/token",service="registry.test",scope="repository:a/b:pull"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.test/token', service: 'registry.test', scope: 'repository:a/b:pull' },
    });
  });

  it('parses Basic, bare values, spaces and escapes', () => {
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({ scheme: 'basic', params: { realm: 'Registry Realm' } });
    expect(parseChallenge('bearer  realm = https://a/t , service=reg')?.params).toEqual({ realm: 'https://a/t', service: 'reg' });
    expect(parseChallenge('Bearer realm="say \\"hi\\", ok"')?.params.realm).toBe('say "hi", ok');
  });

  it('reads several challenges in one header and prefers Bearer', () => {
    const header = 'Basic realm="r", Bearer realm="https://a/t",scope="repository:x:pull", Negotiate';
    expect(parseChallenges(header).map((c) => c.scheme)).toEqual(['basic', 'bearer']);
    expect(parseChallenge(header)?.params.scope).toBe('repository:x:pull');
    expect(parseChallenge(['Negotiate', 'Basic realm="r"'])?.scheme).toBe('basic');
  });

  it('ignores schemes it cannot answer', () => {
    expect(parseChallenge('Negotiate x')).toBeUndefined();
    expect(parseChallenge(undefined)).toBeUndefined();
    expect(parseChallenge('')).toBeUndefined();
  });
});

describe('where the credentials go', () => {
  const c = { username: 'u', password: 'p' };
  const server = { host: 'reg.test', mirror: false, sendCredentials: false };
  const mirror = { host: 'mirror.test', mirror: true, sendCredentials: false };

  it("to the registry's own server, to a mirror only when its hosts.toml table says so", () => {
    expect(credentialsForEndpoint(c, server, 'reg.test')).toEqual({ credentials: c });
    expect(credentialsForEndpoint(c, mirror, 'reg.test')).toEqual({ withheld: expect.stringContaining('not sent to its mirror mirror.test unless its hosts.toml table sets send_credentials = true') });
    expect(credentialsForEndpoint(c, { ...mirror, sendCredentials: true }, 'reg.test')).toEqual({ credentials: c });
    // A "mirror" that is the registry itself (Docker Hub's usual hosts.toml) is not a mirror.
    expect(credentialsForEndpoint(c, { ...mirror, host: 'registry-1.docker.io' }, 'docker.io')).toEqual({ credentials: c });
    expect(credentialsForEndpoint(undefined, server, 'reg.test')).toEqual({});
  });

  it('to the host a server address names: the endpoint or the registry of the reference', () => {
    const scoped = { ...c, serverAddress: 'reg.test' };
    expect(credentialsForEndpoint(scoped, { ...server, host: 'proxy.internal:5000' }, 'reg.test').credentials).toBe(scoped);
    expect(credentialsForEndpoint(scoped, { ...mirror, sendCredentials: true }, 'reg.test').credentials).toBe(scoped);
    expect(credentialsForEndpoint({ ...c, serverAddress: 'other.test' }, server, 'reg.test')).toEqual({ withheld: 'the credentials are for other.test, not reg.test' });
  });

  it("to a token realm only on the endpoint's own host name, a listed one, or Docker Hub's", () => {
    const e = { host: 'reg.test:5000', tokenRealmHosts: ['auth.corp.test'] };
    expect(realmWithheldReason(new URL('https://reg.test/token'), e)).toBeUndefined();
    expect(realmWithheldReason(new URL('https://REG.test:5001/token'), e)).toBeUndefined();
    expect(realmWithheldReason(new URL('https://auth.corp.test/token'), e)).toBeUndefined();
    expect(realmWithheldReason(new URL('https://auth.docker.io/token'), { host: 'registry-1.docker.io', tokenRealmHosts: [] })).toBeUndefined();
    expect(realmWithheldReason(new URL('https://evil.test/token'), e)).toBe(
      "the token realm https://evil.test is not on reg.test, so the credentials were not sent to it (list evil.test in token_realm_hosts of the registry's hosts.toml to allow it)",
    );
    expect(realmWithheldReason(new URL('https://auth.docker.io/token'), e)).toMatch(/not on reg.test/);
    expect(realmWithheldReason(new URL('https://reg.test.evil.test/token'), e)).toMatch(/not on reg.test/);
  });
});

describe('credentials', () => {
  it('takes username/password or the base64 auth field of the CRI AuthConfig', () => {
    const none = { username: '', password: '', auth: '', identityToken: '', registryToken: '' };
    expect(basicPair({ ...none, username: 'u', password: 'p' })).toEqual(['u', 'p']);
    expect(basicPair({ ...none, auth: Buffer.from('me:s3:cret').toString('base64') })).toEqual(['me', 's3:cret']);
    expect(basicPair(none)).toBeUndefined();
    expect(basicPair(undefined)).toBeUndefined();
    expect(() => basicPair({ auth: Buffer.from('nocolon').toString('base64') })).toThrow(/auth.auth/);
  });

  it('keeps credentials with a server address to that host (Docker Hub by any of its names)', () => {
    const c = { username: 'u', password: 'p' };
    expect(credentialsFor(c, 'any.host')).toBe(c);
    expect(credentialsFor({ ...c, serverAddress: 'https://reg.test:5000/v1/' }, 'reg.test:5000')?.username).toBe('u');
    expect(credentialsFor({ ...c, serverAddress: 'reg.test:5000' }, 'mirror.test')).toBeUndefined();
    expect(credentialsFor({ ...c, serverAddress: 'https://index.docker.io/v1/' }, 'registry-1.docker.io')?.username).toBe('u');
    expect(credentialsFor(undefined, 'h')).toBeUndefined();
  });

  it('names pull and push scopes', () => {
    expect(repositoryScope('lib/img')).toBe('repository:lib/img:pull');
    expect(repositoryScope('lib/img', true)).toBe('repository:lib/img:pull,push');
  });
});

describe('token cache', () => {
  it('keeps a token until shortly before it expires', () => {
    let now = 1_000_000;
    const cache = new TokenCache(() => now);
    cache.set('k', 't', 300);
    now += 289_000;
    expect(cache.get('k')).toBe('t');
    now += 2_000;
    expect(cache.get('k')).toBeUndefined();
  });

  it('counts from issued_at when the token service says when it issued it', () => {
    const now = 1_000_000;
    const cache = new TokenCache(() => now);
    cache.set('k', 't', 60, now - 60_000);
    expect(cache.get('k')).toBeUndefined();
  });
});

describe('bearer token fetch', () => {
  const challenge: Challenge = { scheme: 'bearer', params: { realm: 'https://auth.test/token', service: 'reg.test' } };

  function fakeTokenService(answer: (req: Parameters<TokenTransport>[0]) => { status: number; body: unknown }): { transport: TokenTransport; calls: Parameters<TokenTransport>[0][] } {
    const calls: Parameters<TokenTransport>[0][] = [];
    return {
      calls,
      transport: async (req) => {
        calls.push(req);
        const { status, body } = answer(req);
        return { status, body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)) };
      },
    };
  }

  it('GETs the realm with service, scope and Basic credentials, and caches the token per host and scope', async () => {
    const svc = fakeTokenService(() => ({ status: 200, body: { token: 'tok-1', expires_in: 300 } }));
    const cache = new TokenCache();
    const opts = { challenge, host: 'reg.test', scope: 'repository:a/b:pull', credentials: { username: 'u', password: 'p' }, transport: svc.transport, cache };
    expect(await fetchBearerToken(opts)).toBe('tok-1');
    expect(await fetchBearerToken(opts)).toBe('tok-1');
    expect(svc.calls).toHaveLength(1);
    const call = svc.calls[0]!;
    expect(call.method).toBe('GET');
    expect(call.url.searchParams.get('service')).toBe('reg.test');
    expect(call.url.searchParams.get('scope')).toBe('repository:a/b:pull');
    expect(call.headers.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    await fetchBearerToken({ ...opts, scope: 'repository:c/d:pull' });
    expect(svc.calls).toHaveLength(2);
  });

  it('uses the challenge scope and accepts access_token; anonymous requests carry no Authorization', async () => {
    const svc = fakeTokenService(() => ({ status: 200, body: { access_token: 'acc' } }));
    const token = await fetchBearerToken({
      challenge: { scheme: 'bearer', params: { ...challenge.params, scope: 'repository:x:pull' } },
      host: 'reg.test',
      scope: 'repository:y:pull',
      credentials: undefined,
      transport: svc.transport,
      cache: new TokenCache(),
    });
    expect(token).toBe('acc');
    expect(svc.calls[0]!.url.searchParams.get('scope')).toBe('repository:x:pull');
    expect(svc.calls[0]!.headers.authorization).toBeUndefined();
  });

  it('trades an identity token with an OAuth2 refresh-token POST', async () => {
    const svc = fakeTokenService(() => ({ status: 200, body: { access_token: 'from-refresh', expires_in: 60 } }));
    const token = await fetchBearerToken({ challenge, host: 'reg.test', scope: 'repository:a:pull', credentials: { identityToken: 'refresh-me' }, transport: svc.transport, cache: new TokenCache() });
    expect(token).toBe('from-refresh');
    const form = new URLSearchParams(svc.calls[0]!.body!.toString());
    expect(svc.calls[0]!.method).toBe('POST');
    expect(form.get('grant_type')).toBe('refresh_token');
    expect(form.get('refresh_token')).toBe('refresh-me');
    expect(form.get('service')).toBe('reg.test');
  });

  it('skips the cache when asked to refresh a refused token', async () => {
    let n = 0;
    const svc = fakeTokenService(() => ({ status: 200, body: { token: `t${++n}` } }));
    const opts = { challenge, host: 'h', scope: 's', credentials: undefined, transport: svc.transport, cache: new TokenCache() };
    expect(await fetchBearerToken(opts)).toBe('t1');
    expect(await fetchBearerToken(opts)).toBe('t1');
    expect(await fetchBearerToken({ ...opts, refresh: true })).toBe('t2');
    expect(await fetchBearerToken(opts)).toBe('t2');
  });

  it('sends a registry token as it is', async () => {
    const svc = fakeTokenService(() => ({ status: 500, body: '' }));
    expect(await fetchBearerToken({ challenge, host: 'h', scope: 's', credentials: { registryToken: 'given' }, transport: svc.transport, cache: new TokenCache() })).toBe('given');
    expect(svc.calls).toHaveLength(0);
  });

  it('reports refused credentials, a missing realm and a missing token clearly', async () => {
    const base = { host: 'reg.test', scope: 's', credentials: { username: 'u', password: 'bad' }, cache: new TokenCache() };
    await expect(fetchBearerToken({ ...base, challenge, transport: fakeTokenService(() => ({ status: 401, body: '' })).transport })).rejects.toThrow(
      /token service https:\/\/auth.test for reg.test refused the credentials \(HTTP 401\)/,
    );
    await expect(fetchBearerToken({ ...base, challenge: { scheme: 'bearer', params: {} }, transport: fakeTokenService(() => ({ status: 200, body: {} })).transport })).rejects.toThrow(/without a realm/);
    await expect(fetchBearerToken({ ...base, challenge, transport: fakeTokenService(() => ({ status: 200, body: { nothing: 1 } })).transport })).rejects.toThrow(/returned no token/);
    await expect(fetchBearerToken({ ...base, challenge, transport: fakeTokenService(() => ({ status: 200, body: 'not json' })).transport })).rejects.toThrow(/not JSON/);
    await expect(fetchBearerToken({ ...base, challenge, transport: fakeTokenService(() => ({ status: 503, body: '' })).transport })).rejects.toThrow(/HTTP 503/);
  });
});
