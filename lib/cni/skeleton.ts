import { readFileSync } from 'node:fs';
import { BerthError, asBerthError } from '../errors.js';
import { cniLogger, type CniLogger } from './log.js';
import type { CniAttachment, CniCommand, CniResult } from './types.js';
import { isObject, validInterfaceName, type Json } from './validate.js';
import { compareVersions, convertResult, latestVersion, parseResult, requireSupportedVersion, supportedVersions } from './version.js';

// The part every CNI plugin shares: read CNI_* variables and the config on stdin, check them
// the way the spec says, dispatch the verb, and print the result (converted to the requested
// version) or the spec's error object. Plugins only implement the verbs.

export interface CommandContext<C> {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  /** Unset is allowed for DEL only. */
  netns: string | undefined;
  ifname: string;
  /** CNI_ARGS as key/value pairs. */
  args: Map<string, string>;
  /** CNI_PATH, split. */
  path: string[];
  conf: C;
  raw: Json;
  /** The config exactly as received, for delegated plugins. */
  stdin: string;
  cniVersion: string;
  prevResult: CniResult | undefined;
  env: NodeJS.ProcessEnv;
  log: CniLogger;
}

export interface GcContext<C> {
  conf: C;
  raw: Json;
  stdin: string;
  path: string[];
  cniVersion: string;
  validAttachments: CniAttachment[];
  env: NodeJS.ProcessEnv;
  log: CniLogger;
}

export type StatusContext<C> = Omit<GcContext<C>, 'validAttachments'>;

export interface CniPlugin<C> {
  /** Executable name, e.g. berth-bridge. */
  name: string;
  /** One line for --help and for a bare invocation. */
  about: string;
  /** Validate the plugin-specific part of the config; throw BerthError naming the field. */
  parseConfig(raw: Json, command: CniCommand): C;
  add(ctx: CommandContext<C>): Promise<CniResult>;
  del(ctx: CommandContext<C>): Promise<void>;
  check(ctx: CommandContext<C>): Promise<void>;
  gc(ctx: GcContext<C>): Promise<void>;
  status(ctx: StatusContext<C>): Promise<void>;
}

export interface Invocation {
  env: NodeJS.ProcessEnv;
  stdin: string;
}

export interface Outcome {
  exitCode: number;
  stdout: string;
}

const commands: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];
const containerIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function parseCniArgs(value: string | undefined): Map<string, string> {
  const args = new Map<string, string>();
  if (!value) return args;
  for (const pair of value.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new BerthError('invalid-environment', `CNI_ARGS: invalid pair ${JSON.stringify(pair)}, expected KEY=VALUE`);
    args.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return args;
}

function requireEnv(env: NodeJS.ProcessEnv, names: readonly string[]): void {
  const missing = names.filter((n) => !env[n]);
  if (missing.length > 0) {
    throw new BerthError('invalid-environment', `required environment variable${missing.length > 1 ? 's' : ''} missing: ${missing.join(', ')}`);
  }
}

function parseValidAttachments(raw: Json): CniAttachment[] {
  // 1.1.0 released the key as cni.dev/attachments; the spec now says cni.dev/valid-attachments.
  const key = raw['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const list = raw[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new BerthError('invalid-config', `${key}: expected an array, got ${JSON.stringify(list)}`);
  return list.map((a, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw new BerthError('invalid-config', `${key}[${i}]: expected {"containerID": string, "ifname": string}, got ${JSON.stringify(a)}`);
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

function errorOutput(err: BerthError, version: string): string {
  const body: Record<string, unknown> = { cniVersion: version, code: err.cniCode, msg: err.message };
  if (err.details) body.details = err.details;
  return JSON.stringify(body);
}

/** Run one CNI invocation. Never throws: failures become the spec's error object. */
export async function executePlugin<C>(plugin: CniPlugin<C>, invocation: Invocation): Promise<Outcome> {
  const { env } = invocation;
  let version: string = latestVersion;
  try {
    const command = env.CNI_COMMAND;
    if (!command) throw new BerthError('invalid-environment', 'CNI_COMMAND: required environment variable is missing');
    if (!(commands as readonly string[]).includes(command)) {
      throw new BerthError('invalid-environment', `CNI_COMMAND: unknown command ${JSON.stringify(command)}, expected one of ${commands.join(', ')}`);
    }
    const cmd = command as CniCommand;

    let raw: unknown;
    try {
      raw = invocation.stdin.trim() === '' && cmd === 'VERSION' ? {} : JSON.parse(invocation.stdin);
    } catch (e) {
      throw new BerthError('decode', `stdin: network configuration is not valid JSON: ${(e as Error).message}`);
    }
    if (!isObject(raw)) throw new BerthError('decode', 'stdin: network configuration must be a JSON object');

    if (cmd === 'VERSION') {
      const asked = typeof raw.cniVersion === 'string' && (supportedVersions as readonly string[]).includes(raw.cniVersion) ? raw.cniVersion : latestVersion;
      return { exitCode: 0, stdout: JSON.stringify({ cniVersion: asked, supportedVersions }) };
    }

    version = requireSupportedVersion(raw.cniVersion);
    if (cmd === 'CHECK' && compareVersions(version, '0.4.0') < 0) {
      throw new BerthError('incompatible-version', `CHECK needs cniVersion 0.4.0 or later, config has ${version}`);
    }
    if ((cmd === 'GC' || cmd === 'STATUS') && compareVersions(version, '1.1.0') < 0) {
      throw new BerthError('incompatible-version', `${cmd} needs cniVersion 1.1.0 or later, config has ${version}`);
    }
    if (typeof raw.name !== 'string' || raw.name === '') throw new BerthError('invalid-config', 'name: required field is missing');
    if (typeof raw.type !== 'string' || raw.type === '') throw new BerthError('invalid-config', 'type: required field is missing');

    const path = (env.CNI_PATH ?? '').split(':').filter((p) => p !== '');
    const log = cniLogger(plugin.name, { command: cmd, containerId: env.CNI_CONTAINERID, network: raw.name }, env);

    if (cmd === 'GC' || cmd === 'STATUS') {
      const conf = plugin.parseConfig(raw, cmd);
      const base = { conf, raw, stdin: invocation.stdin, path, cniVersion: version, env, log };
      if (cmd === 'GC') await plugin.gc({ ...base, validAttachments: parseValidAttachments(raw) });
      else await plugin.status(base);
      return { exitCode: 0, stdout: '' };
    }

    requireEnv(env, cmd === 'DEL' ? ['CNI_CONTAINERID', 'CNI_IFNAME'] : ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME']);
    const containerId = env.CNI_CONTAINERID as string;
    const ifname = env.CNI_IFNAME as string;
    if (!containerIdPattern.test(containerId)) {
      throw new BerthError('invalid-environment', `CNI_CONTAINERID: ${JSON.stringify(containerId)} has characters outside [A-Za-z0-9_.-] or starts with one of _.-`);
    }
    if (!validInterfaceName(ifname)) {
      throw new BerthError('invalid-environment', `CNI_IFNAME: ${JSON.stringify(ifname)} is not a valid interface name (1-15 characters, no '/', ':' or whitespace)`);
    }
    const conf = plugin.parseConfig(raw, cmd);
    const prevResult = raw.prevResult === undefined || raw.prevResult === null ? undefined : parseResult(raw.prevResult);
    if (cmd === 'CHECK' && prevResult === undefined) {
      throw new BerthError('invalid-config', 'prevResult: required for CHECK');
    }
    const ctx: CommandContext<C> = {
      command: cmd,
      containerId,
      netns: env.CNI_NETNS || undefined,
      ifname,
      args: parseCniArgs(env.CNI_ARGS),
      path,
      conf,
      raw,
      stdin: invocation.stdin,
      cniVersion: version,
      prevResult,
      env,
      log,
    };
    if (cmd === 'ADD') {
      const result = await plugin.add(ctx);
      return { exitCode: 0, stdout: JSON.stringify(convertResult(result, version)) };
    }
    if (cmd === 'DEL') await plugin.del(ctx);
    else await plugin.check(ctx);
    return { exitCode: 0, stdout: '' };
  } catch (e) {
    const err = asBerthError(e);
    return { exitCode: 1, stdout: errorOutput(err, version) };
  }
}

function usage<C>(plugin: CniPlugin<C>): string {
  return [
    `${plugin.name}: ${plugin.about}`,
    '',
    'This is a CNI plugin: a container runtime runs it with CNI_COMMAND (ADD, DEL, CHECK, GC,',
    'STATUS or VERSION), CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH in the',
    'environment and the network configuration as JSON on stdin (see README.md).',
    `Spec versions: ${supportedVersions.join(', ')}.`,
    'BERTH_LOG_LEVEL=error|warn|info|debug sets the level of the JSON log on stderr (default warn).',
    '',
  ].join('\n');
}

/** The executable's entry point. */
export function main<C>(plugin: CniPlugin<C>): void {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h') || argv.includes('--version')) {
    process.stdout.write(usage(plugin));
    return;
  }
  if (!process.env.CNI_COMMAND) process.stderr.write(usage(plugin));
  let stdin = '';
  if (process.env.CNI_COMMAND) {
    try {
      stdin = readFileSync(0, 'utf8');
    } catch {
      stdin = '';
    }
  }
  void executePlugin(plugin, { env: process.env, stdin }).then((outcome) => {
    if (outcome.stdout) process.stdout.write(outcome.stdout + '\n');
    // stdout to a pipe or file is synchronous on Linux, so exiting here loses nothing; it also
    // ends a run that an open netlink socket would otherwise keep alive.
    process.exit(outcome.exitCode);
  });
}
