import { readFileSync } from 'node:fs';
import { BerthError, errorMessage } from '../errors.js';
import { PluginInvoker, type InvokerOptions } from './invoke.js';
import { ResultCache, type CachedAttachment } from './result-cache.js';
import type { CniAttachment, CniCommand, CniResult } from './types.js';
import { isObject, type Json } from './validate.js';
import { compareVersions, convertResult, parseResult, requireSupportedVersion } from './version.js';

// What a runtime does with a network configuration list (libcni's AddNetworkList and friends):
// run each plugin in order with the previous result, inject name/cniVersion/runtimeConfig,
// and run DEL in reverse order. Used by the demo and the benchmark; the CRI shim builds on it
// (with invoke.ts's shortcuts on: berth's own plugins in-process or through berth-cnid).
// With a cache directory it also keeps libcni's attachment cache (result-cache.ts), which DEL,
// CHECK and GC read back.

export interface NetworkList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  disableGC?: boolean;
  plugins: Json[];
  /** The text the list was parsed from; cached with each attachment (libcni's list.Bytes). */
  bytes?: string;
}

export interface RuntimeConf {
  containerId: string;
  netns?: string;
  ifname: string;
  /** CNI_ARGS pairs. */
  args?: [string, string][];
  /** Values for plugins' declared capabilities, e.g. { portMappings: [...] }. */
  capabilityArgs?: Record<string, unknown>;
}

export function parseNetworkList(text: string, source = 'conflist'): NetworkList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new BerthError('decode', `${source}: not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new BerthError('decode', `${source}: expected a JSON object`);
  const cniVersion = requireSupportedVersion(raw.cniVersion, `${source}: cniVersion`);
  if (typeof raw.name !== 'string' || raw.name === '') throw new BerthError('invalid-config', `${source}: name: required field is missing`);
  if (!Array.isArray(raw.plugins) || raw.plugins.length === 0) throw new BerthError('invalid-config', `${source}: plugins: expected a non-empty array`);
  raw.plugins.forEach((p, i) => {
    if (!isObject(p) || typeof p.type !== 'string') throw new BerthError('invalid-config', `${source}: plugins[${i}].type: required field is missing`);
  });
  return { cniVersion, name: raw.name, disableCheck: raw.disableCheck === true, disableGC: raw.disableGC === true, plugins: raw.plugins as Json[], bytes: text };
}

export function loadNetworkList(path: string): NetworkList {
  return parseNetworkList(readFileSync(path, 'utf8'), path);
}

function pluginConfig(list: NetworkList, plugin: Json, rt: RuntimeConf | undefined, prevResult: CniResult | undefined): string {
  const conf: Json = { ...plugin, cniVersion: list.cniVersion, name: list.name };
  // Only the capabilities a plugin declares reach it, as runtimeConfig; `capabilities` itself is not passed.
  const caps = isObject(plugin.capabilities) ? plugin.capabilities : {};
  delete conf.capabilities;
  const runtimeConfig: Json = {};
  for (const [cap, on] of Object.entries(caps)) {
    if (on === true && rt?.capabilityArgs?.[cap] !== undefined) runtimeConfig[cap] = rt.capabilityArgs[cap];
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  if (prevResult) conf.prevResult = convertResult(prevResult, list.cniVersion);
  return JSON.stringify(conf);
}

function envFor(rt: RuntimeConf): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CNI_CONTAINERID: rt.containerId, CNI_IFNAME: rt.ifname };
  if (rt.netns) env.CNI_NETNS = rt.netns;
  else delete env.CNI_NETNS;
  if (rt.args?.length) env.CNI_ARGS = rt.args.map(([k, v]) => `${k}=${v}`).join(';');
  return env;
}

/** The text to cache for a list: what it was parsed from, else its fields as JSON. */
function listBytes(list: NetworkList): string {
  if (list.bytes !== undefined) return list.bytes;
  const { bytes: _bytes, ...fields } = list;
  return JSON.stringify(fields);
}

const atLeast = (version: string, minimum: string) => compareVersions(version, minimum) >= 0;

/** Throw the one error as it is, several as one error naming them all. */
function throwCollected(errors: unknown[], what: string): void {
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new BerthError('internal', `${what}: ${errors.map(errorMessage).join('; ')}`);
}

export interface CniRunnerOptions {
  /**
   * Keep libcni's attachment cache under this directory (berth-cri passes /var/lib/cni,
   * defaultCniCacheDir). Without it nothing is cached, as the demo and the benchmark want.
   */
  cacheDir?: string;
  /** Told of every plugin execution (berth-cri's CNI duration metrics). */
  observe?: (plugin: string, verb: CniCommand, seconds: number, ok: boolean) => void;
  /** How plugin calls are made (invoke.ts): timeout, whether berth's plugins may skip the exec, a call log. */
  invoker?: InvokerOptions;
}

export class CniRunner {
  readonly cache: ResultCache | undefined;
  private readonly invoker: PluginInvoker;

  private readonly observe: CniRunnerOptions['observe'];

  constructor(private readonly binDirs: string[], options: CniRunnerOptions = {}) {
    this.cache = options.cacheDir === undefined ? undefined : new ResultCache(options.cacheDir);
    this.observe = options.observe;
    this.invoker = new PluginInvoker(options.invoker);
  }

  private async exec(type: string, verb: CniCommand, stdin: string, env: NodeJS.ProcessEnv): Promise<CniResult | undefined> {
    const observe = this.observe;
    if (!observe) return this.invoker.invoke(type, verb, stdin, env, this.binDirs);
    const started = process.hrtime.bigint();
    let ok = false;
    try {
      const result = await this.invoker.invoke(type, verb, stdin, env, this.binDirs);
      ok = true;
      return result;
    } finally {
      observe(type, verb, Number(process.hrtime.bigint() - started) / 1e9, ok);
    }
  }

  private env(rt: RuntimeConf): NodeJS.ProcessEnv {
    return { ...envFor(rt), CNI_PATH: this.binDirs.join(':') };
  }

  /** The cache entry of an attachment; a corrupt entry is dropped, as libcni does. */
  private cachedEntry(networkName: string, rt: Pick<RuntimeConf, 'containerId' | 'ifname'>): CachedAttachment | undefined {
    if (!this.cache) return undefined;
    try {
      return this.cache.read(networkName, rt.containerId, rt.ifname);
    } catch (err) {
      if (err instanceof BerthError && err.kind === 'decode') {
        this.cache.remove(networkName, rt.containerId, rt.ifname);
        return undefined;
      }
      throw err;
    }
  }

  /** Runs the plugins in order, each with the previous one's result; caches the final result. */
  async add(list: NetworkList, rt: RuntimeConf): Promise<CniResult | undefined> {
    let prev: CniResult | undefined;
    for (const plugin of list.plugins) {
      prev = await this.exec(plugin.type as string, 'ADD', pluginConfig(list, plugin, rt, prev), this.env(rt));
    }
    if (this.cache) {
      // As libcni: an ADD whose result cannot be recorded fails, so the runtime tears it down
      // instead of leaving an attachment that a later DEL or GC would not know about.
      try {
        this.cache.write({
          networkName: list.name,
          containerId: rt.containerId,
          ifName: rt.ifname,
          ...(rt.netns ? { netns: rt.netns } : {}),
          config: listBytes(list),
          cniArgs: rt.args ?? [],
          capabilityArgs: rt.capabilityArgs ?? {},
          ...(prev ? { result: convertResult(prev, list.cniVersion) } : {}),
        });
      } catch (err) {
        throw new BerthError('io', `failed to cache the result of network ${JSON.stringify(list.name)} for ${rt.containerId}/${rt.ifname}: ${errorMessage(err)}`, { cause: err });
      }
    }
    return prev;
  }

  /**
   * CHECK every plugin against `result`, or, without one, against the cached ADD result; with
   * neither there is nothing to check against, which is an error (as in libcni).
   */
  async check(list: NetworkList, rt: RuntimeConf, result?: CniResult): Promise<void> {
    if (list.disableCheck) return;
    const prev = result ?? this.getCachedResult(list.name, rt);
    if (!prev) {
      throw new BerthError('not-found', `CHECK: no result of network ${JSON.stringify(list.name)} for ${rt.containerId}/${rt.ifname} was given or cached`);
    }
    for (const plugin of list.plugins) {
      await this.exec(plugin.type as string, 'CHECK', pluginConfig(list, plugin, rt, prev), this.env(rt));
    }
  }

  /**
   * DEL runs every plugin in reverse order; the first error is reported after all ran. When the
   * attachment is cached, the cached list runs (the one the ADD used, even if the file on disk
   * changed since), the cached result is the prevResult unless `result` is given (spec 0.4.0+),
   * and the cached CNI_ARGS and capability args fill in what `rt` leaves out. The entry is removed
   * once DEL succeeded.
   */
  async del(list: NetworkList, rt: RuntimeConf, result?: CniResult): Promise<void> {
    const entry = this.cachedEntry(list.name, rt);
    let runList = list;
    let prev = result;
    let runRt = rt;
    if (entry) {
      try {
        runList = parseNetworkList(entry.config, `cached config of ${list.name}`);
      } catch {
        runList = list;
      }
      if (!prev && entry.result && atLeast(runList.cniVersion, '0.4.0')) {
        try {
          prev = parseResult(entry.result, 'cached result');
        } catch {
          prev = undefined;
        }
      }
      runRt = { ...rt, args: rt.args ?? entry.cniArgs, capabilityArgs: rt.capabilityArgs ?? entry.capabilityArgs };
    }
    let first: unknown;
    for (const plugin of [...runList.plugins].reverse()) {
      try {
        await this.exec(plugin.type as string, 'DEL', pluginConfig(runList, plugin, runRt, prev), this.env(runRt));
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
    this.cache?.remove(list.name, rt.containerId, rt.ifname);
  }

  /**
   * GC (spec 1.1.0): first DEL every cached attachment of this network that is not in `valid`
   * (which also drops its cache entry), then send GC with cni.dev/valid-attachments to each
   * plugin, if the list speaks 1.1.0 or later. Errors are collected and reported at the end.
   */
  async gc(list: NetworkList, valid: CniAttachment[]): Promise<void> {
    if (list.disableGC) return;
    const errors: unknown[] = [];
    if (this.cache) {
      const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
      for (const entry of this.cache.list({ networkName: list.name })) {
        if (keep.has(`${entry.containerId}\0${entry.ifName}`)) continue;
        const rt: RuntimeConf = { containerId: entry.containerId, ifname: entry.ifName, args: entry.cniArgs, capabilityArgs: entry.capabilityArgs };
        if (entry.netns) rt.netns = entry.netns;
        try {
          await this.del(list, rt);
        } catch (err) {
          errors.push(new BerthError('internal', `failed to delete stale attachment ${entry.containerId}/${entry.ifName}: ${errorMessage(err)}`, { cause: err }));
        }
      }
    }
    if (atLeast(list.cniVersion, '1.1.0')) {
      for (const plugin of list.plugins) {
        const conf = JSON.parse(pluginConfig(list, plugin, undefined, undefined)) as Json;
        conf['cni.dev/valid-attachments'] = valid;
        try {
          await this.exec(plugin.type as string, 'GC', JSON.stringify(conf), { ...process.env, CNI_PATH: this.binDirs.join(':') });
        } catch (err) {
          errors.push(err);
        }
      }
    }
    throwCollected(errors, `GC of network ${JSON.stringify(list.name)}`);
  }

  /** STATUS (spec 1.1.0); older lists have no such verb, so they count as ready, as in libcni. */
  async status(list: NetworkList): Promise<void> {
    if (!atLeast(list.cniVersion, '1.1.0')) return;
    for (const plugin of list.plugins) {
      await this.exec(plugin.type as string, 'STATUS', pluginConfig(list, plugin, undefined, undefined), { ...process.env, CNI_PATH: this.binDirs.join(':') });
    }
  }

  /**
   * The cached ADD result of an attachment (e.g. a pod's IPs after berth-cri restarted), in the
   * internal 1.1.0 shape; undefined when nothing usable is cached or there is no cache.
   */
  getCachedResult(network: NetworkList | string, rt: Pick<RuntimeConf, 'containerId' | 'ifname'>): CniResult | undefined {
    const name = typeof network === 'string' ? network : network.name;
    const entry = this.cachedEntry(name, rt);
    if (!entry?.result) return undefined;
    try {
      return parseResult(entry.result, 'cached result');
    } catch {
      return undefined;
    }
  }

  /** What the ADD of an attachment ran with: its list and runtime arguments (libcni's cached config). */
  getCachedConfig(network: NetworkList | string, rt: Pick<RuntimeConf, 'containerId' | 'ifname'>): { list: NetworkList; rt: RuntimeConf } | undefined {
    const name = typeof network === 'string' ? network : network.name;
    const entry = this.cachedEntry(name, rt);
    if (!entry) return undefined;
    const list = parseNetworkList(entry.config, `cached config of ${name}`);
    const cachedRt: RuntimeConf = { containerId: entry.containerId, ifname: entry.ifName, args: entry.cniArgs, capabilityArgs: entry.capabilityArgs };
    if (entry.netns) cachedRt.netns = entry.netns;
    return { list, rt: cachedRt };
  }

  /** Cached attachments, of one container if given (libcni's GetCachedAttachments). */
  getCachedAttachments(containerId?: string): CachedAttachment[] {
    return this.cache?.list(containerId === undefined ? {} : { containerId }) ?? [];
  }
}
