import { BerthError } from '../../lib/errors.js';
import type { RegistryEndpoint } from './hosts.js';
import { hostnameOf } from './loopback.js';

// Registry authentication: parse WWW-Authenticate challenges, answer Basic with the pull
// credentials, and trade them for a Bearer token at the realm the registry names (the
// distribution token protocol). Tokens are cached per (host, scope) until they expire.
//
// Where the credentials may go is narrower than containerd's docker resolver, which offers the
// request's credentials to every host of hosts.toml, mirrors included, and to any token realm a
// challenge names: here they go to the registry's own server, to a mirror only with
// `send_credentials = true`, to a token realm only on the endpoint's own host name (or one listed
// in `token_realm_hosts`, and Docker Hub's auth.docker.io), and over plain http only to a
// loopback peer (transport.ts checks the socket).

/** The CRI AuthConfig fields that matter for a pull (all optional, empty means unset). */
export interface Credentials {
  username?: string;
  password?: string;
  /** base64 of "username:password" */
  auth?: string;
  /** An OAuth2 refresh token, traded at the realm for an access token. */
  identityToken?: string;
  /** A bearer token to send as is. */
  registryToken?: string;
  /** When set, the credentials are only for this registry host (CRI AuthConfig.server_address). */
  serverAddress?: string;
}

// Docker Hub goes by several names; the API host is the one requests actually go to.
function canonicalHost(host: string): string {
  const h = host.toLowerCase();
  return h === 'docker.io' || h === 'index.docker.io' ? 'registry-1.docker.io' : h;
}

/**
 * The credentials to offer `host` (`host[:port]` of the endpoint being called): all of them when
 * no server address is given, none when the server address names another host, as containerd's CRI.
 */
export function credentialsFor(c: Credentials | undefined, host: string): Credentials | undefined {
  if (!c?.serverAddress) return c;
  let address = c.serverAddress;
  if (!address.includes('://')) address = `https://${address}`;
  let named: string;
  try {
    named = new URL(address).host;
  } catch {
    return undefined;
  }
  return canonicalHost(named) === canonicalHost(host) ? c : undefined;
}

/** What an endpoint of registry `domain` may receive: the credentials, or why they are withheld. */
export interface EndpointCredentials {
  credentials?: Credentials;
  withheld?: string;
}

/**
 * The credentials for one endpoint of the registry `domain`: the registry's own server gets them
 * (when the server address, if any, names it), a mirror only when hosts.toml says so.
 */
export function credentialsForEndpoint(c: Credentials | undefined, e: Pick<RegistryEndpoint, 'host' | 'mirror' | 'sendCredentials'>, domain: string): EndpointCredentials {
  if (!c) return {};
  const ownHost = canonicalHost(e.host) === canonicalHost(domain);
  if (e.mirror && !e.sendCredentials && !ownHost) {
    return { withheld: `credentials for ${domain} are not sent to its mirror ${e.host} unless its hosts.toml table sets send_credentials = true` };
  }
  // A server address names the registry the credentials are for: the reference's, or this host.
  const forHost = credentialsFor(c, e.host) ?? credentialsFor(c, domain);
  if (!forHost) return { withheld: `the credentials are for ${c.serverAddress}, not ${e.host}` };
  return { credentials: forHost };
}

// Docker Hub's registry hands out tokens from another host; that pair is known, others are listed
// in hosts.toml (`token_realm_hosts`).
const knownRealmHosts: Record<string, string[]> = { 'registry-1.docker.io': ['auth.docker.io'] };

/** Why a token realm may not receive the credentials of endpoint `e`, or undefined when it may. */
export function realmWithheldReason(realm: URL, e: Pick<RegistryEndpoint, 'host' | 'tokenRealmHosts'>): string | undefined {
  const realmHost = hostnameOf(realm.host).toLowerCase();
  const own = hostnameOf(e.host).toLowerCase();
  if (realmHost === own || e.tokenRealmHosts.includes(realmHost) || knownRealmHosts[canonicalHost(own)]?.includes(realmHost)) return undefined;
  return `the token realm ${realm.origin} is not on ${own}, so the credentials were not sent to it (list ${realmHost} in token_realm_hosts of the registry's hosts.toml to allow it)`;
}

/** The realm URL of a Bearer challenge, checked to be http(s). */
export function tokenRealm(challenge: Challenge, host: string): URL {
  const realm = challenge.params.realm;
  if (!realm) throw new BerthError('not-available', `registry ${host} asked for a bearer token without a realm`);
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new BerthError('not-available', `registry ${host}: token realm "${realm}" is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new BerthError('not-available', `registry ${host}: token realm "${realm}" is not an http or https URL`);
  return url;
}

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Every Basic or Bearer challenge in a WWW-Authenticate value, in order (others are skipped). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const values = Array.isArray(header) ? header : [header];
  const out: Challenge[] = [];
  for (const value of values) {
    let current: Challenge | { scheme: string; params: Record<string, string> } | undefined;
    const flush = (): void => {
      if (current && (current.scheme === 'basic' || current.scheme === 'bearer')) out.push(current as Challenge);
    };
    // RFC 7235: a scheme token, then comma-separated name=value pairs (quoted or bare values);
    // a token without "=" starts the next challenge.
    let i = 0;
    while (i < value.length) {
      while (i < value.length && /[\s,]/.test(value[i]!)) i++;
      const start = i;
      while (i < value.length && !/[\s,=]/.test(value[i]!)) i++;
      const token = value.slice(start, i);
      if (!token) {
        i++;
        continue;
      }
      let j = i;
      while (j < value.length && value[j] === ' ') j++;
      if (value[j] !== '=') {
        flush();
        current = { scheme: token.toLowerCase(), params: {} };
        continue;
      }
      j++;
      while (j < value.length && value[j] === ' ') j++;
      let param = '';
      if (value[j] === '"') {
        for (j++; j < value.length && value[j] !== '"'; j++) param += value[j] === '\\' ? (value[++j] ?? '') : value[j];
        j++;
      } else {
        const vs = j;
        while (j < value.length && !/[\s,]/.test(value[j]!)) j++;
        param = value.slice(vs, j);
      }
      if (current) current.params[token.toLowerCase()] = param;
      i = j;
    }
    flush();
  }
  return out;
}

/** The challenge to answer: Bearer when offered (it carries the scope), else Basic. */
export function parseChallenge(header: string | string[] | undefined): Challenge | undefined {
  const all = parseChallenges(header);
  return all.find((c) => c.scheme === 'bearer') ?? all[0];
}

/** username:password from the CRI AuthConfig (`auth` is base64 of "user:pass"). */
export function basicPair(c: Credentials | undefined): [string, string] | undefined {
  if (!c) return undefined;
  if (c.username || c.password) return [c.username ?? '', c.password ?? ''];
  if (c.auth) {
    const text = Buffer.from(c.auth, 'base64').toString('utf8');
    const i = text.indexOf(':');
    if (i === -1) throw new BerthError('invalid-argument', 'auth.auth: expected base64 of "username:password"');
    return [text.slice(0, i), text.slice(i + 1)];
  }
  return undefined;
}

export function basicHeader(pair: [string, string]): string {
  return `Basic ${Buffer.from(`${pair[0]}:${pair[1]}`).toString('base64')}`;
}

/** `repository:NAME:pull` (or `pull,push`), the scope a registry asks tokens for. */
export function repositoryScope(path: string, push = false): string {
  return `repository:${path}:${push ? 'pull,push' : 'pull'}`;
}

/** The HTTP exchange the token fetch needs; the registry client supplies its own agents. */
export type TokenTransport = (req: { method: 'GET' | 'POST'; url: URL; headers: Record<string, string>; body?: Buffer }) => Promise<{ status: number; body: Buffer }>;

/** Tokens by (host, scope, user), each kept until shortly before it expires. */
export class TokenCache {
  private readonly entries = new Map<string, { token: string; expires: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  get(key: string): string | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.token;
  }

  set(key: string, token: string, expiresInSeconds: number, issuedAt?: number): void {
    const start = issuedAt !== undefined && issuedAt <= this.now() ? issuedAt : this.now();
    // Renew a little early so a token never expires between the cache and the registry.
    const margin = Math.min(10, expiresInSeconds / 10);
    this.entries.set(key, { token, expires: start + (expiresInSeconds - margin) * 1000 });
  }

  clear(): void {
    this.entries.clear();
  }
}

export const defaultTokenExpirySeconds = 60;

interface TokenResponse {
  token?: unknown;
  access_token?: unknown;
  expires_in?: unknown;
  issued_at?: unknown;
}

/**
 * A bearer token for `scope` from the challenge's realm: GET with Basic credentials (or none),
 * or an OAuth2 refresh-token POST when the credentials carry an identity token.
 */
export async function fetchBearerToken(opts: {
  challenge: Challenge;
  host: string;
  scope: string;
  credentials: Credentials | undefined;
  transport: TokenTransport;
  cache: TokenCache;
  /** Skip the cache: the registry just refused the cached token. */
  refresh?: boolean;
}): Promise<string> {
  const { challenge, credentials, transport, cache } = opts;
  if (credentials?.registryToken) return credentials.registryToken;
  const url = tokenRealm(challenge, opts.host);
  const scope = challenge.params.scope || opts.scope;
  const service = challenge.params.service;
  const pair = credentials?.identityToken ? undefined : basicPair(credentials);
  const key = `${opts.host}|${scope}|${pair?.[0] ?? ''}|${credentials?.identityToken ? 'identity' : ''}`;
  const cached = opts.refresh ? undefined : cache.get(key);
  if (cached) return cached;

  let res: { status: number; body: Buffer };
  if (credentials?.identityToken) {
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credentials.identityToken, client_id: 'berth', scope });
    if (service) form.set('service', service);
    res = await transport({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from(form.toString()) });
  } else {
    if (service) url.searchParams.set('service', service);
    url.searchParams.set('scope', scope);
    res = await transport({ method: 'GET', url, headers: pair ? { authorization: basicHeader(pair) } : {} });
  }
  if (res.status === 401 || res.status === 403) {
    throw new BerthError('failed-precondition', `token service ${url.origin} for ${opts.host} refused the credentials (HTTP ${res.status}): check the pull credentials`);
  }
  if (res.status !== 200) throw new BerthError('not-available', `token service ${url.origin} for ${opts.host} answered HTTP ${res.status}`);
  let body: TokenResponse;
  try {
    body = JSON.parse(res.body.toString('utf8')) as TokenResponse;
  } catch {
    throw new BerthError('not-available', `token service ${url.origin} for ${opts.host} answered something that is not JSON`);
  }
  const token = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' ? body.access_token : '';
  if (!token) throw new BerthError('not-available', `token service ${url.origin} for ${opts.host} returned no token`);
  const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : defaultTokenExpirySeconds;
  const issued = typeof body.issued_at === 'string' ? Date.parse(body.issued_at) : NaN;
  cache.set(key, token, expiresIn, Number.isNaN(issued) ? undefined : issued);
  return token;
}
