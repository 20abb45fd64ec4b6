import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CriStream } from './cri-log.js';
import { ensureFifo, FifoSource, removeFifo } from './fifo-source.js';

/** ExecSync's limit per stream; more output is read (so the process never blocks) and dropped. */
export const defaultExecOutputCap = 16 * 1024 * 1024;

export interface ExecIOOptions {
  /** The exec process id (unique within the container). */
  id: string;
  /** Where the FIFOs live; created if missing, never removed. */
  dir: string;
  /** Bytes kept per stream. */
  maxBytes?: number;
  onError?: (err: Error) => void;
}

export interface ExecFifoPaths {
  stdout: string;
  stderr: string;
}

export interface ExecOutput {
  stdout: Buffer;
  stderr: Buffer;
  /** Whether a stream produced more than maxBytes (the rest was discarded). */
  truncated: { stdout: boolean; stderr: boolean };
}

/**
 * stdout and stderr cut to `budget` bytes together (one gRPC reply holds both): each keeps at
 * least half of it, and what one does not need the other may use. The first bytes are kept.
 */
export function fitOutput(stdout: Buffer, stderr: Buffer, budget: number): { stdout: Buffer; stderr: Buffer } {
  if (stdout.length + stderr.length <= budget) return { stdout, stderr };
  const keepErr = Math.min(stderr.length, Math.max(Math.floor(budget / 2), budget - stdout.length));
  return { stdout: stdout.subarray(0, budget - keepErr), stderr: stderr.subarray(0, keepErr) };
}

/** A stream's output up to a cap. */
class CappedBuffer {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  truncated = false;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    const room = this.cap - this.length;
    if (chunk.length > room) {
      this.truncated = true;
      chunk = chunk.subarray(0, room);
    }
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

/**
 * The stdout and stderr of one ExecSync process. Same protocol as ContainerIO: create() before
 * the exec is started, processExited() once containerd reports its exit, then output() resolves
 * when the shim has closed both FIFOs (everything read), and close() removes the FIFOs.
 */
export class ExecIO {
  readonly fifos: ExecFifoPaths;
  private readonly sources: FifoSource[] = [];
  private readonly buffers: Record<CriStream, CappedBuffer>;
  private drainTimer: NodeJS.Timeout | undefined;
  private readonly done: Promise<ExecOutput>;
  private resolveDone!: (output: ExecOutput) => void;
  private finished = false;

  constructor(private readonly options: ExecIOOptions) {
    this.fifos = ExecIO.fifoPaths(options.dir, options.id);
    const cap = options.maxBytes ?? defaultExecOutputCap;
    this.buffers = { stdout: new CappedBuffer(cap), stderr: new CappedBuffer(cap) };
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  static fifoPaths(dir: string, id: string): ExecFifoPaths {
    return { stdout: join(dir, `${id}-stdout`), stderr: join(dir, `${id}-stderr`) };
  }

  /** Make the FIFOs (idempotent) and start reading them. */
  create(): void {
    mkdirSync(this.options.dir, { recursive: true, mode: 0o700 });
    try {
      for (const stream of ['stdout', 'stderr'] as const) {
        ensureFifo(this.fifos[stream]);
        this.sources.push(
          new FifoSource(this.fifos[stream], {
            data: (chunk) => this.buffers[stream].push(chunk),
            end: () => this.sourceEnded(),
            error: (err) => this.options.onError?.(err),
          }),
        );
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /**
   * containerd reported the exec's exit. A background child the exec left behind may keep the
   * shim's copy (and so the FIFOs) open forever; after `drainTimeoutMs`, output() settles with
   * what was read so far.
   */
  processExited(drainTimeoutMs?: number): void {
    for (const source of this.sources) source.releaseKeepAlive();
    if (drainTimeoutMs !== undefined && !this.finished && this.drainTimer === undefined) {
      this.drainTimer = setTimeout(() => this.finish(), drainTimeoutMs);
      this.drainTimer.unref();
    }
  }

  /** The collected output, once both FIFOs are at EOF (or the drain timeout passed). */
  output(): Promise<ExecOutput> {
    return this.done;
  }

  /** Stop reading and remove the FIFOs; a pending output() settles with what was read. */
  close(): void {
    this.finish();
    for (const path of [this.fifos.stdout, this.fifos.stderr]) removeFifo(path);
  }

  private sourceEnded(): void {
    if (this.sources.length === 2 && this.sources.every((source) => source.ended)) this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.drainTimer);
    for (const source of this.sources) source.detach();
    this.resolveDone({
      stdout: this.buffers.stdout.bytes(),
      stderr: this.buffers.stderr.bytes(),
      truncated: { stdout: this.buffers.stdout.truncated, stderr: this.buffers.stderr.truncated },
    });
  }
}
