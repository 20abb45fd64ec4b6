import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { openFifoWriter } from '../../lib/fifo.js';
import { stepTimer } from '../../lib/steps.js';
import { ContainerState } from '../../proto/gen/runtime/v1/api.js';
import { containerdExecCalls, createExecProcess, type ExecCalls } from '../containerd/shim.js';
import { closeStdin, killTask, resizePty } from '../containerd/tasks.js';
import { ensureFifo, FifoSource, removeFifo } from '../io/fifo-source.js';
import { containerProcessSpec, execDrainMs, newExecId } from '../pod/exec-process.js';
import { ioDir } from '../pod/io-wiring.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';

// A streaming exec: the command runs in the container through containerd's task exec, with
// FIFOs between the shim and the client's streams. The protocol side (SPDY remotecommand or
// WebSocket channels) hands us plain streams and a resize callback, and gets the exit code.
//
// It comes in two halves so the slow setup overlaps the client opening its streams: prepare
// (FIFOs, the exec process created in the shim but not started) begins as soon as the
// connection is upgraded, since the Exec request already said which streams there will be;
// start runs the command once the streams are there.

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

export interface ExecShape {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

export interface PreparedExec {
  /** Start the command with the client's streams; resolves with its exit code. */
  start(streams: ExecStreams): Promise<number>;
  /** The client never came: remove the process and the FIFOs. */
  abandon(): void;
}

const SIGKILL = 9;

/** Create the exec process for `cmd` in the running container `c`, with FIFOs for `shape`. */
export async function prepareExec(rt: CriRuntime, c: ContainerRecord, cmd: string[], shape: ExecShape): Promise<PreparedExec> {
  if (c.state !== ContainerState.CONTAINER_RUNNING) {
    throw new BerthError('failed-precondition', `container ${c.id} is not running (${ContainerState[c.state]})`);
  }
  const { steps, lap } = stepTimer();
  const base = await containerProcessSpec(rt, c);
  const env = [...(base.env ?? [])];
  if (shape.tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
  const process = { ...base, args: cmd, env, terminal: shape.tty };

  const execId = newExecId();
  const fifoBase = join(ioDir(rt), `${c.id}-${execId}`);
  const fifos = {
    stdin: shape.stdin ? `${fifoBase}-stdin` : undefined,
    stdout: shape.stdout ? `${fifoBase}-stdout` : undefined,
    stderr: shape.stderr && !shape.tty ? `${fifoBase}-stderr` : undefined,
  };
  // Where output goes; set by start() before the process runs, so nothing arrives earlier.
  const sinks: { stdout?: Writable; stderr?: Writable } = {};
  const sources: { source: FifoSource; ended: Promise<void> }[] = [];
  const cleanups: (() => void)[] = [];
  let exited = false;
  let cleanedUp = false;
  // Straight to the shim where it can be (containerd/shim.ts), else through containerd; until
  // the process is created, a cleanup goes through containerd.
  let calls: ExecCalls = containerdExecCalls(rt.client, c.id);
  const cleanUp = (): void => {
    if (cleanedUp) return;
    cleanedUp = true;
    for (const fn of cleanups) fn();
    // The client gets its status without waiting for the shim to forget the process.
    void calls
      .delete(execId)
      .catch(() => undefined)
      .then(() => {
        for (const path of Object.values(fifos)) if (path) removeFifo(path);
      });
  };
  try {
    for (const path of Object.values(fifos)) if (path) ensureFifo(path);
    for (const [path, name] of [
      [fifos.stdout, 'stdout'],
      [fifos.stderr, 'stderr'],
    ] as const) {
      if (!path) continue;
      let source!: FifoSource;
      const ended = new Promise<void>((resolve) => {
        source = new FifoSource(path, {
          data: (chunk) => {
            const sink = sinks[name];
            if (sink && !sink.write(chunk)) {
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
    lap('fifos');
    calls = await createExecProcess(rt.shims, rt.client, c.id, execId, process, { ...fifos, terminal: shape.tty }, (err) =>
      rt.log.debug({ container: c.id, err: errorMessage(err) }, 'exec: the shim cannot be reached, going through containerd'),
    );
    lap('exec');
  } catch (err) {
    cleanUp();
    throw err;
  }

  return {
    abandon: cleanUp,
    async start(streams: ExecStreams): Promise<number> {
      try {
        sinks.stdout = streams.stdout;
        sinks.stderr = streams.stderr;
        // Wait goes in before Start, so a quick exit is not missed, and is observed at once: a
        // Start that fails (the container is being killed) must not leave its rejection unhandled.
        const exit = calls.wait(execId);
        void exit.then(
          () => (exited = true),
          () => (exited = true),
        );
        await calls.start(execId);
        lap('start');

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
        lap('wait');
        for (const s of sources) s.source.releaseKeepAlive();
        await Promise.race([Promise.all(sources.map((s) => s.ended)), sleep(execDrainMs)]);
        lap('drain');
        return result.exitStatus;
      } finally {
        rt.log.debug({ container: c.id, execId, via: calls.via, steps }, 'exec steps (ms)');
        cleanUp();
      }
    },
  };
}
