import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CriLineSplitter,
  CriLogWriter,
  type CriTag,
  defaultMaxLineBytes,
  encodeCriRecord,
  formatRfc3339Nano,
  wallClockNs,
} from '../../../../cri-shim/io/cri-log.js';

const ns = (iso: string, fraction = 0n): bigint => BigInt(Date.parse(iso)) * 1_000_000n + fraction;

/** Run chunks through a splitter; returns [tag, content] pairs. */
function split(chunks: (string | Buffer)[], options: { end?: boolean; max?: number } = {}): [CriTag, string][] {
  const out: [CriTag, string][] = [];
  const splitter = new CriLineSplitter((tag, content) => out.push([tag, content.toString('latin1')]), options.max);
  for (const chunk of chunks) splitter.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, 'latin1'));
  if (options.end) splitter.end();
  return out;
}

interface Record {
  time: string;
  stream: string;
  tag: string;
  content: string;
}

/** Parse a log file the way critest and kubelet do: split on the first three spaces. */
function parseLog(text: string): Record[] {
  expect(text === '' || text.endsWith('\n')).toBe(true);
  return text
    .split('\n')
    .slice(0, -1)
    .map((line) => {
      const m = /^(\S+) (\S+) (\S+) (.*)$/s.exec(line);
      expect(m, `malformed record ${JSON.stringify(line)}`).not.toBeNull();
      return { time: m![1]!, stream: m![2]!, tag: m![3]!, content: m![4]! };
    });
}

describe('formatRfc3339Nano', () => {
  it('writes nanoseconds in UTC like Go time.RFC3339Nano', () => {
    expect(formatRfc3339Nano(ns('2026-11-22T10:00:00Z', 123456789n))).toBe('2026-11-22T10:00:00.123456789Z');
  });

  it('trims trailing zeros of the fraction', () => {
    expect(formatRfc3339Nano(ns('2026-11-22T10:00:00Z', 120000000n))).toBe('2026-11-22T10:00:00.12Z');
    expect(formatRfc3339Nano(ns('2026-11-22T10:00:00Z', 1000n))).toBe('2026-11-22T10:00:00.000001Z');
  });

  it('keeps leading zeros of the fraction', () => {
    expect(formatRfc3339Nano(ns('2026-11-22T10:00:00Z', 1n))).toBe('2026-11-22T10:00:00.000000001Z');
  });

  it('drops the dot for a whole second', () => {
    expect(formatRfc3339Nano(ns('2026-11-22T23:59:59Z'))).toBe('2026-11-22T23:59:59Z');
    expect(formatRfc3339Nano(0n)).toBe('1970-01-01T00:00:00Z');
  });

  it('formats each second afresh (no stale cached prefix)', () => {
    expect(formatRfc3339Nano(ns('2026-11-22T10:00:00Z', 5n))).toBe('2026-11-22T10:00:00.000000005Z');
    expect(formatRfc3339Nano(ns('2026-11-22T10:00:01Z', 5n))).toBe('2026-11-22T10:00:01.000000005Z');
    expect(formatRfc3339Nano(ns('2026-11-22T10:00:00Z', 5n))).toBe('2026-11-22T10:00:00.000000005Z');
  });
});

describe('wallClockNs', () => {
  it('follows Date.now and never goes backwards', () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const a = wallClockNs();
    const b = wallClockNs();
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    expect(b).toBeGreaterThanOrEqual(a);
    expect(a).toBeGreaterThanOrEqual(before - 1_000_000n);
    expect(b).toBeLessThanOrEqual(after + 1_000_000n);
  });
});

describe('CriLineSplitter', () => {
  it('turns each newline-terminated line into an F record without the newline', () => {
    expect(split(['a\nbb\n'])).toEqual([['F', 'a'], ['F', 'bb']]);
  });

  it('writes an empty line as an F record with empty content', () => {
    expect(split(['\n\nx\n'])).toEqual([['F', ''], ['F', ''], ['F', 'x']]);
  });

  it('joins a line written across several chunks into one record', () => {
    expect(split(['hel', 'lo', ' world\nne', 'xt\n'])).toEqual([['F', 'hello world'], ['F', 'next']]);
  });

  it('holds an unterminated line until the newline comes', () => {
    expect(split(['partial'])).toEqual([]);
  });

  it('writes what is left without a newline at the end of the stream as P', () => {
    expect(split(['a\npartial'], { end: true })).toEqual([['F', 'a'], ['P', 'partial']]);
    expect(split(['a\n'], { end: true })).toEqual([['F', 'a']]);
  });

  it('drops the CR of CRLF, also when the pair straddles two chunks', () => {
    expect(split(['a\r\nb\r', '\nc\r\n'])).toEqual([['F', 'a'], ['F', 'b'], ['F', 'c']]);
  });

  it('keeps a CR that does not end a line', () => {
    expect(split(['a\rb\n', 'c\r', 'd\n', 'e\r\r\n'])).toEqual([['F', 'a\rb'], ['F', 'c\rd'], ['F', 'e\r']]);
    expect(split(['tail\r'], { end: true })).toEqual([['P', 'tail\r']]);
  });

  it('keeps non-UTF-8 bytes as they are', () => {
    const out: Buffer[] = [];
    const splitter = new CriLineSplitter((_tag, content) => out.push(content));
    splitter.push(Buffer.from([0xff, 0x00, 0xfe, 0x0a]));
    expect(out).toEqual([Buffer.from([0xff, 0x00, 0xfe])]);
  });

  it('cuts a line over 16 KiB into P records of exactly 16 KiB and ends it with F', () => {
    const max = defaultMaxLineBytes;
    expect(max).toBe(16384);
    const line = 'x'.repeat(max * 2 + 100);
    const out = split([line + '\n']);
    expect(out.map(([tag, content]) => [tag, content.length])).toEqual([['P', max], ['P', max], ['F', 100]]);
    expect(out.map(([, content]) => content).join('')).toBe(line);
  });

  it('keeps a line of exactly 16 KiB in one F record', () => {
    const out = split(['y'.repeat(defaultMaxLineBytes) + '\n']);
    expect(out.map(([tag, content]) => [tag, content.length])).toEqual([['F', defaultMaxLineBytes]]);
  });

  it('cuts long lines the same way whatever the chunking', () => {
    const text = 'abcdefghij'.repeat(5) + '\n' + '0123456789'.repeat(3) + '\n';
    const whole = split([text], { max: 16 });
    const byteWise = split([...text], { max: 16 });
    expect(byteWise).toEqual(whole);
    expect(whole.map(([tag, content]) => `${tag}${content.length}`)).toEqual(['P16', 'P16', 'P16', 'F2', 'P16', 'F14']);
  });

  it('cuts an unterminated overlong tail into P records at the end of the stream', () => {
    expect(split(['abcdefghij'], { max: 4, end: true })).toEqual([['P', 'abcd'], ['P', 'efgh'], ['P', 'ij']]);
  });
});

describe('encodeCriRecord', () => {
  it('writes timestamp, stream, tag and content separated by single spaces', () => {
    const record = encodeCriRecord(ns('2026-11-22T10:00:00Z', 5000n), 'stderr', 'P', Buffer.from('a b'));
    expect(record.toString()).toBe('2026-11-22T10:00:00.000005Z stderr P a b\n');
  });
});

describe('CriLogWriter', () => {
  let dir = '';
  const writers: CriLogWriter[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-crilog-'));
  });
  afterEach(async () => {
    for (const writer of writers.splice(0)) await writer.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  async function openLog(name = 'c.log', options: Parameters<typeof CriLogWriter.open>[1] = {}): Promise<CriLogWriter> {
    const writer = await CriLogWriter.open(join(dir, name), options);
    writers.push(writer);
    return writer;
  }

  it('writes records with the clock time of their arrival', async () => {
    let t = ns('2026-11-22T10:00:00Z', 1n);
    const log = await openLog('c.log', { clock: () => t++ });
    log.write('stdout', Buffer.from('one\ntwo\n'));
    await log.close();
    expect(readFileSync(join(dir, 'c.log'), 'utf8')).toBe(
      '2026-11-22T10:00:00.000000001Z stdout F one\n2026-11-22T10:00:00.000000002Z stdout F two\n',
    );
  });

  it('creates the file with mode 0640 and appends to an existing log', async () => {
    const path = join(dir, 'c.log');
    writeFileSync(path, 'earlier\n');
    const log = await openLog();
    log.write('stdout', Buffer.from('later\n'));
    await log.close();
    const text = readFileSync(path, 'utf8');
    expect(text.startsWith('earlier\n')).toBe(true);
    expect(parseLog(text.slice('earlier\n'.length)).map((r) => r.content)).toEqual(['later']);
    const fresh = await openLog('new.log');
    await fresh.close();
    expect(statSync(join(dir, 'new.log')).mode & 0o777).toBe(0o640 & ~process.umask());
  });

  it('interleaves two streams by arrival and never mixes them within a record', async () => {
    const log = await openLog();
    log.write('stdout', Buffer.from('out-1 beg'));
    log.write('stderr', Buffer.from('err-1\nerr-2 be'));
    log.write('stdout', Buffer.from('un\nout-2\n'));
    log.write('stderr', Buffer.from('gun\n'));
    await log.close();
    const records = parseLog(readFileSync(join(dir, 'c.log'), 'utf8'));
    expect(records.map((r) => `${r.stream} ${r.tag} ${r.content}`)).toEqual([
      'stderr F err-1',
      'stdout F out-1 begun',
      'stdout F out-2',
      'stderr F err-2 begun',
    ]);
    for (const r of records) expect(r.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/);
  });

  it('writes a partial line as P when its stream ends, and when the log is closed', async () => {
    const log = await openLog();
    log.write('stdout', Buffer.from('no newline'));
    log.endStream('stdout');
    log.write('stderr', Buffer.from('cut short'));
    await log.close();
    const records = parseLog(readFileSync(join(dir, 'c.log'), 'utf8'));
    expect(records.map((r) => `${r.stream} ${r.tag} ${r.content}`)).toEqual(['stdout P no newline', 'stderr P cut short']);
  });

  it('writes an empty line as "F " with nothing after the space', async () => {
    const log = await openLog('c.log', { clock: () => 0n });
    log.write('stdout', Buffer.from('\n'));
    await log.close();
    expect(readFileSync(join(dir, 'c.log'), 'utf8')).toBe('1970-01-01T00:00:00Z stdout F \n');
  });

  it('after a rename and reopen, continues in a new file and loses no record', async () => {
    const path = join(dir, 'c.log');
    const log = await openLog();
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${i}`);
    for (const line of lines.slice(0, 1000)) log.write('stdout', Buffer.from(line + '\n'));
    renameSync(path, `${path}.1`);
    const reopened = log.reopen();
    for (const line of lines.slice(1000)) log.write('stdout', Buffer.from(line + '\n'));
    await reopened;
    await log.close();
    const rotated = parseLog(readFileSync(`${path}.1`, 'utf8')).map((r) => r.content);
    const current = parseLog(readFileSync(path, 'utf8')).map((r) => r.content);
    expect(rotated).toEqual(lines.slice(0, 1000));
    expect(current).toEqual(lines.slice(1000));
  });

  it('a failed reopen keeps writing to the old file', async () => {
    const sub = join(dir, 'sub');
    const errors: Error[] = [];
    mkdirSync(sub);
    const path = join(sub, 'c.log');
    const log = await CriLogWriter.open(path, { onError: (err) => errors.push(err) });
    writers.push(log);
    renameSync(sub, join(dir, 'moved'));
    await expect(log.reopen()).rejects.toThrow(/ENOENT/);
    log.write('stdout', Buffer.from('still here\n'));
    await log.close();
    expect(parseLog(readFileSync(join(dir, 'moved/c.log'), 'utf8')).map((r) => r.content)).toEqual(['still here']);
    expect(errors).toHaveLength(1);
  });

  it('reports back-pressure above the high-water mark and drains', async () => {
    const log = await openLog('c.log', { highWaterMark: 64 });
    expect(log.write('stdout', Buffer.from('short\n'))).toBe(true);
    expect(log.write('stdout', Buffer.from('x'.repeat(100) + '\n'))).toBe(false);
    await log.drained();
    expect(log.write('stdout', Buffer.from('after\n'))).toBe(true);
    await log.close();
    expect(parseLog(readFileSync(join(dir, 'c.log'), 'utf8')).map((r) => r.content.length)).toEqual([5, 100, 5]);
  });

  // The pod's log directory is writable by others (kubelet, log shippers with a hostPath).
  /** A pod log directory, and a file outside it that a planted symlink points at. */
  function podAndVictim(): { pod: string; victim: string } {
    const pod = join(dir, 'pods', 'ns_name_uid');
    mkdirSync(pod, { recursive: true });
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'untouched\n');
    return { pod, victim };
  }

  it('a symlink planted at the log path is not followed: the open is refused and the target is not written', async () => {
    const { pod, victim } = podAndVictim();
    symlinkSync(victim, join(pod, 'c.log'));
    await expect(CriLogWriter.open(join(pod, 'c.log'), { logDirectory: pod })).rejects.toThrow(/log_path: .*symlink/);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
  });

  it('a symlink in place of the container directory below the pod directory is not followed either', async () => {
    const { pod, victim } = podAndVictim();
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    symlinkSync(outside, join(pod, 'c'));
    await expect(CriLogWriter.open(join(pod, 'c', '0.log'), { logDirectory: pod })).rejects.toThrow(/log_path: .*symlink/);
    expect(readdirSync(outside)).toEqual([]);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
  });

  it('without a pod directory given, the log file itself still may not be a symlink', async () => {
    const { pod, victim } = podAndVictim();
    symlinkSync(victim, join(pod, 'c.log'));
    await expect(CriLogWriter.open(join(pod, 'c.log'))).rejects.toThrow(/symlink/);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
  });

  it('a log path that leads out of the pod directory is refused', async () => {
    const { pod } = podAndVictim();
    await expect(CriLogWriter.open(join(dir, 'elsewhere.log'), { logDirectory: pod })).rejects.toThrow(/not below the pod's log directory/);
  });

  it('a FIFO planted at the log path is refused at once instead of hanging the open', async () => {
    const { pod } = podAndVictim();
    execFileSync('mkfifo', [join(pod, 'c.log')]);
    const opened = CriLogWriter.open(join(pod, 'c.log'), { logDirectory: pod });
    const hung = new Promise((resolve) => setTimeout(() => resolve('hung'), 2000).unref());
    await expect(Promise.race([opened, hung])).rejects.toThrow(/FIFO/);
  });

  it('a symlink swapped in at the log path before a reopen (rotation) is refused, and logging goes on in the old file', async () => {
    const { pod, victim } = podAndVictim();
    const path = join(pod, 'c.log');
    const errors: Error[] = [];
    const log = await CriLogWriter.open(path, { logDirectory: pod, onError: (err) => errors.push(err) });
    writers.push(log);
    renameSync(path, `${path}.1`);
    symlinkSync(victim, path);
    await expect(log.reopen()).rejects.toThrow(/symlink/);
    log.write('stdout', Buffer.from('still here\n'));
    await log.close();
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(parseLog(readFileSync(`${path}.1`, 'utf8')).map((r) => r.content)).toEqual(['still here']);
  });

  it('a regular log under the pod directory is created 0640 and continued when it exists', async () => {
    const { pod } = podAndVictim();
    mkdirSync(join(pod, 'c'));
    const path = join(pod, 'c', '0.log');
    for (const line of ['one\n', 'two\n']) {
      const log = await CriLogWriter.open(path, { logDirectory: pod });
      log.write('stdout', Buffer.from(line));
      await log.close();
    }
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(parseLog(readFileSync(path, 'utf8')).map((r) => r.content)).toEqual(['one', 'two']);
  });
});
