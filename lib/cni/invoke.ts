import { BerthError, errorMessage } from '../errors.js';
import { run } from '../exec.js';
import { berthShimBuildId } from './berth-shim.js';
import { callCnid, defaultCnidSocket } from './cnid-client.js';
import type { PluginResult } from './cnid-protocol.js';
import { interpretOutput, requirePlugin } from './delegate.js';
import { localPlugins } from './in-process.js';
import type { CniCommand, CniResult } from './types.js';

// How a runtime runs one plugin call (libcni's invoke.ExecPluginWithResult), by the cheapest of
// three paths that give the same answer:
//   in-process  berth's plugin, and this process hosts berth's plugins of the same build (berthd
//               with the cnid component): called directly;
//   cnid        berth's plugin, and a berth-cnid of the same build serves it on the socket the
//               shim would use ($BERTH_CNI_SOCKET or /run/berth/cni.sock): the shim's own request,
//               sent from here, minus the exec;
//   exec        anything else (foreign plugins, no daemon, a daemon that declines): the executable.
// Every path is bounded by a timeout, and whatever goes wrong comes back as a CNI error.

export type CallPath = 'in-process' | 'cnid' | 'exec';

export interface PluginCallRecord {
  plugin: string;
  command: CniCommand;
  via: CallPath;
  ms: number;
  /** Why a berth plugin was executed after all (the daemon or this process declined). */
  declined?: string;
}

export interface InvokerOptions {
  /** Upper bound of one plugin call (default 120 s, kubelet's runtime request timeout). */
  timeoutMs?: number;
  /**
   * true: berth's plugins may take the in-process or cnid path (berth-cri). Off by default, so
   * the demo and bench/cni measure what a plain libcni runtime gets: the executable every time.
   */
  shortcuts?: boolean;
  /** Told about every call (berth-cri logs them at debug level). */
  onCall?: (record: PluginCallRecord) => void;
}

export const defaultPluginTimeoutMs = 120_000;

function plainEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

const decode = (r: PluginResult) => ({ exitCode: r.exitCode, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') });

export class PluginInvoker {
  private readonly timeoutMs: number;

  constructor(private readonly options: InvokerOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? defaultPluginTimeoutMs;
  }

  async invoke(type: string, command: CniCommand, stdin: string, env: NodeJS.ProcessEnv, cniPath: readonly string[]): Promise<CniResult | undefined> {
    const executable = requirePlugin(type, cniPath);
    const fullEnv = plainEnv({ ...env, CNI_COMMAND: command });
    const started = performance.now();
    let via: CallPath = 'exec';
    let declined: string | undefined;
    try {
      const buildId = this.options.shortcuts ? berthShimBuildId(executable) : undefined;
      let out: { exitCode: number; stdout: string; stderr: string } | undefined;
      if (buildId !== undefined) {
        // The shim names the plugin by the name it is run as: the file's name, which is `type`.
        const shortcut = await this.viaShortcut(buildId, type, fullEnv, stdin);
        if (typeof shortcut === 'string') declined = shortcut;
        else ({ via, out } = shortcut);
      }
      out ??= await this.viaExec(executable, type, fullEnv, stdin);
      return interpretOutput(type, command, out);
    } finally {
      this.options.onCall?.({ plugin: type, command, via, ms: Math.round((performance.now() - started) * 10) / 10, ...(declined ? { declined } : {}) });
    }
  }

  /** In-process or through berth-cnid; a string says why neither would take the call. */
  private async viaShortcut(buildId: string, plugin: string, env: Record<string, string>, stdin: string): Promise<{ via: CallPath; out: ReturnType<typeof decode> } | string> {
    const local = localPlugins();
    let reason: string | undefined;
    if (local && local.buildId === buildId) {
      const served = await this.bounded(plugin, () => guarded(plugin, () => local.serve(plugin, env, stdin)));
      if (typeof served !== 'string') return { via: 'in-process', out: decode(served) };
      reason = `in-process: ${served}`;
    }
    const socketPath = env.BERTH_CNI_SOCKET || defaultCnidSocket;
    const answer = await this.bounded(plugin, (signal) => callCnid({ socketPath, buildId, plugin, env, stdin, signal }));
    if (answer.kind === 'served') return { via: 'cnid', out: decode(answer.result) };
    return reason ? `${reason}; ${answer.reason}` : answer.reason;
  }

  private async viaExec(executable: string, plugin: string, env: Record<string, string>, stdin: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const started = performance.now();
    const result = await run(executable, [], { input: stdin, env, allowFailure: true, timeoutMs: this.timeoutMs });
    if (result.code !== 0 && performance.now() - started >= this.timeoutMs) throw timedOut(plugin, this.timeoutMs);
    return { exitCode: result.code, stdout: result.stdout, stderr: result.stderr };
  }

  /** `call` within the timeout; past it the signal aborts and the call fails with a CNI error. */
  private async bounded<T>(plugin: string, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = timedOut(plugin, this.timeoutMs);
        controller.abort(err);
        reject(err);
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([call(controller.signal), expired]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function timedOut(plugin: string, ms: number): BerthError {
  return new BerthError('deadline-exceeded', `${plugin}: no answer within ${ms} ms`);
}

/**
 * An in-process plugin's promise, made safe to wait on: a throw (sync or async) becomes a CNI
 * error object, so that neither a failing plugin nor its late outcome after a timeout can
 * surface as an exception or an unhandled rejection in the runtime.
 */
function guarded(plugin: string, start: () => Promise<PluginResult | string>): Promise<PluginResult | string> {
  let work: Promise<PluginResult | string>;
  try {
    work = start();
  } catch (err) {
    work = Promise.reject(err);
  }
  return work.catch((err: unknown): PluginResult => ({
    exitCode: 1,
    stdout: Buffer.from(JSON.stringify({ cniVersion: '1.1.0', code: 999, msg: `${plugin} (in-process): ${errorMessage(err)}` }) + '\n'),
    stderr: Buffer.alloc(0),
  }));
}
