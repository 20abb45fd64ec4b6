import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runDaemon, type Daemon, type DaemonHost, type DaemonProgram } from '../../../lib/daemon.js';
import { berthVersion } from '../../../lib/version.js';

/** A process without a process: signals are sent by the test, exits and notifications recorded. */
class FakeHost implements DaemonHost {
  argv: string[] = [];
  readonly notified: string[] = [];
  readonly exits: number[] = [];
  /** Signals that found no listener: a real process would have taken the default action (ended). */
  readonly defaultActions: NodeJS.Signals[] = [];
  stdout = '';
  stderr = '';
  private readonly listeners = new Map<NodeJS.Signals, Set<() => void>>();

  onSignal(signal: NodeJS.Signals, listener: () => void): () => void {
    const set = this.listeners.get(signal) ?? new Set();
    this.listeners.set(signal, set.add(listener));
    return () => void set.delete(listener);
  }
  rejectionListener?: (reason: unknown) => void;
  onUnhandledRejection(listener: (reason: unknown) => void): void {
    this.rejectionListener = listener;
  }
  notify(state: string): void {
    this.notified.push(state);
  }
  watchdogs = 0;
  startWatchdog(): () => void {
    this.watchdogs++;
    return () => void this.watchdogs--;
  }
  write(stream: 'stdout' | 'stderr', text: string): void {
    this[stream] += text;
  }
  exit(code: number): void {
    this.exits.push(code);
  }
  send(signal: NodeJS.Signals): void {
    const set = this.listeners.get(signal);
    if (!set?.size) this.defaultActions.push(signal);
    else for (const listener of [...set]) listener();
  }
  listening(signal: NodeJS.Signals): boolean {
    return (this.listeners.get(signal)?.size ?? 0) > 0;
  }
}

/** A promise the test resolves or rejects when it chooses. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const settle = () => new Promise((r) => setImmediate(r));

/** A daemon whose serve() is `serve`, with arguments parsed as the fixture's are. */
function program(serve: (config: object, daemon: Daemon) => Promise<void>, extra: Partial<DaemonProgram<object>> = {}): DaemonProgram<object> {
  return {
    name: 'berth-test',
    usage: 'usage: berth-test [--help]\n',
    parseArgs: (argv) => {
      if (argv[0] === '--help') return 'help';
      if (argv[0] === '--version') return 'version';
      if (argv.length) throw new Error(`unknown argument ${argv[0]}`);
      return {};
    },
    serve,
    ...extra,
  };
}

/** Start a daemon on a fake host whose close is `close`; resolves once it is serving. */
async function serving(close: () => Promise<void> | void, options = {}): Promise<{ host: FakeHost; daemon: Daemon }> {
  const host = new FakeHost();
  let daemon!: Daemon;
  await runDaemon(
    program(async (_config, d) => {
      daemon = d;
      d.logger('silent');
      d.onStop(close, options);
      d.ready();
    }),
    host,
  );
  return { host, daemon };
}

describe('runDaemon: arguments and failures', () => {
  it('--help writes the usage to stdout and serves nothing', async () => {
    const host = new FakeHost();
    host.argv = ['--help'];
    const serve = vi.fn(async () => undefined);
    await runDaemon(program(serve), host);
    expect(host.stdout).toBe('usage: berth-test [--help]\n');
    expect(serve).not.toHaveBeenCalled();
    expect(host.exits).toEqual([]);
  });

  it('--version writes "NAME VERSION": the suite version, or the program\'s own', async () => {
    const host = new FakeHost();
    host.argv = ['--version'];
    await runDaemon(program(async () => undefined), host);
    await runDaemon(program(async () => undefined, { version: 'abc123' }), host);
    expect(host.stdout).toBe(`berth-test ${berthVersion}\nberth-test abc123\n`);
  });

  it('an argument error is "NAME: message" on stderr and exit 1, with nothing told to systemd', async () => {
    const host = new FakeHost();
    host.argv = ['--bogus'];
    await runDaemon(program(async () => undefined), host);
    expect(host.stderr).toBe('berth-test: unknown argument --bogus\n');
    expect(host.exits).toEqual([1]);
    expect(host.notified).toEqual([]);
  });

  it('a serve that throws before onStop exits 1 with its message', async () => {
    const host = new FakeHost();
    await runDaemon(program(async () => { throw new Error('socket in use'); }), host);
    expect(host.stderr).toBe('berth-test: socket in use\n');
    expect(host.exits).toEqual([1]);
    expect(host.notified).toEqual([]);
  });

  it('a serve that throws after onStop is closed first, then exits 1 with the serve\'s message', async () => {
    const host = new FakeHost();
    const close = vi.fn(async () => { throw new Error('close failed too'); });
    await runDaemon(program(async (_c, d) => {
      d.onStop(close);
      throw new Error('the store refused the lease');
    }), host);
    expect(close).toHaveBeenCalledTimes(1);
    expect(host.stderr).toBe('berth-test: the store refused the lease\n');
    expect(host.exits).toEqual([1]);
  });
});

describe('Daemon: stopping', () => {
  it('says READY=1 when serving; SIGTERM says STOPPING=1, runs close, and exits 0 only once close is done', async () => {
    const closing = deferred();
    const close = vi.fn(() => closing.promise);
    const { host } = await serving(close);
    expect(host.notified).toEqual(['READY=1']);
    host.send('SIGTERM');
    await settle();
    expect(host.notified).toEqual(['READY=1', 'STOPPING=1']);
    expect(close).toHaveBeenCalledTimes(1);
    expect(host.exits).toEqual([]);
    closing.resolve();
    await settle();
    expect(host.exits).toEqual([0]);
    expect(host.stderr).toBe('');
  });

  it('a second signal while closing does not close again: it takes the default action, which ends the process', async () => {
    const closing = deferred();
    const close = vi.fn(() => closing.promise);
    const { host } = await serving(close);
    host.send('SIGINT');
    host.send('SIGTERM');
    host.send('SIGINT');
    await settle();
    expect(close).toHaveBeenCalledTimes(1);
    expect(host.defaultActions).toEqual(['SIGTERM', 'SIGINT']);
    closing.resolve();
    await settle();
    expect(host.exits).toEqual([0]);
  });

  it('with ignoreRepeatedSignals, later signals are ignored and the stop ends with exit 0', async () => {
    const closing = deferred();
    const close = vi.fn(() => closing.promise);
    const { host } = await serving(close, { ignoreRepeatedSignals: true });
    host.send('SIGTERM');
    host.send('SIGTERM');
    host.send('SIGINT');
    expect(host.defaultActions).toEqual([]);
    expect(host.listening('SIGTERM') && host.listening('SIGINT')).toBe(true);
    closing.resolve();
    await settle();
    expect(close).toHaveBeenCalledTimes(1);
    expect(host.notified.filter((s) => s === 'STOPPING=1')).toHaveLength(1);
    expect(host.exits).toEqual([0]);
  });

  it('a close that throws exits 1 with "NAME: message"', async () => {
    const { host } = await serving(() => { throw new Error('journal is busy'); });
    host.send('SIGTERM');
    await settle();
    expect(host.stderr).toBe('berth-test: journal is busy\n');
    expect(host.exits).toEqual([1]);
  });

  it('stop(1), a daemon giving up, closes once and exits 1; a signal meanwhile does not close again', async () => {
    const closing = deferred();
    const close = vi.fn(() => closing.promise);
    const { host, daemon } = await serving(close);
    const stopped = daemon.stop(1);
    host.send('SIGTERM');
    await settle();
    expect(close).toHaveBeenCalledTimes(1);
    expect(host.notified).toEqual(['READY=1', 'STOPPING=1']);
    closing.resolve();
    await stopped;
    expect(host.exits).toEqual([1]);
    expect(host.stderr).toBe('');
  });

  it('a failure while a stop is under way is taken for its consequence: the stop ends with its own exit code', async () => {
    const host = new FakeHost();
    const starting = deferred();
    const finished = runDaemon(program(async (_c, d) => {
      d.logger('silent');
      d.onStop(() => starting.reject(new Error('start aborted: stopping')));
      await starting.promise;
      d.ready();
    }), host);
    await settle();
    host.send('SIGTERM');
    await finished;
    expect(host.exits).toEqual([0]);
    expect(host.stderr).toBe('');
    expect(host.notified).toEqual(['STOPPING=1']);
  });

  it('exits once per stop even when closing resolves after further signals', async () => {
    const { host } = await serving(async () => undefined, { ignoreRepeatedSignals: true });
    host.send('SIGTERM');
    await settle();
    host.send('SIGTERM');
    await settle();
    expect(host.exits).toEqual([0]);
  });
});

describe('Daemon: SIGHUP reload', () => {
  async function withReload(reload: () => Promise<void>, close: () => Promise<void> | void = () => undefined) {
    const host = new FakeHost();
    await runDaemon(program(async (_c, d) => {
      d.logger('silent');
      d.onReload(reload);
      d.onStop(close);
      d.ready();
    }), host);
    return host;
  }

  it('without onReload, SIGHUP is left to its default action', async () => {
    const { host } = await serving(() => undefined);
    expect(host.listening('SIGHUP')).toBe(false);
  });

  it('runs reloads one at a time, in order', async () => {
    const first = deferred();
    const order: string[] = [];
    let n = 0;
    const host = await withReload(async () => {
      const i = ++n;
      order.push(`start ${i}`);
      if (i === 1) await first.promise;
      order.push(`end ${i}`);
    });
    host.send('SIGHUP');
    host.send('SIGHUP');
    await settle();
    expect(order).toEqual(['start 1']);
    first.resolve();
    await settle();
    expect(order).toEqual(['start 1', 'end 1', 'start 2', 'end 2']);
  });

  it('a stop waits for the reload under way before closing, and a SIGHUP while stopping is ignored', async () => {
    const reloading = deferred();
    const events: string[] = [];
    let reloads = 0;
    const host = await withReload(async () => {
      reloads++;
      await reloading.promise;
      events.push('reloaded');
    }, () => void events.push('closed'));
    host.send('SIGHUP');
    await settle();
    host.send('SIGTERM');
    host.send('SIGHUP');
    await settle();
    expect(events).toEqual([]);
    reloading.resolve();
    await settle();
    expect(events).toEqual(['reloaded', 'closed']);
    expect(reloads).toBe(1);
    expect(host.exits).toEqual([0]);
  });

  it('a reload that throws is fatal: the daemon closes and exits 1 with the message', async () => {
    const close = vi.fn();
    const host = await withReload(async () => { throw new Error('cannot register with kubelet'); }, close);
    host.send('SIGHUP');
    await vi.waitFor(() => expect(host.exits).toEqual([1]));
    expect(close).toHaveBeenCalledTimes(1);
    expect(host.stderr).toBe('berth-test: cannot register with kubelet\n');
  });
});

describe('runDaemon and rejections nobody handled', () => {
  it('logs them through the daemon logger, or on stderr before there is one, and never exits', async () => {
    const host = new FakeHost();
    await runDaemon(program(async () => undefined), host);
    host.rejectionListener!(new Error('lost promise'));
    expect(host.stderr).toBe('berth-test: unhandled promise rejection; carrying on: lost promise\n');
    expect(host.exits).toEqual([]);
  });
});

// The same helper in a real process: real signals, a real systemd-notify.
const fixture = fileURLToPath(new URL('./daemon-fixture.ts', import.meta.url));
const hasCommand = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

interface LogLine {
  msg: string;
  signal?: string;
  err?: string;
}

class FixtureProcess {
  readonly proc: ChildProcess;
  readonly log: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(bundle: string, env: NodeJS.ProcessEnv, args: string[] = []) {
    this.proc = spawn(process.execPath, [bundle, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => this.log.push(line.startsWith('{') ? (JSON.parse(line) as LogLine) : { msg: line }));
    this.proc.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  count(msg: string): number {
    return this.log.filter((l) => l.msg === msg).length;
  }

  async waitForLog(msg: string): Promise<void> {
    await vi.waitFor(() => expect(this.count(msg)).toBeGreaterThan(0), { timeout: 10_000, interval: 20 });
  }
}

describe('a daemon process using runDaemon', () => {
  let dir = '';
  let bundle = '';
  const running: ChildProcess[] = [];
  const start = (env: NodeJS.ProcessEnv, args: string[] = []) => {
    const p = new FixtureProcess(bundle, { PATH: process.env.PATH, ...env }, args);
    running.push(p.proc);
    return p;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-daemon-test-'));
    bundle = join(dir, 'fixture.cjs');
    await build({ entryPoints: [fixture], outfile: bundle, bundle: true, platform: 'node', target: 'node24', format: 'cjs', logLevel: 'error' });
    // A systemd-notify that records its arguments, to see when the daemon runs it.
    writeFileSync(join(dir, 'systemd-notify'), '#!/bin/sh\necho "$*" >> "$NOTIFY_RECORD"\n');
    chmodSync(join(dir, 'systemd-notify'), 0o755);
  });
  afterEach(() => {
    for (const p of running.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('answers --version and reports a bad argument as "NAME: message", exit 1', async () => {
    const version = start({}, ['--version']);
    expect(await version.exited).toEqual({ code: 0, signal: null });
    expect(version.log.map((l) => l.msg)).toEqual([`berth-fixture ${berthVersion}`]);
    const bad = start({}, ['--bogus']);
    expect(await bad.exited).toEqual({ code: 1, signal: null });
    expect(bad.stderr).toBe('berth-fixture: unknown argument --bogus\n');
  });

  it('SIGTERM logs "stopping", closes once and exits 0', async () => {
    const d = start({ FIXTURE_CLOSE_MS: '100' });
    await d.waitForLog('serving');
    d.proc.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(d.log.filter((l) => l.msg === 'stopping')).toMatchObject([{ signal: 'SIGTERM' }]);
    expect([d.count('closing'), d.count('closed')]).toEqual([1, 1]);
  });

  it('a second SIGTERM while closing ends the process at once, without closing again', async () => {
    const d = start({ FIXTURE_CLOSE_MS: '20000' });
    await d.waitForLog('serving');
    d.proc.kill('SIGTERM');
    await d.waitForLog('closing');
    d.proc.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: null, signal: 'SIGTERM' });
    expect([d.count('closing'), d.count('closed')]).toEqual([1, 0]);
  });

  it('with ignoreRepeatedSignals, SIGTERM and SIGINT while closing are ignored: closed once, exit 0', async () => {
    const d = start({ FIXTURE_CLOSE_MS: '500', FIXTURE_IGNORE_REPEATS: '1' });
    await d.waitForLog('serving');
    d.proc.kill('SIGTERM');
    await d.waitForLog('closing');
    d.proc.kill('SIGTERM');
    d.proc.kill('SIGINT');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect([d.count('closing'), d.count('closed'), d.count('already stopping')]).toEqual([1, 1, 2]);
  });

  it('under systemd (NOTIFY_SOCKET set) it runs systemd-notify with READY=1 when serving and STOPPING=1 when the stop begins', async () => {
    const record = join(dir, 'notify-record');
    const d = start({ PATH: `${dir}:${process.env.PATH}`, NOTIFY_SOCKET: '/run/unused', NOTIFY_RECORD: record, FIXTURE_CLOSE_MS: '100' });
    await vi.waitFor(() => expect(existsSync(record) && readFileSync(record, 'utf8')).toBe(`--pid=${d.proc.pid} READY=1\n`), { timeout: 10_000, interval: 20 });
    d.proc.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    await vi.waitFor(() => expect(readFileSync(record, 'utf8')).toBe(`--pid=${d.proc.pid} READY=1\n--pid=${d.proc.pid} STOPPING=1\n`), { timeout: 10_000, interval: 20 });
  });

  it('survives a promise rejection nobody handled: logged with its message, still serving, stops cleanly', async () => {
    const d = start({ FIXTURE_REJECT: '1' });
    await d.waitForLog('unhandled promise rejection; carrying on');
    expect(d.log.find((l) => l.msg === 'unhandled promise rejection; carrying on')).toMatchObject({ err: 'nobody waited for this' });
    await new Promise((r) => setTimeout(r, 200));
    expect(d.proc.exitCode).toBeNull();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
  });

  it('outside systemd (no NOTIFY_SOCKET) it never runs systemd-notify', async () => {
    const record = join(dir, 'notify-record-none');
    const d = start({ PATH: `${dir}:${process.env.PATH}`, NOTIFY_RECORD: record });
    await d.waitForLog('serving');
    d.proc.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(record)).toBe(false);
  });

  describe.skipIf(!hasCommand('systemd-notify') || !hasCommand('python3'))('with the real systemd-notify', () => {
    let receiver: ChildProcess | undefined;
    afterEach(() => void receiver?.kill('SIGKILL'));

    it('a datagram socket bound as NOTIFY_SOCKET receives READY=1, then STOPPING=1, both naming the daemon as MAINPID', async () => {
      const socket = join(dir, 'notify.sock');
      // Node cannot bind a unix datagram socket; python prints each datagram on a line.
      const script = [
        'import socket, sys',
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
        's.bind(sys.argv[1])',
        "print('bound', flush=True)",
        'while True:',
        "    print(s.recv(4096).decode().replace('\\n', ' '), flush=True)",
      ].join('\n');
      receiver = spawn('python3', ['-c', script, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
      const received: string[] = [];
      createInterface({ input: receiver.stdout! }).on('line', (line) => received.push(line));
      await vi.waitFor(() => expect(received).toContain('bound'), { timeout: 10_000, interval: 20 });

      const d = start({ NOTIFY_SOCKET: socket, FIXTURE_CLOSE_MS: '200' });
      const states = () => received.filter((l) => /READY=1|STOPPING=1/.test(l));
      await vi.waitFor(() => expect(states()).toHaveLength(1), { timeout: 10_000, interval: 20 });
      d.proc.kill('SIGTERM');
      expect((await d.exited).code).toBe(0);
      await vi.waitFor(() => expect(states()).toHaveLength(2), { timeout: 10_000, interval: 20 });
      const [ready, stopping] = states().map((l) => l.split(' ').sort());
      expect(ready).toEqual([`MAINPID=${d.proc.pid}`, 'READY=1']);
      expect(stopping).toEqual([`MAINPID=${d.proc.pid}`, 'STOPPING=1']);
    });
  });
});
