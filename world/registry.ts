import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// A real local OCI registry for tests: Debian's docker-registry (distribution 2.8) with its own
// config, storage directory and free port on 127.0.0.1, optionally behind htpasswd and TLS. The
// Debian package's own service (if it runs) is not ours and is left alone.

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  /** The self-signed certificate the registry serves, when started with `tls`. */
  caFile?: string;
  dir: string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  htpasswd?: { user: string; password: string };
  tls?: boolean;
  /** The address to listen on (default 127.0.0.1), e.g. a veth's host end that a node box can reach. */
  address?: string;
}

const registryBinary = '/usr/bin/docker-registry';

export function freePort(address = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, address, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

let checked: string | undefined | null = null;

/** Why registry tests cannot run here (installing docker-registry first if root), or undefined. */
export function registrySkipReason(): string | undefined {
  if (checked !== null) return checked;
  if (process.getuid?.() !== 0) checked = 'registry tests need root (they may install docker-registry and bind local ports)';
  else if (!existsSync(registryBinary)) {
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'docker-registry'], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    // The package's own service is not ours; keep it from holding port 5000.
    spawnSync('systemctl', ['disable', '--now', 'docker-registry'], { stdio: 'ignore' });
    if (!existsSync(registryBinary)) checked = `docker-registry is not installed and apt-get could not install it: ${(r.stderr || r.error?.message || '').trim().slice(-300)}`;
  }
  checked ??= undefined;
  if (checked) console.log(`skipping registry tests: ${checked}`);
  return checked;
}

/** A bcrypt htpasswd line (distribution's htpasswd auth only takes bcrypt). */
export function htpasswdLine(user: string, password: string): string {
  if (has('htpasswd')) {
    const r = spawnSync('htpasswd', ['-nbB', '-C', '5', user, password], { encoding: 'utf8' });
    if (r.status === 0) return r.stdout.trim();
  }
  // Python's crypt module uses libcrypt, which makes $2b$ hashes on Debian.
  const py = spawnSync('python3', ['-c', 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32)))', password], { encoding: 'utf8' });
  if (py.status === 0 && py.stdout.startsWith('$2')) return `${user}:${py.stdout.trim()}`;
  throw new Error('no bcrypt tool for htpasswd: install apache2-utils (htpasswd -B)');
}

/** Why htpasswd-protected registries cannot be started here, or undefined. */
export function htpasswdSkipReason(): string | undefined {
  try {
    htpasswdLine('probe', 'probe');
    return undefined;
  } catch (err) {
    const reason = (err as Error).message;
    console.log(`skipping registry auth tests: ${reason}`);
    return reason;
  }
}

function selfSignedCert(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'registry.crt');
  const key = join(dir, 'registry.key');
  const r = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl could not make a test certificate: ${r.stderr}`);
  return { cert, key };
}

function probe(url: string, ca: Buffer | undefined): Promise<number> {
  return new Promise((resolve) => {
    const answered = (res: http.IncomingMessage): void => {
      res.resume();
      resolve(res.statusCode ?? 0);
    };
    const req = url.startsWith('https:') ? https.get(url, { ca, agent: false }, answered) : http.get(url, { agent: false }, answered);
    req.on('error', () => resolve(0));
    req.setTimeout(1000, () => req.destroy());
  });
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-registry-'));
  const address = opts.address ?? '127.0.0.1';
  const port = await freePort(address);
  const host = `${address}:${port}`;
  const config = ['version: 0.1', 'log:', '  level: warn', '  accesslog:', '    disabled: true', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`, '  delete:', '    enabled: true', 'http:', `  addr: ${host}`];
  let caFile: string | undefined;
  try {
    if (opts.tls) {
      const { cert, key } = selfSignedCert(dir);
      caFile = cert;
      config.push('  tls:', `    certificate: ${cert}`, `    key: ${key}`);
    }
    if (opts.htpasswd) {
      writeFileSync(join(dir, 'htpasswd'), `${htpasswdLine(opts.htpasswd.user, opts.htpasswd.password)}\n`);
      config.push('auth:', '  htpasswd:', '    realm: berth-test', `    path: ${join(dir, 'htpasswd')}`);
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  writeFileSync(join(dir, 'config.yml'), `${config.join('\n')}\n`);
  const logFile = join(dir, 'registry.log');
  const log = openSync(logFile, 'a');
  const child = spawn(registryBinary, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', log, log] });
  closeSync(log);
  let exited = false;
  child.on('exit', () => (exited = true));
  child.on('error', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (!exited && child.pid) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([gone, sleep(3000)]);
      if (!exited) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const ca = caFile ? readFileSync(caFile) : undefined;
  const url = `${opts.tls ? 'https' : 'http'}://${host}/v2/`;
  for (let i = 0; i < 200 && !exited; i++) {
    // 401 is the answer of a registry that wants credentials: it is up.
    const code = await probe(url, ca);
    if (code === 200 || (opts.htpasswd && code === 401)) return { host, ...(caFile ? { caFile } : {}), dir, stop };
    await sleep(50);
  }
  const output = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-2000) : '';
  await stop();
  throw new Error(`docker-registry did not start on ${host}:\n${output}`);
}
