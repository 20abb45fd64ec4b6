import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeFileIfExists, writeFileAtomic } from '../atomic-file.js';
import { BerthError } from '../errors.js';
import { isObject } from './validate.js';

// libcni's attachment cache, file for file: <cacheDir>/results/<network>-<containerID>-<ifname>
// holds what an ADD was run with and what it returned, so DEL, CHECK and GC still work after the
// runtime restarted or the conflist on disk changed. Same layout as libcni, so either can read
// the other's entries.

export const defaultCniCacheDir = '/var/lib/cni';
const cacheKind = 'cniCacheV1';

export interface CachedAttachment {
  networkName: string;
  containerId: string;
  ifName: string;
  netns?: string;
  /** The network configuration list text the ADD ran with. */
  config: string;
  cniArgs: [string, string][];
  capabilityArgs: Record<string, unknown>;
  /** The ADD result as returned to the runtime, in the list's cniVersion. */
  result?: Record<string, unknown>;
}

// The on-disk shape. `config` is base64, as Go encodes a []byte.
interface CacheFile {
  kind: typeof cacheKind;
  containerId: string;
  config: string;
  ifName: string;
  networkName: string;
  netns?: string;
  cniArgs?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

function requireNamePart(value: string, field: string): void {
  // The parts become one file name: nothing that could climb out of the results directory.
  if (value === '' || value === '.' || value === '..' || value.includes('/') || value.includes('\0')) {
    throw new BerthError('invalid-argument', `CNI cache: ${field}: invalid value ${JSON.stringify(value)}`);
  }
}

function decodeEntry(text: string, source: string): CachedAttachment {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new BerthError('decode', `${source}: not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw) || raw.kind !== cacheKind) throw new BerthError('decode', `${source}: kind: expected ${JSON.stringify(cacheKind)}`);
  for (const key of ['containerId', 'ifName', 'networkName', 'config'] as const) {
    if (typeof raw[key] !== 'string') throw new BerthError('decode', `${source}: ${key}: expected a string`);
  }
  const file = raw as unknown as CacheFile;
  const entry: CachedAttachment = {
    networkName: file.networkName,
    containerId: file.containerId,
    ifName: file.ifName,
    config: Buffer.from(file.config, 'base64').toString('utf8'),
    cniArgs: Array.isArray(file.cniArgs) ? file.cniArgs.filter((p) => Array.isArray(p) && p.length === 2).map(([k, v]) => [String(k), String(v)]) : [],
    capabilityArgs: isObject(file.capabilityArgs) ? file.capabilityArgs : {},
  };
  if (typeof file.netns === 'string' && file.netns !== '') entry.netns = file.netns;
  if (isObject(file.result)) entry.result = file.result;
  return entry;
}

function encodeEntry(entry: CachedAttachment): string {
  const file: CacheFile = {
    kind: cacheKind,
    containerId: entry.containerId,
    config: Buffer.from(entry.config, 'utf8').toString('base64'),
    ifName: entry.ifName,
    networkName: entry.networkName,
  };
  // Empty fields are left out, as Go's omitempty does.
  if (entry.netns) file.netns = entry.netns;
  if (entry.cniArgs.length > 0) file.cniArgs = entry.cniArgs;
  if (Object.keys(entry.capabilityArgs).length > 0) file.capabilityArgs = entry.capabilityArgs;
  if (entry.result) file.result = entry.result;
  return JSON.stringify(file);
}

export class ResultCache {
  readonly resultsDir: string;

  constructor(readonly cacheDir: string = defaultCniCacheDir) {
    this.resultsDir = join(cacheDir, 'results');
  }

  pathFor(networkName: string, containerId: string, ifName: string): string {
    requireNamePart(networkName, 'networkName');
    requireNamePart(containerId, 'containerId');
    requireNamePart(ifName, 'ifName');
    return join(this.resultsDir, `${networkName}-${containerId}-${ifName}`);
  }

  /** Record an attachment, replacing any earlier entry for it; durable before it returns. */
  write(entry: CachedAttachment): void {
    const path = this.pathFor(entry.networkName, entry.containerId, entry.ifName);
    // The entries hold pod arguments; keep them to root, as libcni does.
    mkdirSync(this.resultsDir, { recursive: true, mode: 0o700 });
    writeFileAtomic(path, encodeEntry(entry), { mode: 0o600 });
  }

  /** The entry for an attachment, undefined when there is none; a corrupt entry is a 'decode' error. */
  read(networkName: string, containerId: string, ifName: string): CachedAttachment | undefined {
    const path = this.pathFor(networkName, containerId, ifName);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return decodeEntry(text, path);
  }

  /** Forget an attachment; returns whether there was an entry. */
  remove(networkName: string, containerId: string, ifName: string): boolean {
    return removeFileIfExists(this.pathFor(networkName, containerId, ifName));
  }

  /**
   * Every readable entry, optionally of one network or container. Names cannot be split back into
   * their parts (network names may hold dashes), so each file is read; unreadable ones are skipped.
   */
  list(filter: { networkName?: string; containerId?: string } = {}): CachedAttachment[] {
    let names: string[];
    try {
      names = readdirSync(this.resultsDir).filter((n) => !n.startsWith('.')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: CachedAttachment[] = [];
    for (const name of names) {
      const path = join(this.resultsDir, name);
      let entry: CachedAttachment;
      try {
        entry = decodeEntry(readFileSync(path, 'utf8'), path);
      } catch {
        continue;
      }
      if (filter.networkName !== undefined && entry.networkName !== filter.networkName) continue;
      if (filter.containerId !== undefined && entry.containerId !== filter.containerId) continue;
      out.push(entry);
    }
    return out;
  }
}
