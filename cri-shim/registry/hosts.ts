import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { BerthError } from '../../lib/errors.js';
import { namesLoopback } from './loopback.js';

// Registry hosts configuration in containerd's `hosts.toml` format, one directory per registry
// host under the config dir (`<dir>/<host[:port]>/hosts.toml`, else `<dir>/_default/hosts.toml`):
// mirrors as `[host."<url>"]` tables tried in file order, then `server` (or the registry itself).

export type Capability = 'pull' | 'resolve' | 'push';

export interface EndpointTls {
  /** Do not verify the server certificate (hosts.toml `skip_verify`). */
  skipVerify: boolean;
  /** Extra CA files, trusted on top of the system roots. */
  caFiles: string[];
  /** Client certificates; `key` undefined means the key is in the cert file. */
  clientCerts: { cert: string; key?: string }[];
}

export interface RegistryEndpoint {
  scheme: 'http' | 'https';
  /** `host[:port]` */
  host: string;
  /** `/v2`, or the configured path as written when `override_path` is set. */
  pathPrefix: string;
  capabilities: Capability[];
  tls: EndpointTls;
  headers: Record<string, string[]>;
  /** True for a `[host."…"]` mirror, false for the registry's own server. */
  mirror: boolean;
  /**
   * berth's `send_credentials`: the pull's credentials also go to this mirror. They always go to
   * the registry's own server, and never to a mirror that does not say so.
   */
  sendCredentials: boolean;
  /**
   * berth's `token_realm_hosts`: hosts besides the endpoint's own that may receive the pull's
   * credentials when a Bearer challenge names them as the token realm.
   */
  tokenRealmHosts: string[];
  /**
   * Plain http was chosen only because the host names loopback: every connection must then
   * reach a loopback address (checked on the socket, transport.ts).
   */
  requireLoopback: boolean;
}

export const allCapabilities: readonly Capability[] = ['pull', 'resolve', 'push'];

/** `scheme://host/pathPrefix` of an endpoint, for messages and as a cache key. */
export function endpointBase(e: RegistryEndpoint): string {
  return `${e.scheme}://${e.host}${e.pathPrefix}`;
}

/** The URL of `suffix` (`library/busybox/manifests/latest`) under an endpoint. */
export function endpointUrl(e: RegistryEndpoint, suffix: string): URL {
  return new URL(`${e.scheme}://${e.host}${e.pathPrefix}/${suffix.replace(/^\/+/, '')}`);
}

function emptyTls(): EndpointTls {
  return { skipVerify: false, caFiles: [], clientCerts: [] };
}

/** The registry's own endpoint when no configuration says otherwise. */
export function defaultEndpoint(domain: string): RegistryEndpoint {
  const host = domain === 'docker.io' ? 'registry-1.docker.io' : domain;
  // Registries on loopback are spoken to over plain HTTP, as containerd does for localhost.
  const loopback = namesLoopback(host);
  return {
    scheme: loopback ? 'http' : 'https',
    host,
    pathPrefix: '/v2',
    capabilities: [...allCapabilities],
    tls: emptyTls(),
    headers: {},
    mirror: false,
    sendCredentials: false,
    tokenRealmHosts: [],
    requireLoopback: loopback,
  };
}

function configError(where: string, why: string): BerthError {
  return new BerthError('invalid-config', `${where}: ${why}`);
}

function stringList(value: unknown, where: string): string[] {
  if (value === undefined) return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  throw configError(where, 'expected a string or a list of strings');
}

function clientCerts(value: unknown, where: string, baseDir: string): { cert: string; key?: string }[] {
  const bad = (): BerthError => configError(where, 'expected a cert path, a list of paths, or [cert, key] pairs');
  if (value === undefined) return [];
  const one = (item: unknown): { cert: string; key?: string } => {
    if (typeof item === 'string' && item) return { cert: pathIn(baseDir, item) };
    if (Array.isArray(item) && item.length >= 1 && item.length <= 2 && item.every((v) => typeof v === 'string') && item[0]) {
      return item[1] ? { cert: pathIn(baseDir, item[0] as string), key: pathIn(baseDir, item[1] as string) } : { cert: pathIn(baseDir, item[0] as string) };
    }
    throw bad();
  };
  if (typeof value === 'string') return [one(value)];
  if (Array.isArray(value)) return value.map(one);
  throw bad();
}

// Relative certificate paths are read from the directory of the hosts.toml that names them.
function pathIn(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

function endpointFrom(urlText: string, table: Record<string, unknown>, where: string, mirror: boolean, baseDir: string): RegistryEndpoint {
  let url: URL;
  try {
    url = new URL(urlText.includes('://') ? urlText : `https://${urlText}`);
  } catch {
    throw configError(where, `"${urlText}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw configError(where, `scheme of "${urlText}" must be http or https`);
  if (url.search || url.hash || url.username) throw configError(where, `"${urlText}" must not carry a query, fragment or user`);
  if (table.override_path !== undefined && typeof table.override_path !== 'boolean') throw configError(`${where}.override_path`, 'expected true or false');
  if (table.skip_verify !== undefined && typeof table.skip_verify !== 'boolean') throw configError(`${where}.skip_verify`, 'expected true or false');
  if (table.send_credentials !== undefined && typeof table.send_credentials !== 'boolean') throw configError(`${where}.send_credentials`, 'expected true or false');
  if (table.send_credentials === true && !mirror) throw configError(`${where}.send_credentials`, 'applies to [host."…"] mirror tables (the server always gets the credentials)');
  const realmHosts = stringList(table.token_realm_hosts, `${where}.token_realm_hosts`);
  for (const h of realmHosts) if (!/^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/.test(h)) throw configError(`${where}.token_realm_hosts`, `"${h}" is not a host name (no scheme, port or path)`);
  const path = url.pathname.replace(/\/+$/, '');
  let pathPrefix: string;
  if (table.override_path === true) pathPrefix = path;
  else pathPrefix = path.endsWith('/v2') ? path : `${path}/v2`;
  const caps = stringList(table.capabilities, `${where}.capabilities`);
  for (const c of caps) if (!allCapabilities.includes(c as Capability)) throw configError(`${where}.capabilities`, `unknown capability "${c}" (pull, resolve, push)`);
  const headers: Record<string, string[]> = {};
  if (table.header !== undefined) {
    if (typeof table.header !== 'object' || table.header === null || Array.isArray(table.header)) throw configError(`${where}.header`, 'expected a table');
    for (const [k, v] of Object.entries(table.header)) headers[k.toLowerCase()] = stringList(v, `${where}.header.${k}`);
  }
  return {
    scheme: url.protocol === 'http:' ? 'http' : 'https',
    host: url.host,
    pathPrefix,
    capabilities: table.capabilities === undefined ? [...allCapabilities] : (caps as Capability[]),
    tls: {
      skipVerify: table.skip_verify === true,
      caFiles: stringList(table.ca, `${where}.ca`).map((p) => pathIn(baseDir, p)),
      clientCerts: clientCerts(table.client, `${where}.client`, baseDir),
    },
    headers,
    mirror,
    sendCredentials: table.send_credentials === true,
    tokenRealmHosts: realmHosts.map((h) => h.toLowerCase()),
    requireLoopback: false,
  };
}

/** Parse one hosts.toml text into the ordered endpoints for the registry `domain`. */
export function parseHostsToml(text: string, domain: string, source: string): RegistryEndpoint[] {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw configError(source, `not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  const baseDir = dirname(resolve(source));
  const endpoints: RegistryEndpoint[] = [];
  const hosts = doc.host;
  if (hosts !== undefined) {
    if (typeof hosts !== 'object' || hosts === null || Array.isArray(hosts)) throw configError(`${source}: host`, 'expected tables [host."<url>"]');
    // smol-toml keeps the file's key order, which is the order mirrors are tried in.
    for (const [url, table] of Object.entries(hosts as Record<string, unknown>)) {
      const where = `${source}: host."${url}"`;
      if (typeof table !== 'object' || table === null || Array.isArray(table)) throw configError(where, 'expected a table');
      endpoints.push(endpointFrom(url, table as Record<string, unknown>, where, true, baseDir));
    }
  }
  if (doc.server !== undefined) {
    if (typeof doc.server !== 'string') throw configError(`${source}: server`, 'expected a URL string');
    const server = endpointFrom(doc.server, doc, `${source}: server`, false, baseDir);
    // A mirror table for the server itself describes the same endpoint: keep the one entry, which
    // gets the credentials as the server would.
    const same = endpoints.find((e) => endpointBase(e) === endpointBase(server));
    if (same) same.sendCredentials = true;
    else endpoints.push(server);
  } else {
    const self = defaultEndpoint(domain);
    // Top-level settings without `server` still apply to the registry's own endpoint.
    endpoints.push({ ...endpointFrom(`${self.scheme}://${self.host}`, doc, source, false, baseDir), requireLoopback: self.requireLoopback });
  }
  return endpoints;
}

/** The hosts.toml that configures `domain`: its own directory first, then `_default`. */
export function hostsFileFor(configDir: string, domain: string): string | undefined {
  for (const dirName of [domain, '_default']) {
    const file = join(configDir, dirName, 'hosts.toml');
    if (existsSync(file)) return file;
  }
  return undefined;
}

/** The endpoints to try for a registry host, from the config dir (or the default). */
export function endpointsFor(configDir: string | undefined, domain: string): RegistryEndpoint[] {
  const file = configDir ? hostsFileFor(configDir, domain) : undefined;
  if (!file) return [defaultEndpoint(domain)];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BerthError('io', `${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseHostsToml(text, domain, file);
}
