import { close, closeSync, fstatSync, write, writev } from 'node:fs';
import { isAbsolute, dirname, relative } from 'node:path';
import { promisify } from 'node:util';
import { BerthError } from '../../lib/errors.js';
import { atFdcwd, openat2, OpenFlags, Resolve } from '../../lib/host-paths.js';

// The CRI container log format (kubelet's "CRI logging" design, as containerd writes it):
//   <RFC3339Nano UTC timestamp> SP <stdout|stderr> SP <F|P> SP <content> LF
// F ends a line the container ended with LF; P is a piece of a longer line (kubelet joins the Ps
// with the following F). Both streams of a container go to one file, one whole record at a time.
//
// Decisions, matching containerd's CRI logger (pkg/cri/io/logger.go) as we read it:
// - A line whose content exceeds maxLineBytes (16 KiB, kubelet's and containerd's default) is cut
//   into P records of exactly maxLineBytes; a line of exactly maxLineBytes is still one F.
// - "\r\n" ends a line like "\n": containerd drops the CR too (also when the pair straddles two
//   reads), so tty output, which the pty turns into CRLF, logs as clean lines. A lone CR is content.
// - Data left without a newline when a stream ends (or the reader detaches) is written as P:
//   nothing says the line was complete, and kubelet prints a trailing P as is.
// - An empty line is an F record with empty content ("... stdout F \n").

export type CriStream = 'stdout' | 'stderr';
export type CriTag = 'F' | 'P';

/** containerd's and kubelet's default max_container_log_line_size. */
export const defaultMaxLineBytes = 16 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const crBuffer = Buffer.from([CR]);

// Wall clock in nanoseconds: Date.now() gives milliseconds only, so take the finer part from the
// monotonic hrtime, anchored to Date.now(). A clock step of over a second re-anchors, so the
// log follows the system clock (NTP corrections) instead of drifting from it.
let anchorWallNs = BigInt(Date.now()) * 1_000_000n;
let anchorHrNs = process.hrtime.bigint();

/** Nanoseconds since the Unix epoch, UTC. */
export function wallClockNs(): bigint {
  const hr = process.hrtime.bigint();
  const wallMs = Date.now();
  const ns = anchorWallNs + (hr - anchorHrNs);
  const drift = wallMs - Number(ns / 1_000_000n);
  if (drift > 1000 || drift < -1000) {
    anchorWallNs = BigInt(wallMs) * 1_000_000n;
    anchorHrNs = hr;
    return anchorWallNs;
  }
  return ns;
}

// Records arrive in bursts within one second; the date-and-time part is formatted once per second.
let cachedSecond = -1n;
let cachedPrefix = '';

/**
 * Go's time.RFC3339Nano in UTC: "2026-11-22T10:00:00.123456789Z", trailing zeros of the fraction
 * trimmed and the dot dropped when the fraction is zero.
 */
export function formatRfc3339Nano(ns: bigint): string {
  const second = ns / 1_000_000_000n;
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(Number(second) * 1000).toISOString().slice(0, 19);
  }
  const fraction = ns % 1_000_000_000n;
  if (fraction === 0n) return `${cachedPrefix}Z`;
  return `${cachedPrefix}.${fraction.toString().padStart(9, '0').replace(/0+$/, '')}Z`;
}

/**
 * Cuts one stream's bytes into CRI records (pure: no I/O, no clock). `emit` receives each
 * record's tag and content, without the newline.
 */
export class CriLineSplitter {
  private parts: Buffer[] = [];
  private length = 0;
  // A CR at the end of a chunk: dropped if the next byte is LF, content otherwise.
  private heldCr = false;

  constructor(
    private readonly emit: (tag: CriTag, content: Buffer) => void,
    private readonly maxLineBytes = defaultMaxLineBytes,
  ) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1) throw new RangeError(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
  }

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(LF, pos);
      if (this.heldCr) {
        this.heldCr = false;
        if (lf !== pos) this.add(crBuffer);
      }
      let end = lf === -1 ? chunk.length : lf;
      if (end > pos && chunk[end - 1] === CR) {
        end--;
        if (lf === -1) this.heldCr = true;
      }
      this.add(chunk.subarray(pos, end));
      if (lf === -1) return;
      this.flush('F');
      pos = lf + 1;
    }
  }

  /** The stream ended (or is being detached): whatever is left becomes a P record. */
  end(): void {
    if (this.heldCr) {
      this.heldCr = false;
      this.add(crBuffer);
    }
    if (this.length > 0) this.flush('P');
  }

  private add(bytes: Buffer): void {
    while (bytes.length > 0) {
      const room = this.maxLineBytes - this.length;
      if (bytes.length <= room) {
        this.parts.push(bytes);
        this.length += bytes.length;
        return;
      }
      // Only more bytes than fit make a P: a line of exactly maxLineBytes may still end as F.
      if (room > 0) this.parts.push(bytes.subarray(0, room));
      this.length = this.maxLineBytes;
      this.flush('P');
      bytes = bytes.subarray(room);
    }
  }

  private flush(tag: CriTag): void {
    const content = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    this.emit(tag, content);
  }
}

/** One encoded record, header and newline included. */
export function encodeCriRecord(timestampNs: bigint, stream: CriStream, tag: CriTag, content: Buffer): Buffer {
  const header = `${formatRfc3339Nano(timestampNs)} ${stream} ${tag} `;
  const record = Buffer.allocUnsafe(header.length + content.length + 1);
  record.write(header, 0, 'latin1');
  content.copy(record, header.length);
  record[record.length - 1] = LF;
  return record;
}

export interface CriLogWriterOptions {
  maxLineBytes?: number;
  /** Nanoseconds since the epoch; tests pin it. */
  clock?: () => bigint;
  /** Queued bytes above which write() returns false (the caller pauses its sources). */
  highWaterMark?: number;
  /** Write and reopen failures. Records that fail to write are dropped so output keeps draining. */
  onError?: (err: Error) => void;
  /**
   * The pod's log directory (PodSandboxConfig.log_directory): the log path is opened below it
   * with no symlink followed. Default: the log file's own directory.
   */
  logDirectory?: string;
}

type QueueItem = Buffer | { reopen: true; done: (err?: Error) => void };

// O_NONBLOCK: a FIFO planted at the log path fails the open (ENXIO) instead of hanging it; it
// changes nothing for a regular file.
const logFileFlags = OpenFlags.wronly | OpenFlags.append | OpenFlags.creat | OpenFlags.nofollow | OpenFlags.nonblock;
const logFileMode = 0o640;

const writevFd = promisify(writev);
const writeFd = promisify(write);
const closeFd = promisify(close);

/** An open log file: appends through the threadpool, like a FileHandle, on an fd we opened ourselves. */
class LogFile {
  constructor(private readonly fd: number) {}
  writev(buffers: Buffer[]): Promise<{ bytesWritten: number }> {
    return writevFd(this.fd, buffers);
  }
  write(buffer: Buffer): Promise<{ bytesWritten: number }> {
    return writeFd(this.fd, buffer);
  }
  close(): Promise<void> {
    return closeFd(this.fd);
  }
}

/**
 * Open (or create, 0640) a container's log for appending. The pod's log directory is where
 * kubelet (and log shippers with a hostPath of /var/log) write too, so a symlink planted at the
 * log path or in the directories below the pod's would make a root daemon append container
 * output to any file of the host: the path is resolved below the pod's directory with openat2
 * RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH, and anything but a regular file is refused.
 */
function openLogFile(path: string, logDirectory = dirname(path)): LogFile {
  const rel = relative(logDirectory, path);
  const refuse = (why: string): BerthError => new BerthError('failed-precondition', `log_path: ${path} ${why}; berth-cri does not write container logs there`);
  if (!rel || rel.startsWith('..') || isAbsolute(rel)) throw refuse(`is not below the pod's log directory ${logDirectory}`);
  const dirFd = openat2(atFdcwd, logDirectory, OpenFlags.path | OpenFlags.directory, 0, 0);
  let fd: number;
  try {
    fd = openat2(dirFd, rel, logFileFlags, logFileMode, Resolve.noSymlinks | Resolve.beneath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw refuse(`is (or goes through) a symlink below ${logDirectory}`);
    if (code === 'EXDEV') throw refuse(`leads out of the pod's log directory ${logDirectory}`);
    if (code === 'ENXIO') throw refuse('is a FIFO with no reader');
    throw err;
  } finally {
    closeSync(dirFd);
  }
  let regular = false;
  try {
    regular = fstatSync(fd).isFile();
  } finally {
    if (!regular) closeSync(fd);
  }
  if (!regular) throw refuse('is not a regular file');
  return new LogFile(fd);
}
// At most this much goes to one writev, so a reopen or close never waits behind a huge batch.
const maxBatchBytes = 1024 * 1024;

/**
 * A container's log file. Records of both streams are queued in arrival order and appended by one
 * writer at a time, so they never mix. reopen() (ReopenContainerLog, after kubelet renamed the file
 * to rotate it) takes effect between records: everything written before it is in the old file,
 * everything after in the new one, nothing is lost.
 */
export class CriLogWriter {
  private readonly splitters: Record<CriStream, CriLineSplitter>;
  private readonly clock: () => bigint;
  private readonly highWaterMark: number;
  private readonly queue: QueueItem[] = [];
  private queuedBytes = 0;
  private running = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private drainWaiters: (() => void)[] = [];

  private constructor(
    readonly path: string,
    private file: LogFile,
    private readonly options: CriLogWriterOptions,
  ) {
    this.clock = options.clock ?? wallClockNs;
    this.highWaterMark = options.highWaterMark ?? 1024 * 1024;
    const max = options.maxLineBytes ?? defaultMaxLineBytes;
    this.splitters = {
      stdout: new CriLineSplitter((tag, content) => this.record('stdout', tag, content), max),
      stderr: new CriLineSplitter((tag, content) => this.record('stderr', tag, content), max),
    };
  }

  /** Open (or create, mode 0640) `path` for appending; an existing log is continued. */
  static async open(path: string, options: CriLogWriterOptions = {}): Promise<CriLogWriter> {
    return new CriLogWriter(path, openLogFile(path, options.logDirectory), options);
  }

  /** Feed a stream's output. Returns false when the queue is over the high-water mark. */
  write(stream: CriStream, chunk: Buffer): boolean {
    if (this.closed) return true;
    this.splitters[stream].push(chunk);
    return this.queuedBytes < this.highWaterMark;
  }

  /** The stream reached EOF or is being detached: its unterminated rest is written as P. */
  endStream(stream: CriStream): void {
    if (!this.closed) this.splitters[stream].end();
  }

  /** Resolves once the queue is back under the high-water mark. */
  drained(): Promise<void> {
    if (this.queuedBytes < this.highWaterMark) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Resolves once everything queued so far is written. */
  flush(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Open the path again; records after this call go to the new file. */
  reopen(): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`log ${this.path} is closed`));
    return new Promise((resolve, reject) => {
      this.queue.push({ reopen: true, done: (err) => (err ? reject(err) : resolve()) });
      this.kick();
    });
  }

  /** End both streams (their partial lines become P records), write everything, close the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.splitters.stdout.end();
    this.splitters.stderr.end();
    this.closed = true;
    await this.flush();
    await this.file.close();
  }

  private record(stream: CriStream, tag: CriTag, content: Buffer): void {
    const record = encodeCriRecord(this.clock(), stream, tag, content);
    this.queue.push(record);
    this.queuedBytes += record.length;
    this.kick();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    void this.run();
  }

  private async run(): Promise<void> {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (!Buffer.isBuffer(head)) {
        this.queue.shift();
        head.done(await this.reopenNow());
        continue;
      }
      let n = 0;
      let bytes = 0;
      while (n < this.queue.length && bytes < maxBatchBytes) {
        const item = this.queue[n]!;
        if (!Buffer.isBuffer(item)) break;
        bytes += item.length;
        n++;
      }
      const batch = this.queue.splice(0, n) as Buffer[];
      await this.writeAll(batch, bytes);
      this.queuedBytes -= bytes;
      if (this.queuedBytes < this.highWaterMark) for (const wake of this.drainWaiters.splice(0)) wake();
    }
    this.running = false;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async writeAll(batch: Buffer[], bytes: number): Promise<void> {
    try {
      let written = (await this.file.writev(batch)).bytesWritten;
      // A short write to a regular file is rare (disk full, signal); finish the rest of the batch.
      while (written < bytes) {
        const rest = Buffer.concat(batch).subarray(written);
        const { bytesWritten } = await this.file.write(rest);
        if (bytesWritten === 0) throw new Error(`short write to ${this.path}`);
        written += bytesWritten;
      }
    } catch (err) {
      this.options.onError?.(err as Error);
    }
  }

  private async reopenNow(): Promise<Error | undefined> {
    let next: LogFile;
    try {
      next = openLogFile(this.path, this.options.logDirectory);
    } catch (err) {
      // Keep appending to the old file rather than losing output.
      this.options.onError?.(err as Error);
      return err as Error;
    }
    const previous = this.file;
    this.file = next;
    await previous.close().catch((err: Error) => this.options.onError?.(err));
    return undefined;
  }
}
