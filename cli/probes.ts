// What `berth doctor` and `berth status` both ask of a node: berth's configuration (read with
// berthd's own parser, so both see exactly what berthd would run), berthd's HTTP endpoint, a
// unix socket that may or may not answer, and containerd's version. Every probe has a short
// deadline: a hung daemon must make these commands report it, not hang with it.
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { defaultConfigFile, parseBerthdConfig, type BerthdConfig } from '../berthd/config.js';
import { ContainerdClient } from '../cri-shim/containerd/client.js';
import { loadConfigFile } from '../lib/config-file.js';
import { errorMessage } from '../lib/errors.js';

export const probeTimeoutMs = 3000;

export interface LoadedConfig {
  /** The file read, or the one that was looked for. */
  path: string;
  config?: BerthdConfig;
  /** Why there is no config: the file is missing, or the parser's message (naming section.key). */
  error?: string;
  missing?: boolean;
}

/** --config FILE, else $BERTH_CONFIG, else /etc/berth/berth.yaml (as berthd chooses). */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? (env.BERTH_CONFIG || defaultConfigFile);
}

export function loadNodeConfig(path: string): LoadedConfig {
  if (!existsSync(path)) return { path, missing: true, error: `${path} does not exist` };
  try {
    return { path, config: parseBerthdConfig(loadConfigFile(path), path) };
  } catch (err) {
    return { path, error: errorMessage(err) };
  }
}

export interface HttpReply {
  code: number;
  body: string;
}

/** GET http://<HOST:PORT><path>; rejects when nothing answers in time. */
export function httpGet(address: string, path: string, timeoutMs = probeTimeoutMs): Promise<HttpReply> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(colon + 1));
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${address} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** One sample of a Prometheus text exposition. */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (comments skipped; labels unescaped). */
export function parseMetrics(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split('\n')) {
    if (raw.startsWith('#')) continue;
    const m = line.exec(raw);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(label)) labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the first sample named `name` whose labels include `labels`. */
export function metricValue(samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

export type SocketState = 'missing' | 'refused' | 'accepts';

/** Whether a unix socket file exists and something accepts on it (a stale file left by a kill -9 refuses). */
export function socketState(path: string, timeoutMs = probeTimeoutMs): Promise<SocketState> {
  if (!existsSync(path)) return Promise.resolve('missing');
  return new Promise((resolve) => {
    const c = connect(path);
    const done = (state: SocketState) => {
      clearTimeout(timer);
      c.destroy();
      resolve(state);
    };
    const timer = setTimeout(() => done('refused'), timeoutMs);
    c.once('connect', () => done('accepts'));
    c.once('error', () => done('refused'));
  });
}

/** `address` of a unix:// endpoint, or the path itself. */
export function socketPathOf(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

export interface ContainerdFacts {
  socket: string;
  state: SocketState;
  version?: string;
  /** containerd's root (its content store's parent directory), as containerd itself reports it. */
  root?: string;
  error?: string;
}

/** containerd's version and root over its socket, with the existing client (cri-shim/containerd). */
export async function probeContainerd(socket: string, timeoutMs = probeTimeoutMs): Promise<ContainerdFacts> {
  const state = await socketState(socket, timeoutMs);
  if (state !== 'accepts') return { socket, state };
  const client = new ContainerdClient(socket);
  try {
    await client.waitReady(timeoutMs);
    const deadline = { deadline: Date.now() + timeoutMs };
    const version = await client.unary<{ version: string; revision: string }>('Version', (md, cb) => client.version.version({}, md, deadline, cb));
    // The content store's exported root is <containerd root>/io.containerd.content.v1.content.
    const plugins = await client
      .unary<{ plugins: { type: string; exports: Record<string, string> }[] }>('Plugins', (md, cb) => client.introspection.plugins({ filters: [] }, md, deadline, cb))
      .catch(() => ({ plugins: [] }));
    const content = plugins.plugins.find((p) => p.type === 'io.containerd.content.v1' && p.exports.root)?.exports.root;
    return { socket, state, version: version.version, root: content?.replace(/\/io\.containerd\.content\.v1\.content$/, '') };
  } catch (err) {
    return { socket, state, error: errorMessage(err) };
  } finally {
    client.close();
  }
}

/** `[--config FILE] [--json]`, shared by doctor and status; a number is the exit status to return (help or a usage error). */
export function parseConfigArgs(command: string, usage: string, args: readonly string[]): { config?: string; json: boolean } | number {
  let config: string | undefined;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-h' || a === '--help') {
      process.stdout.write(usage);
      return 0;
    }
    if (a === '--json') json = true;
    else if (a === '--config' || a.startsWith('--config=')) {
      config = a === '--config' ? args[++i] : a.slice('--config='.length);
      if (!config) {
        process.stderr.write(`berth ${command}: --config needs a file\n\n${usage}`);
        return 2;
      }
    } else {
      process.stderr.write(`berth ${command}: unknown argument ${a}\n\n${usage}`);
      return 2;
    }
  }
  return { config, json };
}
