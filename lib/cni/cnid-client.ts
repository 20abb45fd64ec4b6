import { readFileSync, readlinkSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { BerthError, errorMessage } from '../errors.js';
import { encodeFrame, encodeHello, FrameDecoder, parseResult, parseVerdict, type CallerContext, type PluginResult } from './cnid-protocol.js';

// berth-cnid's protocol (cnid-protocol.ts) spoken from Node, as the C shim speaks it: a runtime
// that would exec berth's shim asks the daemon directly and saves the exec. Until the daemon says
// "ok" nothing has run, so any trouble up to then (no daemon, another build, a caller the daemon
// will not serve, no verdict in time) is a decline and the caller executes the plugin; after "ok"
// the request is the daemon's, and losing the connection is an error, never a second run.

export const defaultCnidSocket = '/run/berth/cni.sock';
/** As the shim: long enough for a socket-activated daemon to start, short of hanging on one that never will. */
export const verdictTimeoutMs = 5_000;

export type CnidAnswer = { kind: 'served'; result: PluginResult } | { kind: 'declined'; reason: string };

export interface CnidRequest {
  socketPath: string;
  /** The build id of the shim that would otherwise run (lib/cni/berth-shim.ts). */
  buildId: string;
  plugin: string;
  /** The plugin's whole environment, CNI_COMMAND included. */
  env: Record<string, string>;
  stdin: string;
  /** Aborting drops the connection: the call rejects (a request under way finishes in the daemon). */
  signal?: AbortSignal;
}

/** What this process is, as the shim reports itself; the daemon checks it against the kernel. */
function callerContext(): CallerContext {
  const status = readFileSync('/proc/self/status', 'utf8');
  const umask = /^Umask:\s*([0-7]+)$/m.exec(status)?.[1];
  return {
    cwd: process.cwd(),
    netns: readlinkSync('/proc/self/ns/net'),
    mntns: readlinkSync('/proc/self/ns/mnt'),
    euid: process.geteuid?.() ?? 0,
    umask: umask === undefined ? 0o022 : parseInt(umask, 8),
  };
}

const lostAfterOk = 'berth-cnid stopped before answering; the operation may be half done, try again';

export function callCnid(req: CnidRequest): Promise<CnidAnswer> {
  let hello: Buffer;
  try {
    hello = encodeHello({ buildId: req.buildId, plugin: req.plugin, context: callerContext(), env: req.env });
  } catch (err) {
    return Promise.resolve({ kind: 'declined', reason: `cannot describe this process to berth-cnid: ${errorMessage(err)}` });
  }
  return new Promise((resolve, reject) => {
    let accepted = false;
    let settled = false;
    const decoder = new FrameDecoder();
    const frames: Buffer[] = [];
    const socket: Socket = createConnection(req.socketPath);
    const finish = (outcome: { answer: CnidAnswer } | { error: Error }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(verdictTimer);
      req.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if ('answer' in outcome) resolve(outcome.answer);
      else reject(outcome.error);
    };
    // Before "ok" every failure is a decline; after it, an error the runtime sees.
    const fail = (why: string): void =>
      finish(accepted ? { error: new BerthError('try-again', `${req.plugin}: ${lostAfterOk} (${why})`) } : { answer: { kind: 'declined', reason: why } });
    const verdictTimer = setTimeout(() => fail(`no verdict from berth-cnid within ${verdictTimeoutMs} ms`), verdictTimeoutMs);
    const onAbort = (): void => finish({ error: req.signal!.reason instanceof Error ? req.signal!.reason : new BerthError('aborted', `${req.plugin}: call aborted`) });
    if (req.signal?.aborted) return onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });

    socket.on('connect', () => socket.write(hello));
    socket.on('error', (err) => fail(errorMessage(err)));
    socket.on('close', () => fail('the connection closed'));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of decoder.push(chunk)) {
          if (!accepted) {
            const verdict = parseVerdict(frame);
            if (verdict.kind !== 'ok') return finish({ answer: { kind: 'declined', reason: `berth-cnid: ${verdict.kind}: ${verdict.reason}` } });
            accepted = true;
            clearTimeout(verdictTimer);
            socket.write(encodeFrame(req.stdin));
            continue;
          }
          frames.push(frame);
          if (frames.length === 3) return finish({ answer: { kind: 'served', result: parseResult(frames) } });
        }
      } catch (err) {
        fail(errorMessage(err));
      }
    });
  });
}
