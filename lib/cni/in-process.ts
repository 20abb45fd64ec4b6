import type { PluginResult } from './cnid-protocol.js';

// berth's CNI plugins served inside this process: berthd's cnid component registers itself here
// when it starts, and berth-cri's CNI runner in the same berthd then calls the plugins directly
// (no exec, no socket). The one piece of process-wide state is this registration, because
// what it describes - which plugins this process has loaded - is the process's.

export interface LocalPluginHost {
  /** The build the plugins here come from (the shims' build id). */
  readonly buildId: string;
  /**
   * Run `plugin` as berth-cnid would run a request for it: with `env` as its environment and
   * `stdin` as its input. Resolves to what the executable would have printed and its exit code,
   * or to a string saying why this process declines (the caller then executes the plugin).
   */
  serve(plugin: string, env: Record<string, string>, stdin: string): Promise<PluginResult | string>;
}

let host: LocalPluginHost | undefined;

export function registerLocalPlugins(h: LocalPluginHost): void {
  host = h;
}

/** Undo registerLocalPlugins, if `h` is still the one registered. */
export function unregisterLocalPlugins(h: LocalPluginHost): void {
  if (host === h) host = undefined;
}

export function localPlugins(): LocalPluginHost | undefined {
  return host;
}
