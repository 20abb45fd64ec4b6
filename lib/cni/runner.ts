import { readFileSync } from 'node:fs';
import { BerthError } from '../errors.js';
import { execPlugin } from './delegate.js';
import type { CniAttachment, CniResult } from './types.js';
import { isObject, type Json } from './validate.js';
import { convertResult, requireSupportedVersion } from './version.js';

// What a runtime does with a network configuration list (libcni's AddNetworkList and friends):
// run each plugin in order with the previous result, inject name/cniVersion/runtimeConfig,
// and run DEL in reverse order. Used by the demo and the benchmark; the CRI shim builds on it.

export interface NetworkList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  disableGC?: boolean;
  plugins: Json[];
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
  return { cniVersion, name: raw.name, disableCheck: raw.disableCheck === true, disableGC: raw.disableGC === true, plugins: raw.plugins as Json[] };
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

export class CniRunner {
  constructor(private readonly binDirs: string[]) {}

  private env(rt: RuntimeConf): NodeJS.ProcessEnv {
    return { ...envFor(rt), CNI_PATH: this.binDirs.join(':') };
  }

  async add(list: NetworkList, rt: RuntimeConf): Promise<CniResult | undefined> {
    let prev: CniResult | undefined;
    for (const plugin of list.plugins) {
      prev = await execPlugin(plugin.type as string, 'ADD', pluginConfig(list, plugin, rt, prev), this.env(rt), this.binDirs);
    }
    return prev;
  }

  async check(list: NetworkList, rt: RuntimeConf, result: CniResult): Promise<void> {
    if (list.disableCheck) return;
    for (const plugin of list.plugins) {
      await execPlugin(plugin.type as string, 'CHECK', pluginConfig(list, plugin, rt, result), this.env(rt), this.binDirs);
    }
  }

  /** DEL runs every plugin in reverse order; the first error is reported after all ran. */
  async del(list: NetworkList, rt: RuntimeConf, result?: CniResult): Promise<void> {
    let first: unknown;
    for (const plugin of [...list.plugins].reverse()) {
      try {
        await execPlugin(plugin.type as string, 'DEL', pluginConfig(list, plugin, rt, result), this.env(rt), this.binDirs);
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }

  async gc(list: NetworkList, valid: CniAttachment[]): Promise<void> {
    if (list.disableGC) return;
    for (const plugin of list.plugins) {
      const conf = JSON.parse(pluginConfig(list, plugin, undefined, undefined)) as Json;
      conf['cni.dev/valid-attachments'] = valid;
      await execPlugin(plugin.type as string, 'GC', JSON.stringify(conf), { ...process.env, CNI_PATH: this.binDirs.join(':') }, this.binDirs);
    }
  }

  async status(list: NetworkList): Promise<void> {
    for (const plugin of list.plugins) {
      await execPlugin(plugin.type as string, 'STATUS', pluginConfig(list, plugin, undefined, undefined), { ...process.env, CNI_PATH: this.binDirs.join(':') }, this.binDirs);
    }
  }
}
