import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainerIO, type ContainerIOOptions } from '../../../../cri-shim/io/container-io.js';
import { ExecIO } from '../../../../cri-shim/io/exec-io.js';
import { isRoot } from '../../../../world/netns.js';

// Container stdio through real FIFOs, with a real process in the shim's place: it writes into
// the FIFOs the way runc's shim does, and the CRI log file is checked as critest reads it.

interface LogRecord {
  stream: string;
  tag: string;
  content: string;
}

function readLog(path: string): LogRecord[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .slice(0, -1)
    .map((line) => {
      const m = /^\S+ (\S+) (\S+) (.*)$/s.exec(line);
      if (!m) throw new Error(`malformed log record ${JSON.stringify(line)}`);
      return { stream: m[1]!, tag: m[2]!, content: m[3]! };
    });
}

const show = (records: LogRecord[]): string[] => records.map((r) => `${r.stream} ${r.tag} ${r.content}`);

describe.skipIf(!isRoot)('container stdio FIFOs and CRI log', () => {
  let tmp = '';
  const ios: (ContainerIO | ExecIO)[] = [];
  const children: ChildProcess[] = [];
  const fds: number[] = [];

  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'berth-io-'));
  });

  afterEach(async () => {
    for (const child of children.splice(0)) {
      // Writers lead their own process group: this also ends background children they left.
      if (child.pid === undefined) continue;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* the group is gone */
      }
    }
    for (const io of ios.splice(0)) await Promise.resolve(io.close()).catch(() => undefined);
    for (const fd of fds.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        /* already closed */
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  function options(id: string, extra: Partial<ContainerIOOptions> = {}): ContainerIOOptions {
    return { id, dir: join(tmp, 'fifo'), logPath: join(tmp, `${id}.log`), stdin: false, tty: false, ...extra };
  }

  async function createIO(opts: ContainerIOOptions): Promise<ContainerIO> {
    const io = new ContainerIO(opts);
    ios.push(io);
    await io.create();
    return io;
  }

  /** Open a write end like the shim does (blocking open: our reader is already there). */
  function openForWrite(path: string): number {
    const fd = openSync(path, constants.O_WRONLY);
    fds.push(fd);
    return fd;
  }

  /** The shim also keeps a read end open, so its writes never hit EPIPE while no daemon reads. */
  function holdReadEnd(path: string): void {
    fds.push(openSync(path, constants.O_RDONLY | constants.O_NONBLOCK));
  }

  /** Run `script` with its stdout and stderr on the FIFOs, as the container would. */
  function runWriter(script: string, fifos: { stdin?: string; stdout: string; stderr?: string }): ChildProcess {
    const stdin = fifos.stdin ? openSync(fifos.stdin, constants.O_RDONLY) : 'ignore';
    const out = openForWrite(fifos.stdout);
    const err = fifos.stderr ? openForWrite(fifos.stderr) : out;
    const child = spawn('sh', ['-c', script], { stdio: [stdin, out, err], detached: true });
    children.push(child);
    // The child has its own copies now; ours would keep the FIFOs from reaching EOF.
    if (typeof stdin === 'number') closeSync(stdin);
    for (const fd of new Set([out, err])) {
      closeSync(fd);
      fds.splice(fds.indexOf(fd), 1);
    }
    return child;
  }

  function exited(child: ChildProcess): Promise<number | null> {
    if (child.exitCode !== null) return Promise.resolve(child.exitCode);
    return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  it('writes both streams to one log: full lines as F, the unterminated tail as P', async () => {
    const io = await createIO(options('c1'));
    const child = runWriter('echo a; echo b >&2; printf partial', io.fifos);
    expect(await exited(child)).toBe(0);
    io.taskExited();
    await io.waitClosed();
    const records = readLog(join(tmp, 'c1.log'));
    expect(show(records.filter((r) => r.stream === 'stdout'))).toEqual(['stdout F a', 'stdout P partial']);
    expect(show(records.filter((r) => r.stream === 'stderr'))).toEqual(['stderr F b']);
  });

  it('EOF before taskExited is not the end: waitClosed waits for the exit report', async () => {
    const io = await createIO(options('c2'));
    let closed = false;
    void io.waitClosed().then(() => (closed = true));
    await exited(runWriter('echo early', io.fifos));
    await sleep(200);
    expect(closed).toBe(false);
    // A second writer (the shim reopening after a restart) is still read.
    await exited(runWriter('echo late', io.fifos));
    io.taskExited();
    await io.waitClosed();
    expect(show(readLog(join(tmp, 'c2.log')))).toEqual(['stdout F early', 'stdout F late']);
  });

  it('fans raw output out to attached listeners until they unsubscribe', async () => {
    const io = await createIO(options('c3'));
    const seen: string[] = [];
    const detach = io.attachOutput({ stdout: (b) => seen.push(`out:${b}`), stderr: (b) => seen.push(`err:${b}`) });
    await exited(runWriter('echo x; sleep 0.1; echo y >&2', io.fifos));
    await sleep(100);
    detach();
    await exited(runWriter('echo z', io.fifos));
    io.taskExited();
    await io.waitClosed();
    expect(seen).toEqual(['out:x\n', 'err:y\n']);
    expect(readLog(join(tmp, 'c3.log')).map((r) => r.content)).toEqual(['x', 'y', 'z']);
  });

  it('a restarted daemon reattaches to the FIFOs and continues the log, every line exactly once', async () => {
    const opts = options('c4');
    const first = await createIO(opts);
    holdReadEnd(first.fifos.stdout);
    holdReadEnd(first.fifos.stderr!);
    const child = runWriter('for i in 1 2 3 4 5 6; do echo line$i; sleep 0.2; done', first.fifos);
    await sleep(500);
    await first.detach();
    expect(existsSync(first.fifos.stdout)).toBe(true);
    await sleep(300);
    const second = await ContainerIO.reattach(opts);
    ios.push(second);
    expect(await exited(child)).toBe(0);
    second.taskExited();
    await second.waitClosed();
    const records = readLog(opts.logPath!);
    expect(show(records)).toEqual([1, 2, 3, 4, 5, 6].map((i) => `stdout F line${i}`));
  });

  it('reattach refuses FIFOs that do not exist', async () => {
    await expect(ContainerIO.reattach(options('gone'))).rejects.toThrow(/does not exist/);
  });

  it('after rename and reopenLog, later lines land in the new file', async () => {
    const opts = options('c5');
    const io = await createIO(opts);
    const lines: string[] = [];
    io.attachOutput({ stdout: (b) => lines.push(...b.toString().split('\n').filter(Boolean)) });
    const child = runWriter('for i in 1 2 3 4 5 6; do echo line$i; sleep 0.2; done', io.fifos);
    while (!lines.includes('line3')) await sleep(20);
    renameSync(opts.logPath!, `${opts.logPath}.1`);
    await io.reopenLog();
    await exited(child);
    io.taskExited();
    await io.waitClosed();
    const rotated = readLog(`${opts.logPath}.1`).map((r) => r.content);
    const current = readLog(opts.logPath!).map((r) => r.content);
    expect([...rotated, ...current]).toEqual([1, 2, 3, 4, 5, 6].map((i) => `line${i}`));
    expect(rotated).toContain('line3');
    expect(current).toContain('line5');
    expect(current).toContain('line6');
  });

  it('stdin: an attached writer reaches the container, and closeStdin gives it EOF', async () => {
    const io = await createIO(options('c6', { stdin: true }));
    const child = runWriter('read x; echo got $x; cat; echo eof', io.fifos);
    const stdin = io.stdinWriter();
    stdin.write('hello\nmore\n');
    await new Promise<void>((resolve) => stdin.end(resolve));
    await sleep(100);
    expect(child.exitCode).toBeNull();
    io.closeStdin();
    expect(await exited(child)).toBe(0);
    io.taskExited();
    await io.waitClosed();
    expect(readLog(join(tmp, 'c6.log')).map((r) => r.content)).toEqual(['got hello', 'more', 'eof']);
  });

  it('tty: one FIFO for stdout, CRLF from the pty logged as plain lines', async () => {
    const io = await createIO(options('c7', { tty: true }));
    expect(io.fifos.stderr).toBeUndefined();
    expect(ContainerIO.fifoPaths('/d', 'c7', { stdin: false, tty: true })).toEqual({ stdout: '/d/c7-stdout' });
    await exited(runWriter("printf 'one\\r\\ntwo\\r\\n'; echo three >&2", io.fifos));
    io.taskExited();
    await io.waitClosed();
    expect(show(readLog(join(tmp, 'c7.log')))).toEqual(['stdout F one', 'stdout F two', 'stdout F three']);
  });

  it('close removes the FIFOs; create is idempotent', async () => {
    const opts = options('c8', { stdin: true });
    const io = await createIO(opts);
    const again = new ContainerIO(opts);
    await again.create();
    await again.detach();
    for (const path of [io.fifos.stdin!, io.fifos.stdout, io.fifos.stderr!]) expect(existsSync(path)).toBe(true);
    await io.close();
    for (const path of [io.fifos.stdin!, io.fifos.stdout, io.fifos.stderr!]) expect(existsSync(path)).toBe(false);
  });

  it('20 containers with idle FIFOs do not tie up the libuv threadpool', async () => {
    for (let i = 0; i < 20; i++) await createIO(options(`idle${i}`));
    const started = Date.now();
    const reads = Array.from({ length: 8 }, () => readFile(new URL(import.meta.url)));
    const timeout = sleep(2000).then(() => 'timeout' as const);
    expect(await Promise.race([Promise.all(reads).then(() => 'read' as const), timeout])).toBe('read');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  describe('ExecIO', () => {
    function createExec(id: string, maxBytes?: number): ExecIO {
      const exec = new ExecIO({ id, dir: join(tmp, 'exec'), maxBytes });
      ios.push(exec);
      exec.create();
      return exec;
    }

    it('collects stdout and stderr separately once both reach EOF after the exit', async () => {
      const exec = createExec('e1');
      await exited(runWriter('echo out; echo err >&2; printf tail', exec.fifos));
      exec.processExited();
      const output = await exec.output();
      expect(output.stdout.toString()).toBe('out\ntail');
      expect(output.stderr.toString()).toBe('err\n');
      expect(output.truncated).toEqual({ stdout: false, stderr: false });
    });

    it('keeps at most maxBytes per stream, reading and dropping the rest', async () => {
      const exec = createExec('e2', 1000);
      const child = runWriter('head -c 300000 /dev/zero; echo small >&2', exec.fifos);
      expect(await exited(child)).toBe(0);
      exec.processExited();
      const output = await exec.output();
      expect(output.stdout.length).toBe(1000);
      expect(output.stderr.toString()).toBe('small\n');
      expect(output.truncated).toEqual({ stdout: true, stderr: false });
    });

    it('settles after the drain timeout when a background child keeps the FIFO open', async () => {
      const exec = createExec('e3');
      await exited(runWriter('sleep 30 & echo hi', exec.fifos));
      exec.processExited(200);
      const output = await exec.output();
      expect(output.stdout.toString()).toBe('hi\n');
    });
  });
});
