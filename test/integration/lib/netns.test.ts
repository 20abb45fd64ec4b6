import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BerthError } from '../../../lib/errors.js';
import { connectInNetns, netnsExists, withNetns } from '../../../lib/netns.js';
import { readSysctl } from '../../../lib/sysctl.js';
import { isRoot, sh, TestWorld } from '../../../world/netns.js';

// withNetns moves only the calling thread, for the duration of a synchronous callback.

const ownNetns = () => readlinkSync('/proc/thread-self/ns/net');
const inodeOf = (path: string) => `net:[${statSync(path).ino}]`;

describe.skipIf(!isRoot)('withNetns', () => {
  const world = new TestWorld();
  afterEach(() => world.cleanup());

  it('runs the callback inside the namespace and returns its value', () => {
    const ns = world.netns('bt-ns-');
    const home = ownNetns();
    const seen = withNetns(ns.path, () => ownNetns());
    expect(seen).toBe(inodeOf(ns.path));
    expect(seen).not.toBe(home);
    expect(ownNetns()).toBe(home);
  });

  it('returns to the original namespace when the callback throws, and rethrows its error', () => {
    const ns = world.netns('bt-ns-');
    const home = ownNetns();
    const boom = new Error('boom');
    expect(() => withNetns(ns.path, () => { throw boom; })).toThrow(boom);
    expect(ownNetns()).toBe(home);
  });

  it('passes through a callback error that looks like a failed open', () => {
    const ns = world.netns('bt-ns-');
    const err = Object.assign(new Error('open x: ENOENT'), { code: 'ENOENT', syscall: 'open' });
    expect(() => withNetns(ns.path, () => { throw err; })).toThrow(err);
  });

  it('nests: an inner withNetns returns to the outer namespace', () => {
    const a = world.netns('bt-ns-');
    const b = world.netns('bt-ns-');
    const seen = withNetns(a.path, () => [ownNetns(), withNetns(b.path, () => ownNetns()), ownNetns()]);
    expect(seen).toEqual([inodeOf(a.path), inodeOf(b.path), inodeOf(a.path)]);
  });

  it('a missing namespace is a not-found BerthError naming the path', () => {
    const path = '/run/netns/bt-missing-namespace';
    let error: unknown;
    try { withNetns(path, () => 1); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(BerthError);
    expect((error as BerthError).kind).toBe('not-found');
    expect((error as BerthError).message).toContain(path);
  });

  it('a file that is not a namespace is refused, and the callback never runs', () => {
    let ran = false;
    expect(() => withNetns('/etc/hostname', () => { ran = true; })).toThrow(/\/etc\/hostname is not a network namespace/);
    expect(ran).toBe(false);
  });

  it('a FIFO given as the namespace is refused at once, not waited on for a writer', () => {
    // withNetns runs on the event loop: an open(2) that blocks would freeze the daemon.
    const dir = mkdtempSync(join(tmpdir(), 'bt-netns-'));
    try {
      const fifo = join(dir, 'netns');
      const writing = join(dir, 'writer-came');
      sh('mkfifo', [fifo]);
      // A writer that comes only after 3 s, and says so first: an open that waited for it
      // would return after the marker exists.
      const writer = spawn('sh', ['-c', `sleep 3; touch ${writing}; exec 3>${fifo}`], { stdio: 'ignore' });
      try {
        let ran = false;
        expect(() => withNetns(fifo, () => { ran = true; })).toThrow(`${fifo} is not a network namespace`);
        expect(existsSync(writing)).toBe(false);
        expect(ran).toBe(false);
      } finally {
        writer.kill('SIGKILL');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('/proc/sys/net reads inside the callback see the namespace', () => {
    const ns = world.netns('bt-ns-');
    world.inNetns(ns.name, 'sysctl', ['-qw', 'net.ipv4.ip_default_ttl=33']);
    expect(withNetns(ns.path, () => readSysctl('net.ipv4.ip_default_ttl'))).toBe('33');
    expect(readSysctl('net.ipv4.ip_default_ttl')).not.toBe('33');
  });

  it('netnsExists tells namespace files from other paths', () => {
    const ns = world.netns('bt-ns-');
    expect(netnsExists(ns.path)).toBe(true);
    expect(netnsExists('/proc/self/ns/net')).toBe(true);
    expect(netnsExists('/run/netns/bt-missing-namespace')).toBe(false);
    expect(netnsExists('/etc/hostname')).toBe(false);
  });
});

// connectInNetns reaches a server that listens on 127.0.0.1 inside another network namespace
// (what CRI port-forward does for a pod), and the host's namespace does not see that port. The
// connect never waits on a thread: the event loop watches it, up to its deadline.

describe.skipIf(!isRoot)('TCP connections into a network namespace', () => {
  const world = new TestWorld();
  let ns: { name: string; path: string };
  let server: ChildProcess | undefined;
  const port = 18931;
  // Inside the namespace, SYNs to this port are dropped: a connect to it never completes.
  const droppedPort = 18932;

  beforeAll(async () => {
    ns = world.netns('bc-');
    sh('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
    world.inNetns(ns.name, 'iptables', ['-I', 'INPUT', '-p', 'tcp', '--dport', String(droppedPort), '-j', 'DROP']);
    // An echo server that answers "<what you sent>" once per connection, inside the namespace.
    const script = `import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", ${port})); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept(); d = c.recv(65536); c.sendall(b"echo:" + d); c.close()`;
    server = spawn('nsenter', [`--net=${ns.path}`, 'python3', '-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once('data', () => resolve());
      server!.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
    });
  });

  afterAll(() => {
    server?.kill('SIGKILL');
    world.cleanup();
  });

  it("connects to the namespace's localhost and exchanges data", async () => {
    const sock = await connectInNetns(ns.path, port, { timeoutMs: 2000 });
    const reply = await new Promise<string>((resolve, reject) => {
      let out = '';
      sock.on('data', (d: Buffer) => (out += d.toString()));
      sock.on('end', () => resolve(out));
      sock.on('error', reject);
      sock.write('ping');
    });
    expect(reply).toBe('echo:ping');
  });

  it('reports a closed port as ECONNREFUSED at once, and the host namespace does not see the pod port', async () => {
    const t0 = performance.now();
    await expect(connectInNetns(ns.path, port + 100, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(connectInNetns(undefined, port, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('gives up on a port that drops SYNs at the deadline, while the event loop and the threadpool stay free', async () => {
    // A timer that should fire every 5 ms: the longest gap between two firings is how long the
    // loop was held. The old connect polled on the JS thread, so ten of these froze it for 10 s.
    let last = performance.now();
    let longestGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
    }, 5);
    try {
      const t0 = performance.now();
      const connects = Array.from({ length: 10 }, () => connectInNetns(ns.path, droppedPort, { timeoutMs: 1000 }).then(
        () => 'connected',
        (err: NodeJS.ErrnoException) => ({ code: err.code, ms: performance.now() - t0 }),
      ));
      // fs work goes through libuv's 4 threads; it must not queue behind the connects.
      const fsStart = performance.now();
      for (let i = 0; i < 8; i++) await stat('/');
      const fsMs = performance.now() - fsStart;
      const results = await Promise.all(connects);
      for (const r of results) {
        expect(r).toMatchObject({ code: 'ETIMEDOUT' });
        const { ms } = r as { ms: number };
        expect(ms).toBeGreaterThanOrEqual(950);
        expect(ms).toBeLessThan(2500);
      }
      expect(fsMs).toBeLessThan(200);
      expect(longestGap).toBeLessThan(200);
    } finally {
      clearInterval(ticker);
    }
  });

  it('a missing namespace is a not-found BerthError naming the path', async () => {
    const path = '/run/netns/bt-missing-namespace';
    const error = await connectInNetns(path, port, { timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BerthError);
    expect((error as BerthError).kind).toBe('not-found');
    expect((error as BerthError).message).toContain(path);
  });
});
