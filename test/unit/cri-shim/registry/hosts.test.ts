import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { endpointBase, endpointUrl, endpointsFor, hostsFileFor, parseHostsToml } from '../../../../cri-shim/registry/hosts.js';

describe('hosts.toml', () => {
  it('orders mirrors first in file order, then the server, with capabilities and paths', () => {
    const eps = parseHostsToml(
      `server = "https://registry.example.test"
[host."http://mirror.local:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
[host."https://other.mirror/custom/v2"]
  override_path = true
  ca = ["/a.crt", "/b.crt"]
  client = [["/c.crt", "/c.key"], ["/both.pem", ""]]
  [host."https://other.mirror/custom/v2".header]
    X-Token = "abc"
    x-multi = ["1", "2"]
[host."https://a.mirror"]
  client = "/etc/certs/client.pem"
`,
      'registry.example.test',
      '/etc/containerd/certs.d/registry.example.test/hosts.toml',
    );
    expect(eps.map(endpointBase)).toEqual(['http://mirror.local:5000/v2', 'https://other.mirror/custom/v2', 'https://a.mirror/v2', 'https://registry.example.test/v2']);
    expect(eps[0]).toMatchObject({ scheme: 'http', host: 'mirror.local:5000', pathPrefix: '/v2', capabilities: ['pull', 'resolve'], tls: { skipVerify: true }, mirror: true });
    expect(eps[1]).toMatchObject({
      pathPrefix: '/custom/v2',
      capabilities: ['pull', 'resolve', 'push'],
      tls: { skipVerify: false, caFiles: ['/a.crt', '/b.crt'], clientCerts: [{ cert: '/c.crt', key: '/c.key' }, { cert: '/both.pem' }] },
      headers: { 'x-token': ['abc'], 'x-multi': ['1', '2'] },
    });
    expect(eps[2]?.tls.clientCerts).toEqual([{ cert: '/etc/certs/client.pem' }]);
    expect(eps[3]).toMatchObject({ mirror: false, host: 'registry.example.test' });
  });

  it('override_path keeps a path without /v2; otherwise /v2 is appended once', () => {
    const eps = parseHostsToml('[host."https://m/proxy"]\n override_path = true\n[host."https://n/sub"]\n[host."https://o/v2"]\n', 'x.io', 'f');
    expect(eps.map((e) => e.pathPrefix)).toEqual(['/proxy', '/sub/v2', '/v2', '/v2']);
    expect(endpointUrl(eps[0]!, 'lib/a/manifests/v1').href).toBe('https://m/proxy/lib/a/manifests/v1');
  });

  it('applies top-level settings to the server, and to the registry itself without server', () => {
    const withServer = parseHostsToml('server = "http://127.0.0.1:5000"\ncapabilities = ["pull"]\nskip_verify = true\n', '127.0.0.1:5000', 'f');
    expect(withServer).toHaveLength(1);
    expect(withServer[0]).toMatchObject({ scheme: 'http', host: '127.0.0.1:5000', capabilities: ['pull'], tls: { skipVerify: true } });
    const noServer = parseHostsToml('ca = "/ca.pem"\n[host."https://m"]\n', 'quay.io', 'f');
    expect(noServer.map(endpointBase)).toEqual(['https://m/v2', 'https://quay.io/v2']);
    expect(noServer[1]?.tls.caFiles).toEqual(['/ca.pem']);
  });

  it('reads relative certificate paths from the hosts.toml directory', () => {
    const [e] = parseHostsToml('[host."https://m"]\n ca = "ca.crt"\n client = ["c.pem"]\n', 'x.io', '/etc/certs.d/x.io/hosts.toml');
    expect(e?.tls).toMatchObject({ caFiles: ['/etc/certs.d/x.io/ca.crt'], clientCerts: [{ cert: '/etc/certs.d/x.io/c.pem' }] });
  });

  it('defaults to https, docker.io to registry-1.docker.io, loopback registries to http', () => {
    expect(endpointsFor(undefined, 'docker.io').map(endpointBase)).toEqual(['https://registry-1.docker.io/v2']);
    expect(endpointsFor(undefined, 'quay.io').map(endpointBase)).toEqual(['https://quay.io/v2']);
    expect(endpointsFor(undefined, '127.0.0.1:5000').map(endpointBase)).toEqual(['http://127.0.0.1:5000/v2']);
    expect(endpointsFor(undefined, 'localhost:5000').map(endpointBase)).toEqual(['http://localhost:5000/v2']);
    const [hub] = parseHostsToml('[host."https://mirror.test"]\n', 'docker.io', 'f').slice(-1);
    expect(hub?.host).toBe('registry-1.docker.io');
  });

  it('allows plain http by default only to a host that names loopback, and then only to a loopback peer', () => {
    expect(endpointsFor(undefined, '127.evil.example:5000')[0]).toMatchObject({ scheme: 'https', requireLoopback: false });
    expect(endpointsFor(undefined, '[::1]:5000')[0]).toMatchObject({ scheme: 'http', requireLoopback: true });
    expect(endpointsFor(undefined, '127.0.0.2:5000')[0]).toMatchObject({ scheme: 'http', requireLoopback: true });
    expect(parseHostsToml('ca = "/ca.pem"\n', 'localhost:5000', 'f')[0]).toMatchObject({ scheme: 'http', requireLoopback: true });
    // http an operator wrote in hosts.toml is theirs to choose.
    expect(parseHostsToml('server = "http://reg.internal:5000"\n', 'reg.internal:5000', 'f')[0]).toMatchObject({ scheme: 'http', requireLoopback: false });
  });

  it('reads which mirrors get the credentials and which token realms may', () => {
    const eps = parseHostsToml(
      'server = "https://reg.test"\ntoken_realm_hosts = ["Auth.Reg.Test"]\n[host."https://m1"]\n[host."https://m2"]\n  send_credentials = true\n  token_realm_hosts = "auth.m2"\n',
      'reg.test',
      'f',
    );
    expect(eps.map((e) => [e.host, e.sendCredentials, e.tokenRealmHosts])).toEqual([
      ['m1', false, []],
      ['m2', true, ['auth.m2']],
      ['reg.test', false, ['auth.reg.test']],
    ]);
    // A mirror table for the server itself is the server: it gets the credentials.
    expect(parseHostsToml('server = "https://reg.test"\n[host."https://reg.test"]\n', 'reg.test', 'f')[0]).toMatchObject({ mirror: true, sendCredentials: true });
    expect(() => parseHostsToml('[host."https://m"]\n send_credentials = "yes"', 'x', 'f')).toThrow(/host."https:\/\/m".send_credentials: expected true or false/);
    expect(() => parseHostsToml('server = "https://x"\nsend_credentials = true', 'x', 'f')).toThrow(/f: server.send_credentials: applies to \[host/);
    expect(() => parseHostsToml('[host."https://m"]\n token_realm_hosts = ["https://a/b"]', 'x', 'f')).toThrow(/token_realm_hosts: "https:\/\/a\/b" is not a host name/);
  });

  it('a host URL without a scheme is https', () => {
    expect(parseHostsToml('[host."mirror:5000"]\n', 'x.io', 'f')[0]).toMatchObject({ scheme: 'https', host: 'mirror:5000' });
  });

  it('names the file and key of a bad setting', () => {
    const file = '/etc/x/hosts.toml';
    expect(() => parseHostsToml('[host."https://m"]\n capabilities = ["fly"]', 'x', file)).toThrow(/\/etc\/x\/hosts.toml: host."https:\/\/m".capabilities: unknown capability "fly"/);
    expect(() => parseHostsToml('server = 3', 'x', 'f')).toThrow(/f: server: expected a URL string/);
    expect(() => parseHostsToml('server = ', 'x', 'f')).toThrow(/f: not valid TOML/);
    expect(() => parseHostsToml('server = "ftp://x"', 'x', 'f')).toThrow(/f: server: scheme/);
    expect(() => parseHostsToml('[host."https://m"]\n skip_verify = "yes"', 'x', 'f')).toThrow(/host."https:\/\/m".skip_verify: expected true or false/);
    expect(() => parseHostsToml('[host."https://m"]\n override_path = 1', 'x', 'f')).toThrow(/override_path/);
    expect(() => parseHostsToml('[host."https://m"]\n ca = 5', 'x', 'f')).toThrow(/host."https:\/\/m".ca: expected a string/);
    expect(() => parseHostsToml('[host."https://m"]\n client = [["a", "b", "c"]]', 'x', 'f')).toThrow(/\.client: /);
    expect(() => parseHostsToml('[host."https://m"]\n header = "x"', 'x', 'f')).toThrow(/\.header: expected a table/);
    expect(() => parseHostsToml('[host."https://m".header]\n a = 1', 'x', 'f')).toThrow(/\.header\.a: /);
    expect(() => parseHostsToml('host = 1', 'x', 'f')).toThrow(/f: host: /);
    expect(() => parseHostsToml('[host."http://a b"]', 'x', 'f')).toThrow(/not a URL/);
    expect(() => parseHostsToml('server = 3', 'x', 'f')).toThrow(expect.objectContaining({ kind: 'invalid-config' }));
  });
});

describe('hosts directory', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('uses the host:port directory, then _default, then the registry itself', () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-hosts-'));
    mkdirSync(join(dir, 'reg.test:5000'));
    writeFileSync(join(dir, 'reg.test:5000', 'hosts.toml'), '[host."http://m1:1"]\n');
    expect(hostsFileFor(dir, 'reg.test:5000')).toBe(join(dir, 'reg.test:5000', 'hosts.toml'));
    expect(endpointsFor(dir, 'reg.test:5000').map(endpointBase)).toEqual(['http://m1:1/v2', 'https://reg.test:5000/v2']);
    expect(endpointsFor(dir, 'other.test').map(endpointBase)).toEqual(['https://other.test/v2']);
    mkdirSync(join(dir, '_default'));
    writeFileSync(join(dir, '_default', 'hosts.toml'), '[host."http://fallback:2"]\n  capabilities = ["pull"]\n');
    expect(endpointsFor(dir, 'other.test').map(endpointBase)).toEqual(['http://fallback:2/v2', 'https://other.test/v2']);
  });
});
