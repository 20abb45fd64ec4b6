import type { Logger } from 'pino';
import { errorMessage } from '../../lib/errors.js';
import type { SpdySession, SpdyStream } from '../../lib/spdy.js';
import { collectStreams } from './spdy-upgrade.js';
import type { ExecStreams } from './exec.js';

// remotecommand over SPDY, the server side: the client opens one stream per channel, marked by
// a `streamType` header (error, stdin, stdout, stderr, resize), and the server answers on them.
// When the command ends, the error stream carries the outcome: from v4.channel.k8s.io on a
// JSON Status (Success, or Failure with reason NonZeroExitCode and the code as a cause),
// before that a plain error message (nothing on success).

export interface RemoteCommandOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

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

/** Terminal sizes from the resize stream: JSON objects, one per line as Go's encoder writes them. */
export function parseResizes(onSize: (size: { width: number; height: number }) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (!line) continue;
      try {
        const size = JSON.parse(line) as { Width?: number; Height?: number };
        if (size.Width && size.Height) onSize({ width: size.Width, height: size.Height });
      } catch {
        /* a malformed size is ignored, as kubelet does */
      }
    }
  };
}

/**
 * Serve one remotecommand session: wait for the client's streams, hand them to `run` (exec or
 * attach), report the outcome on the error stream and close the connection.
 */
export async function serveRemoteCommand(
  session: SpdySession,
  protocol: string,
  options: RemoteCommandOptions,
  run: (streams: ExecStreams) => Promise<CommandOutcome>,
  log: Logger,
): Promise<void> {
  const wanted = ['error'];
  if (options.stdin) wanted.push('stdin');
  if (options.stdout) wanted.push('stdout');
  if (options.stderr && !options.tty) wanted.push('stderr');
  const resizeCapable = protocol === 'v4.channel.k8s.io' || protocol === 'v3.channel.k8s.io';
  if (options.tty && resizeCapable) wanted.push('resize');
  const clientGone = new Promise<void>((resolve) => session.once('close', () => resolve()));
  let streams: Map<string, SpdyStream>;
  try {
    streams = await collectStreams(session, wanted);
  } catch (err) {
    log.debug({ err: errorMessage(err) }, 'remotecommand: streams never arrived');
    session.close(true);
    return;
  }
  // A size can come before the command runs: the latest one is replayed to a new listener.
  const resizeListeners: ((size: { width: number; height: number }) => void)[] = [];
  let lastSize: { width: number; height: number } | undefined;
  const resize = streams.get('resize');
  resize?.on(
    'data',
    parseResizes((size) => {
      lastSize = size;
      resizeListeners.forEach((l) => l(size));
    }),
  );
  resize?.on('error', () => undefined);
  for (const s of streams.values()) s.on('error', (err) => log.debug({ err: err.message }, 'remotecommand stream'));

  let outcome: CommandOutcome;
  try {
    outcome = await run({
      stdin: streams.get('stdin'),
      stdout: streams.get('stdout'),
      stderr: streams.get('stderr'),
      tty: options.tty,
      onResize: (l) => {
        resizeListeners.push(l);
        if (lastSize) l(lastSize);
      },
      clientGone,
    });
  } catch (err) {
    outcome = { error: errorMessage(err) };
  }
  const error = streams.get('error')!;
  for (const name of ['stdout', 'stderr']) streams.get(name)?.end();
  if (protocol === 'v4.channel.k8s.io') error.end(statusJson(outcome));
  else if ('error' in outcome) error.end(outcome.error);
  else error.end(outcome.exitCode === 0 ? '' : `command terminated with non-zero exit code: exit code ${outcome.exitCode}`);
  // The client reads the error stream to its end, then hangs up; do it for a client that lingers.
  await Promise.race([clientGone, new Promise((r) => setTimeout(r, 5000))]);
  session.close(true);
}
