import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { sdNotify, startWatchdog, watchdogIntervalMs } from '../../../lib/sd-notify.js';

// sd_notify through the native addon, received by a unix datagram socket as systemd's would
// (Node cannot bind one, so python does), and the watchdog's WATCHDOG=1 stopping while the
// event loop is stuck.

const hasPython = spawnSync('sh', ['-c', 'command -v python3']).status === 0;

interface Received {
  at: number;
  text: string;
}

/** python3 bound to `path` (or an abstract name with @), printing "<monotonic ms> <datagram>" per datagram. */
function receiver(path: string): { proc: ChildProcess; got: Received[]; bound: Promise<void> } {
  const script = [
    'import socket, sys, time',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    "s.bind(sys.argv[1].replace('@', '\\0', 1) if sys.argv[1].startswith('@') else sys.argv[1])",
    "print('bound', flush=True)",
    'while True:',
    "    d = s.recv(4096).decode().replace('\\n', ' ')",
    "    print('%d %s' % (time.monotonic() * 1000, d), flush=True)",
  ].join('\n');
  const proc = spawn('python3', ['-c', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: Received[] = [];
  let onBound!: () => void;
  const bound = new Promise<void>((r) => (onBound = r));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    if (line === 'bound') return onBound();
    const space = line.indexOf(' ');
    got.push({ at: Number(line.slice(0, space)), text: line.slice(space + 1) });
  });
  return { proc, got, bound };
}

describe.skipIf(!hasPython)('sd_notify and the watchdog', () => {
  let dir = '';
  const procs: ChildProcess[] = [];
  beforeAll(() => void (dir = mkdtempSync(join(tmpdir(), 'berth-notify-'))));
  afterEach(() => procs.splice(0).forEach((p) => p.kill('SIGKILL')));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('sends each state as one datagram from this process, to a path or an abstract socket', async () => {
    for (const address of [join(dir, 'notify.sock'), `@berth-notify-test-${process.pid}`]) {
      const r = receiver(address);
      procs.push(r.proc);
      await r.bound;
      sdNotify('READY=1\nSTATUS=cri running', { NOTIFY_SOCKET: address });
      sdNotify('STOPPING=1', { NOTIFY_SOCKET: address });
      await vi.waitFor(() => expect(r.got.map((g) => g.text)).toEqual(['READY=1 STATUS=cri running', 'STOPPING=1']), { timeout: 5000, interval: 10 });
    }
  });

  it('sends nothing without NOTIFY_SOCKET, and never throws when nobody listens', () => {
    expect(() => sdNotify('READY=1', {})).not.toThrow();
    expect(() => sdNotify('READY=1', { NOTIFY_SOCKET: join(dir, 'nobody.sock') })).not.toThrow();
  });

  it('asks for the watchdog at half of WatchdogSec, and only for this process', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '20000000' })).toBe(10_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '1' }, 2)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '2' }, 2)).toBe(10_000);
    expect(watchdogIntervalMs({})).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' })).toBeUndefined();
  });

  it('WATCHDOG=1 comes from the event loop: a loop stuck for a second sends none in that second', async () => {
    const address = join(dir, 'watchdog.sock');
    const r = receiver(address);
    procs.push(r.proc);
    await r.bound;
    const env = { NOTIFY_SOCKET: address, WATCHDOG_USEC: '100000' };
    const stop = startWatchdog((state) => sdNotify(state, env), env);
    try {
      await vi.waitFor(() => expect(r.got.length).toBeGreaterThanOrEqual(4), { timeout: 5000, interval: 10 });
      const before = r.got.length;
      // Block this event loop for 1 s, as a stuck callback would.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      await vi.waitFor(() => expect(r.got.length).toBeGreaterThanOrEqual(before + 3), { timeout: 5000, interval: 10 });
      const gaps = r.got.slice(1).map((g, i) => g.at - r.got[i]!.at);
      expect(r.got.every((g) => g.text === 'WATCHDOG=1')).toBe(true);
      // Every 50 ms while the loop turns; one gap of about the stuck second.
      expect(gaps.filter((g) => g > 900)).toHaveLength(1);
      expect(gaps.filter((g) => g <= 900).every((g) => g < 400)).toBe(true);
    } finally {
      stop();
    }
    const count = r.got.length;
    await new Promise((res) => setTimeout(res, 200));
    expect(r.got.length).toBe(count);
  });
});
