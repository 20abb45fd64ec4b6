import { closeSync, lstatSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { BerthError } from '../../lib/errors.js';
import { mkfifo, openFifoKeepAlive, openFifoReader } from '../../lib/fifo.js';

// The read side of one stdio FIFO the shim writes into, shared by container and exec I/O.
//
// A FIFO reads EOF whenever no write end is open, also before the shim first opens its end and
// while a restarted daemon is between shims' writes. So the source holds a write end of its own
// (the keep-alive) until the owner knows the process has exited; from then on EOF means the shim
// closed its end and every byte has been read.

/** Make a FIFO at `path` unless one is already there (a restart, a retried create). */
export function ensureFifo(path: string): void {
  try {
    mkfifo(path, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!lstatSync(path).isFIFO()) throw new BerthError('already-exists', `${path} exists and is not a FIFO`);
  }
}

/** Require an existing FIFO at `path` (reattaching after a restart must not invent one). */
export function requireFifo(path: string): void {
  let isFifo: boolean;
  try {
    isFifo = lstatSync(path).isFIFO();
  } catch (err) {
    throw new BerthError('not-found', `stdio FIFO ${path} does not exist`, { cause: err });
  }
  if (!isFifo) throw new BerthError('failed-precondition', `${path} is not a FIFO`);
}

export function removeFifo(path: string): void {
  rmSync(path, { force: true });
}

export interface FifoSourceHandlers {
  data(chunk: Buffer): void;
  /** The FIFO reached EOF after the keep-alive was released: all output has been read. */
  end(): void;
  error?(err: Error): void;
}

export class FifoSource {
  private readonly socket: Socket;
  private keepAlive: number | undefined;
  private finished = false;

  constructor(
    readonly path: string,
    private readonly handlers: FifoSourceHandlers,
  ) {
    this.socket = openFifoReader(path);
    try {
      this.keepAlive = openFifoKeepAlive(path);
    } catch (err) {
      this.socket.destroy();
      throw err;
    }
    this.socket.on('data', (chunk: Buffer) => this.handlers.data(chunk));
    this.socket.on('end', () => this.finish());
    this.socket.on('error', (err) => {
      this.handlers.error?.(err);
      this.finish();
    });
  }

  get ended(): boolean {
    return this.finished;
  }

  /** The writer process has exited: let EOF through once the shim closes its end. */
  releaseKeepAlive(): void {
    if (this.keepAlive === undefined) return;
    closeSync(this.keepAlive);
    this.keepAlive = undefined;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /**
   * Stop reading, without treating it as EOF. Bytes the socket already took from the kernel (held
   * while paused) are handed to `data` first; whatever is still in the pipe stays there for the next reader.
   */
  detach(): void {
    if (!this.finished) {
      this.finished = true;
      // read() hands buffered chunks to the 'data' listener itself.
      while (this.socket.read() !== null);
    }
    this.socket.destroy();
    this.releaseKeepAlive();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.releaseKeepAlive();
    this.handlers.end();
  }
}
