import { PassThrough, type Readable, type Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { errorMessage } from '../../lib/errors.js';
import { stepTimer } from '../../lib/steps.js';
import { hasResizeStream, reportsStatusObject } from '../../lib/stream/protocols.js';
import type { SpdyStream } from '../../lib/stream/spdy-stream.js';
import type { SpdySession } from '../../lib/stream/spdy.js';
import type { WebSocket } from '../../lib/stream/websocket.js';
import { channelOptions, WsChannels } from '../../lib/stream/channels.js';
import { collectStreams } from './spdy-upgrade.js';
import type { ExecStreams } from './exec.js';

// remotecommand, the server side. Over SPDY the client opens one stream per channel, marked by
// a `streamType` header (error, stdin, stdout, stderr, resize), and the server answers on them;
// over WebSocket the channels are numbered and multiplexed on one connection (websocket.ts).
// When the command ends, the error stream carries the outcome: from v4.channel.k8s.io on a
// JSON Status (Success, or Failure with reason NonZeroExitCode and the code as a cause),
// before that a plain error message (nothing on success).

export interface RemoteCommandOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** How long the outcome and the output before it may take to reach the client. */
const finishTimeoutMs = 5000;

/** The outcome the error stream reports. */
export type CommandOutcome = { exitCode: number; command?: string[] } | { error: string };

export function statusJson(outcome: CommandOutcome): string {
  if ('error' in outcome) {
    return JSON.stringify({ metadata: {}, status: 'Failure', message: outcome.error, reason: 'InternalError', details: { causes: [{ message: outcome.error }] }, code: 500 });
  }
  if (outcome.exitCode === 0) return JSON.stringify({ metadata: {}, status: 'Success' });
  const message = `command terminated with non-zero exit code: error executing command ${JSON.stringify(outcome.command ?? [])}, exit code ${outcome.exitCode}`;
  return JSON.stringify({
    metadata: {},
    status: 'Failure',
    message,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(outcome.exitCode) }] },
  });
}

/** A terminal size is ~30 bytes of JSON; a "line" longer than this is not one, and is dropped unread. */
export const maxResizeLineBytes = 4096;

/** Terminal sizes from the resize stream: JSON objects, one per line as Go's encoder writes them. */
export function parseResizes(onSize: (size: { width: number; height: number }) => void): (chunk: Buffer) => void {
  let pending = '';
  let skipping = false;
  return (chunk) => {
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (skipping) {
        skipping = false;
        continue;
      }
      if (!line || line.length > maxResizeLineBytes) continue;
      try {
        const size = JSON.parse(line) as { Width?: number; Height?: number };
        if (size.Width && size.Height) onSize({ width: size.Width, height: size.Height });
      } catch {
        /* a malformed size is ignored, as kubelet does */
      }
    }
    // A line that never ends is not kept: the rest of it, up to its newline, is skipped.
    if (pending.length > maxResizeLineBytes) {
      pending = '';
      skipping = true;
    }
  };
}

/** The client's side of a remotecommand session, whatever carries it (SPDY streams, WebSocket channels). */
export interface RemoteCommandChannels {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** Terminal sizes as newline-separated JSON ({"Width":..,"Height":..}). */
  resize?: Readable;
  /** Whether the outcome goes out as a Status object (v4 and later) or as plain text. */
  statusObject: boolean;
  /** End stdout/stderr, send the outcome on the error channel, and end that too. */
  finish(status: string): void | Promise<void>;
  /** Resolves when the client's connection is gone. */
  clientGone: Promise<void>;
  /** Drop the connection. */
  close(): void;
}

/** The text the error channel carries for an outcome, by protocol generation. */
export function outcomeText(outcome: CommandOutcome, statusObject: boolean): string {
  if (statusObject) return statusJson(outcome);
  if ('error' in outcome) return outcome.error;
  return outcome.exitCode === 0 ? '' : `command terminated with non-zero exit code: exit code ${outcome.exitCode}`;
}

/**
 * Serve one remotecommand session: wait for the client's channels, hand them to `run` (exec or
 * attach), report the outcome on the error channel and close the connection. `abandon` is
 * called instead of `run` when the channels never arrive.
 */
export async function serveRemoteCommand(
  opening: Promise<RemoteCommandChannels>,
  options: RemoteCommandOptions,
  run: (streams: ExecStreams) => Promise<CommandOutcome>,
  abandon: () => void,
  log: Logger,
): Promise<void> {
  const { steps, lap } = stepTimer();
  let channels: RemoteCommandChannels;
  try {
    channels = await opening;
    lap('streams');
  } catch (err) {
    log.debug({ err: errorMessage(err) }, 'remotecommand: streams never arrived');
    abandon();
    return;
  }
  // A size can come before the command runs: the latest one is replayed to a new listener.
  const resizeListeners: ((size: { width: number; height: number }) => void)[] = [];
  let lastSize: { width: number; height: number } | undefined;
  channels.resize?.on(
    'data',
    parseResizes((size) => {
      lastSize = size;
      resizeListeners.forEach((l) => l(size));
    }),
  );
  for (const s of [channels.stdin, channels.stdout, channels.stderr, channels.resize]) s?.on('error', (err: Error) => log.debug({ err: err.message }, 'remotecommand stream'));

  let outcome: CommandOutcome;
  try {
    outcome = await run({
      stdin: channels.stdin,
      stdout: channels.stdout,
      stderr: channels.stderr,
      tty: options.tty,
      onResize: (l) => {
        resizeListeners.push(l);
        if (lastSize) l(lastSize);
      },
      clientGone: channels.clientGone,
    });
  } catch (err) {
    outcome = { error: errorMessage(err) };
  }
  lap('run');
  // A client that does not read cannot hold the session open: its output is dropped after a while.
  await Promise.race([channels.finish(outcomeText(outcome, channels.statusObject)), sleep(finishTimeoutMs)]);
  // The client reads the error channel to its end, then hangs up; do it for a client that lingers.
  await Promise.race([channels.clientGone, new Promise((r) => setTimeout(r, 5000))]);
  lap('hangup');
  log.debug({ steps }, 'remotecommand steps (ms)');
  channels.close();
}

/** The channels of a SPDY remotecommand session: one stream per channel, opened by the client. */
export async function spdyRemoteCommandChannels(session: SpdySession, protocol: string, options: RemoteCommandOptions): Promise<RemoteCommandChannels> {
  const wanted = ['error'];
  if (options.stdin) wanted.push('stdin');
  if (options.stdout) wanted.push('stdout');
  if (options.stderr && !options.tty) wanted.push('stderr');
  if (options.tty && hasResizeStream(protocol)) wanted.push('resize');
  const clientGone = new Promise<void>((resolve) => session.once('close', () => resolve()));
  let streams: Map<string, SpdyStream>;
  try {
    streams = await collectStreams(session, wanted);
  } catch (err) {
    session.close(true);
    throw err;
  }
  // What the client sends on the streams berth only writes to is read and dropped: unread, it
  // would pause the whole connection (a peer without flow control is held back by TCP).
  for (const name of ['error', 'stdout', 'stderr']) streams.get(name)?.resume();
  return {
    stdin: streams.get('stdin'),
    stdout: streams.get('stdout'),
    stderr: streams.get('stderr'),
    resize: streams.get('resize'),
    statusObject: reportsStatusObject(protocol),
    finish(status) {
      for (const name of ['stdout', 'stderr']) streams.get(name)?.end();
      streams.get('error')!.end(status);
    },
    clientGone,
    close: () => session.close(true),
  };
}

/**
 * The channels of a WebSocket remotecommand session: fixed numbers on one connection. As kubelet
 * does, an empty message on the lowest channel the server writes tells the client it is on.
 * stdin ends with v5's close message, or with the connection before v5.
 */
export function wsRemoteCommandChannels(ws: WebSocket, protocol: string, options: RemoteCommandOptions): RemoteCommandChannels {
  const mux = new WsChannels(ws, channelOptions(protocol));
  const stdout = options.stdout ? mux.writable(1) : undefined;
  const stderr = options.stderr && !options.tty ? mux.writable(2) : undefined;
  mux.send(stdout ? 1 : stderr ? 2 : 3, Buffer.alloc(0));
  // One size per message, with or without a newline: make it one per line for parseResizes.
  // Without a tty there is no resize channel: messages on it are dropped.
  const resize = options.tty ? new PassThrough() : undefined;
  if (resize) mux.readable(4).on('data', (chunk: Buffer) => resize.write(Buffer.concat([chunk, Buffer.from('\n')])));
  const clientGone = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  return {
    stdin: options.stdin ? mux.readable(0) : undefined,
    stdout,
    stderr,
    resize,
    statusObject: reportsStatusObject(protocol),
    async finish(status) {
      // Output written before the outcome must reach the client before it.
      await Promise.all(
        [stdout, stderr].filter((w): w is Writable => w !== undefined).map((w) => new Promise<void>((resolve) => w.end(() => resolve()))),
      );
      if (status) mux.send(3, status);
      ws.close();
    },
    clientGone,
    close: () => ws.terminate(),
  };
}
