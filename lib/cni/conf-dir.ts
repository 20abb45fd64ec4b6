import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { BerthError, errorMessage } from '../errors.js';
import { parseNetworkList, type NetworkList } from './runner.js';
import { isObject } from './validate.js';

// Picking the pod network from a CNI configuration directory (/etc/cni/net.d) the way kubelet
// and containerd do with libcni: *.conflist, *.conf and *.json files in lexical order, the first
// one that loads wins. A .conflist is a network configuration list; the others hold a single
// plugin configuration, which is wrapped into a one-plugin list.

export const confExtensions = ['.conf', '.conflist', '.json'] as const;

export interface SkippedConfFile {
  file: string;
  reason: string;
}

export interface DefaultNetwork {
  list: NetworkList;
  /** The file the list came from. */
  file: string;
  /** Files before it that did not load, and why, for the caller to log. */
  skipped: SkippedConfFile[];
}

/** The configuration files of a directory, sorted lexically by name. */
export async function confFiles(confDir: string): Promise<string[]> {
  const entries = await readdir(confDir, { withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory() && (confExtensions as readonly string[]).includes(extname(e.name)))
    .map((e) => e.name)
    .sort()
    .map((name) => join(confDir, name));
}

/**
 * A single plugin configuration (.conf/.json) as a one-plugin list, named and versioned after the
 * plugin; the list text is what libcni would cache for it.
 */
export function parseSinglePluginConf(text: string, source: string): NetworkList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new BerthError('decode', `${source}: not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new BerthError('decode', `${source}: expected a JSON object`);
  if (typeof raw.type !== 'string' || raw.type === '') throw new BerthError('invalid-config', `${source}: type: required field is missing`);
  const wrapped = JSON.stringify({ cniVersion: raw.cniVersion, name: raw.name, plugins: [raw] });
  return parseNetworkList(wrapped, source);
}

export function parseConfFile(text: string, file: string): NetworkList {
  return extname(file) === '.conflist' ? parseNetworkList(text, file) : parseSinglePluginConf(text, file);
}

/**
 * The network a runtime uses for pods: the first file of `confDir` that loads. Throws
 * 'not-available' naming the directory (and what was wrong with each file) when none does.
 */
export async function loadDefaultNetwork(confDir: string): Promise<DefaultNetwork> {
  let files: string[];
  try {
    files = await confFiles(confDir);
  } catch (err) {
    throw new BerthError('not-available', `no CNI network configuration in ${confDir}: ${errorMessage(err)}`, { cause: err });
  }
  const skipped: SkippedConfFile[] = [];
  for (const file of files) {
    try {
      const list = parseConfFile(await readFile(file, 'utf8'), file);
      return { list, file, skipped };
    } catch (err) {
      skipped.push({ file, reason: errorMessage(err) });
    }
  }
  const why = skipped.length === 0 ? `no ${confExtensions.map((e) => `*${e}`).join(', ')} files` : `${skipped.length} file(s) did not load`;
  throw new BerthError('not-available', `no valid CNI network configuration in ${confDir}: ${why}`, {
    details: skipped.map((s) => `${s.file}: ${s.reason}`).join('\n') || undefined,
  });
}
