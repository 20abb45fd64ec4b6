import { closeSync, mkdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import { openFifoKeepAlive, openFifoWriter } from '../../lib/fifo.js';
import { CriLogWriter, type CriStream } from './cri-log.js';
import { ensureFifo, FifoSource, removeFifo, requireFifo } from './fifo-source.js';

export interface ContainerIOOptions {
  id: string;
  /** Where the FIFOs live; created if missing, never removed (it may hold other containers'). */
  dir: string;
  /** The CRI log file (pod LogDirectory + container LogPath); no log when unset. */
  logPath?: string;
  /** The pod's LogDirectory: the log is opened below it without following symlinks. */
  logDirectory?: string;
  stdin: boolean;
  tty: boolean;
  maxLogLineBytes?: number;
  /** FIFO read errors and log write errors; I/O keeps going after them. */
  onError?: (err: Error) => void;
}

export interface ContainerFifoPaths {
  stdin?: string;
  stdout: string;
  stderr?: string;
}

/** Receives a container's raw output as it arrives (attach). Must not throw or block. */
export interface OutputListener {
  stdout?(chunk: Buffer): void;
  stderr?(chunk: Buffer): void;
}

/**
 * A container's stdio: the FIFOs handed to containerd for the task, their output written to the
 * CRI log and fanned out to attached clients.
 *
 * Protocol with the daemon:
 * 1. `create()` before creating the task (or `ContainerIO.reattach()` after a daemon restart,
 *    for every container whose task may still run). Each output FIFO gets a reader and a
 *    keep-alive write end of ours, so the reader sees no EOF before the shim opens its end, nor
 *    while it is between writes. A stdin FIFO gets a keep-alive too: the shim's reader would
 *    otherwise see EOF and close the container's stdin before anyone attached.
 * 2. `taskExited()` once containerd reports the task's exit (TaskExit event, or an exited
 *    status found on restart). It drops the output keep-alives.
 * 3. `waitClosed()`: from then on, EOF on each output FIFO means the shim closed it, having
 *    copied everything the container wrote; it resolves when every output stream is at EOF and
 *    its records are in the log file. Report the exit after it, so the log is complete.
 * 4. `close()` on container removal (stops everything, removes the FIFOs); `detach()` stops
 *    without removing them, for a clean daemon shutdown. The shim holds a read end of its own,
 *    so the container never sees EPIPE while no daemon reads; output waits in the pipe buffer.
 */
export class ContainerIO {
  readonly id: string;
  readonly fifos: ContainerFifoPaths;
  private readonly sources = new Map<CriStream, FifoSource>();
  private readonly listeners = new Set<OutputListener>();
  private log: CriLogWriter | undefined;
  private stdinKeepAlive: number | undefined;
  private paused = false;
  private started = false;
  private stopped = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(private readonly options: ContainerIOOptions) {
    this.id = options.id;
    this.fifos = ContainerIO.fifoPaths(options.dir, options.id, options);
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** The FIFO paths for containerd's task (a tty merges stderr into the pty, so stdout only). */
  static fifoPaths(dir: string, id: string, mode: { stdin: boolean; tty: boolean }): ContainerFifoPaths {
    const paths: ContainerFifoPaths = { stdout: join(dir, `${id}-stdout`) };
    if (mode.stdin) paths.stdin = join(dir, `${id}-stdin`);
    if (!mode.tty) paths.stderr = join(dir, `${id}-stderr`);
    return paths;
  }

  /** Reopen the I/O of a container created by an earlier daemon: same FIFOs, same log file. */
  static async reattach(options: ContainerIOOptions): Promise<ContainerIO> {
    const io = new ContainerIO(options);
    for (const path of io.fifoList()) requireFifo(path);
    await io.start();
    return io;
  }

  /** Make the FIFOs (idempotent) and start reading them. */
  async create(): Promise<void> {
    mkdirSync(this.options.dir, { recursive: true, mode: 0o700 });
    for (const path of this.fifoList()) ensureFifo(path);
    await this.start();
  }

  /** Subscribe to the raw output; returns the unsubscribe function. */
  attachOutput(listener: OutputListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * A write end of the stdin FIFO for one attach session. Closing it does not close the
   * container's stdin (our keep-alive still holds the FIFO); closeStdin() does.
   */
  stdinWriter(): Socket {
    if (!this.fifos.stdin) throw new BerthError('failed-precondition', `container ${this.id} was not created with stdin`);
    return openFifoWriter(this.fifos.stdin);
  }

  /**
   * Drop our keep-alive write end of the stdin FIFO. The shim holds the FIFO too, so for the
   * process to see EOF (CRI StdinOnce) the shim must also close its end (attach.ts does both).
   */
  closeStdin(): void {
    if (this.stdinKeepAlive === undefined) return;
    closeSync(this.stdinKeepAlive);
    this.stdinKeepAlive = undefined;
  }

  /** ReopenContainerLog: the log file was renamed (rotated); continue in a new file at the path. */
  async reopenLog(): Promise<void> {
    if (!this.log) throw new BerthError('failed-precondition', `container ${this.id} has no log file`);
    await this.log.reopen();
  }

  /** containerd reported the task's exit: EOF on the output FIFOs now means fully drained. */
  taskExited(): void {
    for (const source of this.sources.values()) source.releaseKeepAlive();
  }

  /** Resolves when every output FIFO reached EOF and the log holds all of it (see the class comment). */
  waitClosed(): Promise<void> {
    return this.closedPromise;
  }

  /**
   * Stop reading and write out the log (a partial line becomes P), keeping the FIFOs for a later
   * reattach. waitClosed() no longer resolves: the output's end is the next reader's to see.
   */
  async detach(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const source of this.sources.values()) source.detach();
    this.closeStdin();
    this.listeners.clear();
    await this.log?.close();
  }

  /** Stop reading, write out the log, remove the FIFOs. */
  async close(): Promise<void> {
    await this.detach();
    for (const path of this.fifoList()) removeFifo(path);
  }

  private fifoList(): string[] {
    return [this.fifos.stdin, this.fifos.stdout, this.fifos.stderr].filter((p): p is string => p !== undefined);
  }

  private async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const onError = this.options.onError;
    if (this.options.logPath) {
      this.log = await CriLogWriter.open(this.options.logPath, { maxLineBytes: this.options.maxLogLineBytes, onError, logDirectory: this.options.logDirectory });
    }
    try {
      if (this.fifos.stdin) this.stdinKeepAlive = openFifoKeepAlive(this.fifos.stdin);
      this.openSource('stdout', this.fifos.stdout);
      if (this.fifos.stderr) this.openSource('stderr', this.fifos.stderr);
    } catch (err) {
      await this.detach();
      throw err;
    }
  }

  private openSource(stream: CriStream, path: string): void {
    const source = new FifoSource(path, {
      data: (chunk) => this.deliver(stream, chunk),
      end: () => this.streamEnded(stream),
      error: (err) => this.options.onError?.(err),
    });
    this.sources.set(stream, source);
  }

  private deliver(stream: CriStream, chunk: Buffer): void {
    for (const listener of this.listeners) {
      try {
        listener[stream]?.(chunk);
      } catch (err) {
        this.options.onError?.(err as Error);
      }
    }
    if (this.log && !this.log.write(stream, chunk) && !this.paused) {
      // The log file lags: stop taking output (the container blocks on a full pipe) until it catches up.
      this.paused = true;
      for (const source of this.sources.values()) source.pause();
      void this.log.drained().then(() => {
        this.paused = false;
        if (!this.stopped) for (const source of this.sources.values()) source.resume();
      });
    }
  }

  private streamEnded(stream: CriStream): void {
    this.log?.endStream(stream);
    if (![...this.sources.values()].every((source) => source.ended)) return;
    const log = this.log;
    if (log) void log.flush().then(this.resolveClosed);
    else this.resolveClosed();
  }
}
