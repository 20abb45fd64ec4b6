import { readFileSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { basicHeader, basicPair, credentialsForEndpoint, fetchBearerToken, parseChallenge, realmWithheldReason, TokenCache, tokenRealm, type Credentials } from './auth.js';
import { endpointBase, endpointUrl, type RegistryEndpoint } from './hosts.js';
import { isLoopbackAddress } from './loopback.js';

// HTTP to one registry endpoint: keep-alive agents carrying the endpoint's TLS settings, a 401
// answered once with Basic or a Bearer token, and redirects followed (blob GETs often go to a
// storage host, which must not see the registry's Authorization header). Where credentials may
// go is decided in auth.ts; that they cross plain http only to a loopback peer, here, on the
// connected socket, since only the socket knows the address a name resolved to.

export const userAgent = 'berth-cri/0.1';
const maxRedirects = 8;

export interface RegistryRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH';
  /** A path under the endpoint (`lib/img/manifests/v1`) or an absolute URL (upload locations). */
  path: string | URL;
  /** The token scope, `repository:lib/img:pull`. */
  scope: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** The registry the image reference names: the credentials are given for it. */
  domain: string;
}

interface Authorization {
  header: string;
  /** Made from the pull's credentials (not an anonymous token): plain http only to loopback. */
  credentialed: boolean;
}

const plainHttpCredentials = 'credentials are sent over plain http only to a loopback address';

/** A status the caller did not accept, with what the registry said about it. */
export class RegistryHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RegistryHttpError';
  }
}

/**
 * A whole response body of at most `limit` bytes: the first byte past it drops the connection
 * and fails with `tooLong` (nothing more is read or kept).
 */
export function readBody(res: IncomingMessage, limit: number, what: string, tooLong = `response larger than ${limit} bytes`): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let settled = false;
    // The first failure is the one to report: dropping the connection also emits 'aborted'.
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    res.on('data', (b: Buffer) => {
      if (settled) return;
      size += b.length;
      if (size > limit) {
        fail(new BerthError('resource-exhausted', `${what}: ${tooLong}`));
        res.destroy();
        return;
      }
      parts.push(b);
    });
    res.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(parts));
    });
    res.on('error', fail);
    res.on('aborted', () => fail(new BerthError('io', `${what}: connection closed mid-response`)));
  });
}

/** The registry's own explanation from an error body (`{"errors":[{"code","message"}]}`). */
export async function errorDetail(res: IncomingMessage): Promise<string> {
  try {
    const body = await readBody(res, 64 * 1024, 'error body');
    const doc = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const first = doc.errors?.[0];
    return first ? `${first.code ?? ''}${first.message ? `: ${first.message}` : ''}` : '';
  } catch {
    return '';
  }
}

/** Where a redirect leads; only to http(s). */
function redirectTarget(from: URL, location: string): URL {
  let to: URL;
  try {
    to = new URL(location, from);
  } catch {
    throw new BerthError('not-available', `${from.host} redirected to "${location}", which is not a URL`);
  }
  if (to.protocol !== 'http:' && to.protocol !== 'https:') throw new BerthError('not-available', `${from.host} redirected to "${location}", not an http or https URL`);
  return to;
}

export class RegistryTransport {
  private readonly agents = new Map<string, http.Agent>();
  /** Authorization header values by `base|scope` (Bearer) or `base` (Basic). */
  private readonly authorizations = new Map<string, Authorization>();
  /** Why an endpoint (by base) did not get the credentials, for the error when it then refuses. */
  private readonly withheld = new Map<string, string>();
  readonly tokens = new TokenCache();

  constructor(
    private readonly credentials: Credentials | undefined,
    private readonly timeoutMs: number,
  ) {}

  /** One agent per TLS setting, so connections are reused across requests and pulls. */
  agentFor(scheme: 'http' | 'https', tls: RegistryEndpoint['tls']): http.Agent {
    const key = `${scheme}|${tls.skipVerify}|${tls.caFiles.join(',')}|${tls.clientCerts.map((c) => `${c.cert}+${c.key ?? ''}`).join(',')}`;
    let agent = this.agents.get(key);
    if (agent) return agent;
    if (scheme === 'http') agent = new http.Agent({ keepAlive: true });
    else {
      const read = (file: string, what: string): Buffer => {
        try {
          return readFileSync(file);
        } catch (err) {
          throw new BerthError('invalid-config', `${what} "${file}": ${errorMessage(err)}`, { cause: err });
        }
      };
      // Node's `ca` replaces the system roots; hosts.toml `ca` adds to them, as in containerd.
      const ca = tls.caFiles.length ? [...rootCertificates, ...tls.caFiles.map((f) => read(f, 'ca'))] : undefined;
      const certs = tls.clientCerts.map((c) => ({ cert: read(c.cert, 'client cert'), key: read(c.key ?? c.cert, 'client key') }));
      agent = new https.Agent({
        keepAlive: true,
        rejectUnauthorized: !tls.skipVerify,
        ...(ca ? { ca } : {}),
        ...(certs.length ? { cert: certs.map((c) => c.cert), key: certs.map((c) => c.key) } : {}),
      });
    }
    this.agents.set(key, agent);
    return agent;
  }

  /**
   * One HTTP exchange; the response body is left for the caller to read or discard. With
   * `loopbackOnly` (the reason), nothing is written until the socket's peer is known to be a
   * loopback address: headers leave with end().
   */
  raw(url: URL, method: string, headers: Record<string, string>, agent: http.Agent, body?: Buffer, loopbackOnly?: string): Promise<IncomingMessage> {
    const lib = url.protocol === 'https:' ? https : http;
    const allHeaders = { 'user-agent': userAgent, ...headers, ...(body ? { 'content-length': String(body.length) } : {}) };
    return new Promise((resolve, reject) => {
      const req = lib.request(url, { method, headers: allHeaders, agent, timeout: this.timeoutMs }, resolve);
      req.on('timeout', () => req.destroy(new BerthError('deadline-exceeded', `no answer from ${url.host} in ${this.timeoutMs} ms`)));
      req.on('error', reject);
      if (!loopbackOnly) return void req.end(body);
      req.once('socket', (socket) => {
        const send = (): void => {
          const peer = socket.remoteAddress;
          if (peer && isLoopbackAddress(peer)) return void req.end(body);
          req.destroy(new BerthError('failed-precondition', `${loopbackOnly}: ${url.host} is at ${peer ?? 'an unknown address'}, not a loopback address`));
        };
        if (socket.connecting) socket.once('connect', send);
        else send();
      });
    });
  }

  /**
   * A request to one endpoint with auth and redirects handled. Returns any final response
   * (the caller judges the status) except 401/403, which become a RegistryHttpError.
   */
  async request(e: RegistryEndpoint, r: RegistryRequest): Promise<IncomingMessage> {
    const base = endpointBase(e);
    const origin = `${e.scheme}://${e.host}`;
    let url = typeof r.path === 'string' ? endpointUrl(e, r.path) : r.path;
    let method = r.method;
    let body = r.body;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(e.headers)) headers[k] = v.join(', ');
    Object.assign(headers, r.headers);
    let answered = false;
    for (let hop = 0; hop <= maxRedirects; hop++) {
      const sameOrigin = url.origin === origin;
      const sent = { ...headers };
      const auth = sameOrigin ? (this.authorizations.get(`${base}|${r.scope}`) ?? this.authorizations.get(base)) : undefined;
      if (auth) sent.authorization = auth.header;
      // Redirect targets keep the endpoint's TLS trust, as containerd's one http.Client does.
      const plain = url.protocol === 'http:';
      const agent = this.agentFor(plain ? 'http' : 'https', e.tls);
      const loopbackOnly = !plain ? undefined : auth?.credentialed ? plainHttpCredentials : sameOrigin && e.requireLoopback ? `${e.host} is spoken to over plain http only because it names loopback` : undefined;
      const res = await this.raw(url, method, sent, agent, body, loopbackOnly);
      const status = res.statusCode ?? 0;
      if (status === 401 && sameOrigin && !answered) {
        res.resume();
        await this.answer(e, r, res.headers['www-authenticate'], sent.authorization?.startsWith('Bearer ') === true);
        answered = true;
        hop--;
        continue;
      }
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        url = redirectTarget(url, res.headers.location);
        if (status === 303) {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      if (status === 401 || status === 403) {
        const detail = await errorDetail(res);
        const why = !sameOrigin
          ? `credentials are not sent to ${url.host}, where ${e.host} redirected the request`
          : (this.withheld.get(base) ?? (auth?.credentialed ? 'the credentials were refused' : 'no credentials were given for this host'));
        throw new RegistryHttpError(status, `${url.host} denied ${r.method} ${url.pathname} (HTTP ${status}${detail ? `, ${detail}` : ''}): ${why}`);
      }
      return res;
    }
    throw new RegistryHttpError(508, `${e.host}: more than ${maxRedirects} redirects for ${url.pathname}`);
  }

  private async answer(e: RegistryEndpoint, r: RegistryRequest, header: string | string[] | undefined, tokenRefused: boolean): Promise<void> {
    const base = endpointBase(e);
    const { credentials, withheld } = credentialsForEndpoint(this.credentials, e, r.domain);
    if (withheld) this.withheld.set(base, withheld);
    const challenge = parseChallenge(header);
    if (!challenge) throw new RegistryHttpError(401, `${e.host}: unauthorized, and no Basic or Bearer challenge to answer`);
    if (challenge.scheme === 'basic') {
      const pair = basicPair(credentials);
      if (!pair) throw new RegistryHttpError(401, `${e.host} requires credentials (Basic auth): ${withheld ?? 'none were given'}`);
      this.authorizations.set(base, { header: basicHeader(pair), credentialed: true });
      return;
    }
    // A registry token from the request goes to the registry itself, never to the realm.
    let tokenCredentials = credentials;
    if (credentials && !credentials.registryToken) {
      const why = realmWithheldReason(tokenRealm(challenge, e.host), e);
      if (why) {
        tokenCredentials = undefined;
        this.withheld.set(base, why);
      }
    }
    const token = await fetchBearerToken({
      challenge,
      host: e.host,
      scope: r.scope,
      credentials: tokenCredentials,
      cache: this.tokens,
      refresh: tokenRefused,
      transport: async (t) => {
        const plain = t.url.protocol === 'http:';
        const res = await this.raw(t.url, t.method, t.headers, this.agentFor(plain ? 'http' : 'https', e.tls), t.body, plain && tokenCredentials ? plainHttpCredentials : undefined);
        return { status: res.statusCode ?? 0, body: await readBody(res, 1 << 20, `token from ${t.url.origin}`) };
      },
    });
    this.authorizations.set(`${base}|${r.scope}`, { header: `Bearer ${token}`, credentialed: tokenCredentials !== undefined });
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
