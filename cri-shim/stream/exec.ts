import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { openFifoWriter } from '../../lib/fifo.js';
import { ContainerState } from '../../proto/gen/runtime/v1/api.js';
import { closeStdin, decodeJsonAny, deleteProcess, execProcess, getContainerRecord, killTask, resizePty, startTask, waitTask } from '../containerd/tasks.js';
import { ensureFifo, FifoSource } from '../io/fifo-source.js';
import type { Spec } from '../oci/spec-types.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';
import { ioDir } from '../server/container-start.js';

// A streaming exec: the command runs in the container through containerd's task exec, with
// FIFOs between the shim and the client's streams. The protocol side (SPDY remotecommand or
// WebSocket channels) hands us plain streams and a resize callback, and gets the exit code.

export interface ExecStreams {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  tty: boolean;
  /** Called with each terminal size the client sends. */
  onResize(listener: (size: { width: number; height: number }) => void): void;
  /** Resolves when the client goes away (the connection closed). */
  clientGone: Promise<void>;
}

const SIGKILL = 9;
/** How long output may keep flowing after the process exited (a background child can hold the pipe). */
const drainMs = 2000;

/** Run `cmd` in the running container `c`; resolves with its exit code (or rejects). */
export async function runExec(rt: CriRuntime, c: ContainerRecord, cmd: string[], streams: ExecStreams): Promise<number> {
  if (c.state !== ContainerState.CONTAINER_RUNNING) {
    throw new BerthError('failed-precondition', `container ${c.id} is not running (${ContainerState[c.state]})`);
  }
  const record = await getContainerRecord(rt.client, c.id);
  const spec = decodeJsonAny<Spec>(record?.spec);
  if (!spec?.process) throw new BerthError('internal', `container ${c.id} has no process spec`);
  const env = [...(spec.process.env ?? [])];
  if (streams.tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
  const process = { ...spec.process, args: cmd, env, terminal: streams.tty };

  const execId = `exec-${randomBytes(6).toString('hex')}`;
  const base = join(ioDir(rt), `${c.id}-${execId}`);
  const fifos = {
    stdin: streams.stdin ? `${base}-stdin` : undefined,
    stdout: streams.stdout ? `${base}-stdout` : undefined,
    stderr: streams.stderr && !streams.tty ? `${base}-stderr` : undefined,
  };
  const sources: { source: FifoSource; ended: Promise<void> }[] = [];
  const cleanups: (() => void)[] = [];
  let exited = false;
  try {
    for (const path of Object.values(fifos)) if (path) ensureFifo(path);
    for (const [path, sink] of [
      [fifos.stdout, streams.stdout],
      [fifos.stderr, streams.stderr],
    ] as const) {
      if (!path || !sink) continue;
      let source!: FifoSource;
      const ended = new Promise<void>((resolve) => {
        source = new FifoSource(path, {
          data: (chunk) => {
            if (!sink.write(chunk)) {
              source.pause();
              sink.once('drain', () => source.resume());
            }
          },
          end: resolve,
          error: (err) => rt.log.debug({ container: c.id, execId, err: err.message }, 'exec output'),
        });
      });
      sources.push({ source, ended });
      cleanups.push(() => source.detach());
    }
    await execProcess(rt.client, c.id, execId, process, { ...fifos, terminal: streams.tty });
    const exit = waitTask(rt.client, c.id, execId);
    await startTask(rt.client, c.id, execId);
    void exit.then(() => (exited = true), () => (exited = true));

    if (fifos.stdin && streams.stdin) {
      const writer = openFifoWriter(fifos.stdin);
      cleanups.push(() => writer.destroy());
      writer.on('error', () => undefined);
      streams.stdin.pipe(writer, { end: false });
      streams.stdin.on('end', () => {
        // The client closed stdin (StdinOnce, or EOF typed): the process sees EOF.
        writer.end(() => void closeStdin(rt.client, c.id, execId).catch(() => undefined));
      });
    }
    streams.onResize(({ width, height }) => {
      if (!exited) void resizePty(rt.client, c.id, execId, width, height).catch((err: unknown) => rt.log.debug({ err: errorMessage(err) }, 'exec resize'));
    });
    void streams.clientGone.then(() => {
      // Nobody is reading any more: the command must not outlive its client.
      if (!exited) void killTask(rt.client, c.id, SIGKILL, { execId }).catch(() => undefined);
    });

    const result = await exit;
    for (const s of sources) s.source.releaseKeepAlive();
    await Promise.race([Promise.all(sources.map((s) => s.ended)), sleep(drainMs)]);
    return result.exitStatus;
  } finally {
    for (const fn of cleanups) fn();
    await deleteProcess(rt.client, c.id, execId).catch(() => undefined);
    for (const path of Object.values(fifos)) if (path) rmSync(path, { force: true });
  }
}
